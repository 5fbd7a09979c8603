"""A sweep whose driver was killed during promotion resumes the promotion's own run (the Ray engine restores its
Tuner) instead of starting a fresh one beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from automed.search.context import SweepContext
from automed.workflow.sweep_stages import SweepOptions, SweepRun, stage_promote
from tests.test_sweep_deadline import _screened_sweep


class KilledThenResumed:
    """Stands in for the engine: the first driver is killed while its promotion runs; records what each was told."""

    def __init__(self, wd: Path, killed: bool) -> None:
        self.wd = wd
        self.killed = killed
        self.resumed: list[bool] = []
        self.saved_stages: list[dict[str, Any]] = []

    def evaluate(
        self, fn: Any, ctx: SweepContext, units: list[Any], conc: int, retries: int, resume: bool
    ) -> Any:
        self.resumed.append(resume)
        self.saved_stages.append(json.loads((self.wd / "sweep.json").read_text())["stages"])
        if self.killed:
            raise KeyboardInterrupt  # SIGKILL leaves no chance to save anything: only what is on disk counts
        return []


def _run(wd: Path, engine: KilledThenResumed, resume: bool) -> SweepRun:
    ctx = SweepContext(str(wd), "ds", {}, {}, {}, 3, "sqlite:///x.db", "e", "r")
    opts = SweepOptions(promote=1, trials=2, folds=3)
    saved = wd / "sweep.json"
    state = json.loads(saved.read_text()) if resume else {"stages": {"search": True}, "fold_budget_s": None}
    return SweepRun(wd, state, opts, engine, ctx, 1, 0.0, resume)  # type: ignore[arg-type]


def test_a_promotion_killed_midway_is_resumed_not_started_afresh(tmp_path: Path) -> None:
    _screened_sweep(tmp_path)
    first = KilledThenResumed(tmp_path, killed=True)
    with pytest.raises(KeyboardInterrupt):
        stage_promote(_run(tmp_path, first, resume=False))
    assert first.resumed == [False]  # a first promotion starts its Tuner
    assert first.saved_stages[0].get("promote_started") is True  # on disk before the engine ran anything

    again = KilledThenResumed(tmp_path, killed=False)
    stage_promote(_run(tmp_path, again, resume=True))
    assert again.resumed == [
        True
    ]  # the Ray engine restores the promotion's Tuner (Tuner.can_restore/restore)


def test_a_resume_before_promotion_started_starts_it_afresh(tmp_path: Path) -> None:
    """Killed during the search: no promotion ran, so none is restored."""
    _screened_sweep(tmp_path)
    (tmp_path / "sweep.json").write_text(json.dumps({"stages": {"search": True}, "fold_budget_s": None}))
    engine = KilledThenResumed(tmp_path, killed=False)
    stage_promote(_run(tmp_path, engine, resume=True))
    assert engine.resumed == [False]
