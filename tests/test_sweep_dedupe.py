"""A sweep trains each training config once: a finite space caps --trials at its number of distinct configs, and a
trial whose resolved config an earlier trial has reuses that trial's result (a duplicate, never a second default,
never promoted) instead of training it again."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from automed import api
from automed.plan.schema import Plan
from automed.search.context import SweepContext
from automed.search.grid import distinct_configs, space_points
from automed.search.space import SearchSpace
from automed.testing.synthetic import make_dataset
from automed.train.config import TrainConfig
from automed.workflow.sweep_stages import SweepOptions, SweepRun, stage_search

FOUR = {
    "optimizer": {"type": "categorical", "choices": ["sgd", "adamw"]},
    "loss": {"type": "categorical", "choices": ["dice_ce", "dice_focal"]},
}


def _space(parameters: dict[str, Any], **top: Any) -> SearchSpace:
    return SearchSpace.model_validate({"name": "t", "parameters": parameters, **top})


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Plan]:
    root = tmp_path_factory.mktemp("dedupe")
    ds = make_dataset(root / "ds", n_cases=4, shape=(8, 12, 12), seed=3)
    res = api.plan_dataset(ds, root / "W", preset="cpu", run_preprocess=False, show_progress=False)
    return root / "W", res.plan


def test_a_finite_space_counts_its_distinct_configs(planned: tuple[Path, Plan]) -> None:
    _, plan = planned
    base = TrainConfig()
    assert distinct_configs(_space(FOUR), base, plan, more_than=100) == 4
    # two values of a plan-aware scale that give the same batch are one config (the plan's batch is 2)
    scales = {**FOUR, "batch_size_scale": {"type": "categorical", "choices": [1.0, 0.989]}}
    assert len(space_points(_space(scales), 100) or []) == 8
    assert distinct_configs(_space(scales), base, plan, more_than=100) == 4
    # a conditional parameter counts where its condition holds; int ranges are finite
    conditional = {
        "optimizer": {"type": "categorical", "choices": ["sgd", "adamw"]},
        "momentum": {"type": "categorical", "choices": [0.9, 0.99], "when": {"optimizer": "sgd"}},
        "base_features": {"type": "int", "low": 8, "high": 16, "step": 8},
    }
    assert distinct_configs(_space(conditional), base, plan, more_than=100) == 6
    assert distinct_configs(_space(conditional), base, plan, more_than=5) is None  # counting stops there
    floats = {**FOUR, "learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2}}
    assert distinct_configs(_space(floats), base, plan, more_than=100) is None


class SearchRecorder:
    def __init__(self) -> None:
        self.n_trials: list[int] = []

    def search(self, objective: Any, ctx: Any, space: Any, points: Any, spec: Any, resume: bool) -> list[Any]:
        self.n_trials.append(spec.n_trials)
        return []


def _run(wd: Path, trials: int) -> SweepRun:
    ctx = SweepContext(str(wd), "ds", {}, {}, {}, 2, "sqlite:///x.db", "e", "r")
    opts = SweepOptions(trials=trials, folds=2, promote=1)
    state: dict[str, Any] = {"stages": {}, "sweep_run_id": "r"}
    return SweepRun(wd, state, opts, SearchRecorder(), ctx, 1, time.perf_counter(), False)  # type: ignore[arg-type]


def test_trials_are_capped_at_a_finite_spaces_distinct_configs(
    tmp_path: Path, planned: tuple[Path, Plan], caplog: pytest.LogCaptureFixture
) -> None:
    """3 trials of a 4-point space often drew one point twice; 8 trials of it could only draw points again."""
    _, plan = planned
    run = _run(tmp_path, trials=8)
    with caplog.at_level(logging.WARNING):
        stage_search(run, _space(FOUR), TrainConfig(), plan, {}, None)  # type: ignore[arg-type]
    assert run.engine.n_trials == [4]  # type: ignore[attr-defined]
    note = "the search space has 4 distinct config(s): 4 trial(s) sampled, not --trials 8"
    assert run.state["stages"]["search_capped"] == note and note in caplog.text
    run = _run(tmp_path, trials=3)
    stage_search(run, _space(FOUR), TrainConfig(), plan, {}, None)  # type: ignore[arg-type]
    assert run.engine.n_trials == [3] and "search_capped" not in run.state["stages"]  # type: ignore[attr-defined]
