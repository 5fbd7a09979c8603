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
    # as a trial writes it: each fold with its score
    done = {str(f): {"score": 0.5, "epochs": 2} for f in range(3)}
    (tmp_path / "trials" / "a" / "result.json").write_text(json.dumps({"folds": done}))
    engine = RecordingEngine()
    run = _run(tmp_path, engine, budget_s=300.0, started_s_ago=0.0)
    run.state["fold_budget_s"], run.resume = None, True  # the first run had no --budget
    share = 0.85 * run.left() / 3  # over the 3 folds of b, not the 6 of the grid
    stage_grid(run, None, None, None)  # type: ignore[arg-type]
    ((units, fold_budget),) = engine.calls
    assert [k for k, _, _ in units] == ["b", "b", "b"]
    assert fold_budget is not None and abs(fold_budget - share) < 0.5


def test_the_default_never_takes_a_promotion_slot(tmp_path: Path) -> None:
    """The default screened best took one of the --promote slots (the top N plus the default, then de-duplicated):
    with --promote 1 no other trial reached full CV, and the verdict called the default the best trial."""
    for key, score, default in (("a", 0.8, False), ("b", 0.6, False), ("d", 0.9, True)):
        (tmp_path / "trials" / key).mkdir(parents=True)
        (tmp_path / "trials" / key / "trial.json").write_text(
            json.dumps({"key": key, "values": {"lr": score}, "is_default": default})
        )
        (tmp_path / "trials" / key / "result.json").write_text(json.dumps({"folds": {"0": {"score": score}}}))
    engine = RecordingEngine()
    stage_promote(_run(tmp_path, engine, budget_s=10_000.0, started_s_ago=0.0))
    ((units, _),) = engine.calls
    assert sorted({k for k, _, _ in units}) == ["a", "d"]


def _table(tmp_path: Path, rows: list[tuple[str, bool, dict[str, float]]], n_folds: int = 3) -> Any:
    from automed.search.report import trials_table

    for key, default, folds in rows:
        td = tmp_path / "trials" / key
        td.mkdir(parents=True)
        (td / "trial.json").write_text(json.dumps({"key": key, "values": {}, "is_default": default}))
        done = {f: {"score": s} for f, s in folds.items()}
        cv = sum(folds.values()) / len(folds) if folds else 0.0
        (td / "result.json").write_text(json.dumps({"folds": done, "score": cv}))
    return trials_table(tmp_path, n_folds)


@pytest.mark.parametrize("promote", [0, 2])
def test_the_verdict_says_when_only_the_default_was_cross_validated(tmp_path: Path, promote: int) -> None:
    """ "the planner default is the best trial" when no other trial reached full CV (others screened higher)."""
    from automed.workflow.sweep_verdict import sweep_verdict as _verdict

    table = _table(
        tmp_path,
        [("d", True, {"0": 0.7, "1": 0.7, "2": 0.7}), ("a", False, {"0": 0.9}), ("b", False, {"0": 0.5})],
    )
    best = table[table["folds_done"] == 3].iloc[0].to_dict()
    default = table[table["default"]].iloc[0].to_dict()
    verdict = _verdict(table, best, default, 3, promote)
    assert "best trial" not in verdict and "beat" not in verdict.replace("not known to beat", "")
    assert "the planner default is the only fully cross-validated trial (CV score 0.7000)" in verdict
    assert "best screened: trial a, fold-0 score 0.9000" in verdict
    assert ("--promote 0" in verdict) == (promote == 0)


def test_the_verdict_compares_the_default_with_cross_validated_trials_only(tmp_path: Path) -> None:
    from automed.workflow.sweep_verdict import sweep_verdict as _verdict

    table = _table(
        tmp_path,
        [
            ("d", True, {"0": 0.7, "1": 0.7, "2": 0.7}),
            ("a", False, {"0": 0.6, "1": 0.6, "2": 0.6}),
            ("b", False, {"0": 0.9}),
        ],
    )
    best = table[table["folds_done"] == 3].iloc[0].to_dict()
    default = table[table["default"]].iloc[0].to_dict()
    verdict = _verdict(table, best, default, 3, 1)
    assert verdict.startswith("the planner default is the best of 2 fully cross-validated trials"), verdict


def test_the_screening_stage_gives_its_first_trials_time_to_score() -> None:
    """A 90 s sweep gave the screening stage about 20 s while each fold got the 20 s floor: Tune stopped every trial
    before it scored. The stage now lasts at least one fold's budget plus a trial's start."""
    from automed.workflow.sweep_stages import TRIAL_START_S, _search_time

    assert _search_time(20.0, 20.0) == pytest.approx(22.0 + TRIAL_START_S)
    assert _search_time(300.0, 20.0) == 300.0  # a share that holds them is kept
