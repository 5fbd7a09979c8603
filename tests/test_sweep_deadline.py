"""A budgeted sweep starts no fold training after its deadline, and a resume never lengthens the comparable share."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from automed.search.context import SweepContext
from automed.workflow.sweep_stages import SweepOptions, SweepRun, stage_promote


class RecordingEngine:
    """Stands in for the optuna/ray engines: records the units and per-fold budget it was asked to run."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[Any], float | None]] = []

    def evaluate(self, fn: Any, ctx: SweepContext, units: list[Any], *args: Any, **kw: Any) -> list[Any]:
        self.calls.append((units, ctx.fold_budget_s))
        return []


def _screened_sweep(wd: Path) -> None:
    for key, score, default in (("a", 0.8, False), ("b", 0.6, False), ("d", 0.7, True)):
        (wd / "trials" / key).mkdir(parents=True)
        (wd / "trials" / key / "trial.json").write_text(
            json.dumps({"key": key, "values": {"lr": score}, "is_default": default})
        )
        (wd / "trials" / key / "result.json").write_text(json.dumps({"folds": {"0": {"score": score}}}))


def _run(wd: Path, engine: RecordingEngine, budget_s: float, started_s_ago: float) -> SweepRun:
    ctx = SweepContext(str(wd), "ds", {}, {}, {}, 3, "sqlite:///x.db", "e", "r")
    opts = SweepOptions(budget_s=budget_s, promote=1, trials=2, folds=3)
    state: dict[str, Any] = {"stages": {"search": True}, "fold_budget_s": 50.0}
    return SweepRun(wd, state, opts, engine, ctx, 1, time.perf_counter() - started_s_ago, False)  # type: ignore[arg-type]


@pytest.mark.parametrize("started_s_ago", [200.0, 60.0])  # past the deadline; 20 s left for 4 folds
def test_promotion_too_late_starts_nothing_and_says_so(tmp_path: Path, started_s_ago: float) -> None:
    _screened_sweep(tmp_path)
    engine = RecordingEngine()
    run = _run(tmp_path, engine, budget_s=100.0, started_s_ago=started_s_ago)
    assert stage_promote(run) == []
    assert engine.calls == []  # not even at the 20 s floor
    note = json.loads((tmp_path / "sweep.json").read_text())["stages"]["promote_skipped"]
    assert "before promotion: 4 fold trainings of 2 trial(s) not run" in note and "--resume" in note


def test_promotion_in_time_runs_the_best_and_the_default_at_most_the_screened_share(tmp_path: Path) -> None:
    _screened_sweep(tmp_path)
    engine = RecordingEngine()
    run = _run(tmp_path, engine, budget_s=10_000.0, started_s_ago=0.0)
    run.state["stages"]["promote_skipped"] = "from an earlier run"
    stage_promote(run)
    ((units, fold_budget),) = engine.calls
    assert sorted((k, f) for k, _, (f,) in units) == [("a", 1), ("a", 2), ("d", 1), ("d", 2)]
    assert fold_budget == 50.0  # the screened folds' share: promoted folds stay comparable
    assert "promote_skipped" not in run.state["stages"]


def test_a_resumed_grid_keeps_its_share_unless_the_new_budget_is_shorter(
    tmp_path: Path, monkeypatch: Any
) -> None:
    import automed.search.grid as grid
    from automed.workflow.sweep_stages import stage_grid

    monkeypatch.setattr(grid, "grid_points", lambda *a: [("a", {}), ("b", {})])  # 2 points x 3 folds
    for budget in (10_000.0, 300.0):  # (the first run's share: 50 s)
        engine = RecordingEngine()
        run = _run(tmp_path, engine, budget_s=budget, started_s_ago=0.0)
        run.resume = True
        share = 0.85 * run.left() / 6  # what is left, over the 6 units still to run
        stage_grid(run, None, None, None)  # type: ignore[arg-type]
        ((units, fold_budget),) = engine.calls
        assert len(units) == 6 and fold_budget is not None
        assert abs(fold_budget - min(50.0, share)) < 0.5, (budget, fold_budget)
    assert fold_budget is not None and fold_budget < 50.0


def test_a_grid_resumed_with_a_budget_after_one_without_shares_the_time_over_the_folds_left(
    tmp_path: Path, monkeypatch: Any
) -> None:
    import automed.search.grid as grid
    from automed.workflow.sweep_stages import stage_grid

    monkeypatch.setattr(grid, "grid_points", lambda *a: [("a", {}), ("b", {})])
    (tmp_path / "trials" / "a").mkdir(parents=True)
    (tmp_path / "trials" / "a" / "result.json").write_text(json.dumps({"folds": {"0": {}, "1": {}, "2": {}}}))
    engine = RecordingEngine()
    run = _run(tmp_path, engine, budget_s=300.0, started_s_ago=0.0)
    run.state["fold_budget_s"], run.resume = None, True  # the first run had no --budget
    share = 0.85 * run.left() / 3  # over the 3 folds of b, not the 6 of the grid
    stage_grid(run, None, None, None)  # type: ignore[arg-type]
    ((units, fold_budget),) = engine.calls
    assert [k for k, _, _ in units] == ["b", "b", "b"]
    assert fold_budget is not None and abs(fold_budget - share) < 0.5
