"""What every sweep trial is given (plain data, so it travels to Ray workers on other nodes) and the objective's
signature: search engines call an objective they are handed, they never import the orchestration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Report = Callable[[dict[str, float]], None]
# objective(context, trial key, sampled values, folds, report) -> the trial's result (result.json's content)
Objective = Callable[["SweepContext", str, dict[str, Any], list[int], Report | None], dict[str, Any]]


@dataclass(frozen=True)
class SweepContext:
    """What every trial needs; plain data so it travels to Ray workers on other nodes."""

    sweep_dir: str
    dataset: str
    base_config: dict[str, Any]
    space: dict[str, Any]
    default_point: dict[str, Any]
    n_folds: int
    tracking_uri: str
    experiment: str
    sweep_run_id: str
    fold_budget_s: float | None = None
    device: str | None = None
    threads: int = 1
    workers: int = 0
    validation_tta: bool = False
    validation_mirrors: str = "all"  # the planner preset's inference.mirrors
    keep_case_ids: bool = False


def trial_dir(ctx: SweepContext, key: str) -> Path:
    return Path(ctx.sweep_dir) / "trials" / key
