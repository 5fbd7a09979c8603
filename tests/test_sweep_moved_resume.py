"""A Ray sweep dir moved (or copied whole) before ``automed sweep --resume``: Tune restores the search's hooks from the
pickle it made when the search first started, with that run's absolute paths. The restored scheduler marked the
trials it stopped at the old place (or, the folder gone, not at all), the trial-times callback wrote there (making
the old folders again), the searcher looked for duplicates there, and the budget stopper read no budget there: a
sweep whose first run had none was not limited by the resume's ``--budget``. The hooks now work under the sweep dir
of the driver that runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest


class _Trial:
    def __init__(self, trial_id: str, status: str = "RUNNING") -> None:
        self.trial_id, self.status = trial_id, status
        self.config: dict[str, Any] = {}
        self.last_result: dict[str, Any] = {}


def _trial(wd: Path, key: str, **extra: Any) -> None:
    td = wd / "trials" / key
    td.mkdir(parents=True)
    (td / "trial.json").write_text(json.dumps({"key": key, "values": {}, **extra}))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("how", ["moved", "copied"])
def test_restored_hooks_work_in_the_resuming_drivers_sweep_dir(tmp_path: Path, how: str) -> None:
    import ray.cloudpickle as pickle

    from automed.search.ray_engine import _DefineByRun
    from automed.search.ray_hooks import sweep_place
    from automed.search.ray_tune_hooks import (
        BudgetMarks,
        BudgetStopper,
        RecordingStops,
        TrialProgress,
        TruthfulSearch,
    )

    first, now = tmp_path / "first", tmp_path / "now"
    (first / "ray").mkdir(parents=True)
    (first / "ray" / "search_budget.json").write_text(
        json.dumps({"budget_s": None})
    )  # the first run: no budget
    for key in ("good", "poor", "late"):
        _trial(first, key)
    _trial(first, "dup", duplicate_of="late")
    wd = str(first)
    space = _DefineByRun({"name": "t", "parameters": {"lr": {"type": "float", "low": 0.001, "high": 0.01}}})
    searcher = TruthfulSearch(wd, space=space, metric="score", mode="max")
    scheduler = RecordingStops(
        wd, time_attr="epoch", metric="score", mode="max", grace_period=1, reduction_factor=2
    )
    hooks = (
        TrialProgress("search", 4, False, wd),
        BudgetStopper(wd, "search"),
        BudgetMarks(wd, "search"),
    )
    pickled = pickle.dumps((scheduler, searcher, hooks))  # Tune's tuner.pkl at the first start
    searcher.save(str(tmp_path / "searcher-state.pkl"))  # the searcher's checkpoint, restored over it
    if how == "moved":
        first.rename(now)
    else:
        shutil.copytree(first, now)
    before = _files(first) if first.exists() else {}
    (now / "ray" / "search_budget.json").write_text(json.dumps({"budget_s": 0.0}))  # resumed with --budget

    scheduler, searcher, (times, stopper, marks) = pickle.loads(pickled)
    searcher.restore(str(tmp_path / "searcher-state.pkl"))
    with sweep_place(now):
        times.setup()
        trials = [_Trial(k) for k in ("good", "poor", "late")]
        for t in trials:
            times.on_trial_start(0, trials, t)
            scheduler.on_trial_add(None, t)
        assert scheduler.on_trial_result(None, trials[0], {"epoch": 1.0, "score": 0.9}) == "CONTINUE"
        assert scheduler.on_trial_result(None, trials[1], {"epoch": 1.0, "score": 0.1}) == "STOP"
        times.on_trial_complete(1, trials, trials[1])
        searcher.on_trial_complete("dup", {})  # a duplicate of a trial still running: told once it ends
        assert searcher.waiting == {"late": ["dup"]}
        marks.on_step_begin(2, trials)
        assert stopper.stop_all()  # the resume's budget, though the first run had none
        for t in (trials[0], trials[2]):
            t.status = "TERMINATED"
        marks.on_step_end(2, trials)
        times.on_experiment_end(trials)

    stops = {p.parent.name: json.loads(p.read_text())["by"] for p in (now / "trials").glob("*/stopped.json")}
    assert stops == {"poor": "scheduler", "good": "budget", "late": "budget"}
    assert sorted(json.loads((now / "ray" / "search_trial_times.json").read_text())) == [
        "good",
        "late",
        "poor",
    ]
    assert json.loads((now / "ray" / "search_budget_reached.json").read_text())["trials"] == ["good", "late"]
    # nothing was written at the first run's place: a moved sweep's folders were not made again
    assert (_files(first) if first.exists() else {}) == before


def test_the_ray_engine_runs_a_stage_under_its_drivers_sweep_dir(tmp_path: Path) -> None:
    from automed.search.context import SweepContext
    from automed.search.ray_engine import RayEngine
    from automed.search.ray_hooks import sweep_path

    class Tuner:
        def fit(self) -> Path:
            return sweep_path("/where/the/first/run/was", "ray")

    engine = object.__new__(RayEngine)
    ctx = SweepContext(str(tmp_path), "ds", {}, {}, {}, 2, "sqlite:///x.db", "e", "r")
    assert engine._fit(Tuner, None, ctx, "search", False) == tmp_path / "ray"
    assert sweep_path("/where/the/first/run/was") == Path("/where/the/first/run/was")  # only while it runs


def test_a_trial_tune_started_after_restoring_a_moved_sweep_keeps_its_outcome(tmp_path: Path) -> None:
    """Tune's search generator keeps the first run's storage path: for a trial it starts after restoring a moved
    sweep dir it finds no metrics ("Failed to fetch metrics ... not found at OLD/ray/search/..."), and a trial that
    validated its fold read 'stopped'. Its result.json is where Tune wrote it, in this driver's stage folder."""
    from automed.search.ray_results import outcomes as stage_outcomes

    stage = tmp_path / "now" / "ray" / "search"
    name = "_search_trainable_7a78d733_4_lr=0.0100_2026-12-06_07-17-12"
    (stage / name).mkdir(parents=True)
    reports = [
        {"epoch": 1.0, "score": 0.4},
        {"epoch": 2.0, "score": 0.5, "validated": 1.0, "trial_id": "7a78d733"},
    ]
    (stage / name / "result.json").write_text("".join(json.dumps(r) + "\n" for r in reports))

    class Result:
        def __init__(self, path: str, metrics: dict[str, Any]) -> None:
            self.config: dict[str, Any] = {}
            self.metrics, self.path, self.error = metrics, path, None

    first = str(tmp_path / "first" / "ray" / "search")
    grid = [
        Result(f"{first}/{name}", {}),  # Tune could not fetch its metrics
        Result(
            f"{first}/_search_trainable_a05bc9c7_2_lr=0.0020_2026-12-06_07-16-09", {"trial_id": "a05bc9c7"}
        ),
    ]
    outcomes = stage_outcomes(grid, stage)
    assert [(o.key, o.status) for o in outcomes] == [
        ("7a78d733", "complete"), ("a05bc9c7", "stopped"),
    ]  # fmt: skip
