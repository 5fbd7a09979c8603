"""Who stopped a sweep trial: the scheduler (ASHA, or the optuna engine's pruner: the trial looked poor) or the
search's time budget (it was still training at the deadline). Both read ``stopped early`` in trials.csv and
``stopped`` in MLflow; now the budget's stop is ``timed out``, and a trial with a score is screened however it
ended (promoted like any)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytest

from automed.search.context import SweepContext
from automed.search.engine import TrialOutcome
from automed.search.report import STOPPED, trials_table


def _ctx(wd: Path, space: dict[str, Any] | None = None) -> SweepContext:
    return SweepContext(str(wd), "ds", {}, space or {}, {}, 2, "sqlite:///x.db", "e", "r")


def _trial(wd: Path, key: str, score: float | None = None, epochs: int = 0, **extra: Any) -> Path:
    td = wd / "trials" / key
    td.mkdir(parents=True)
    (td / "trial.json").write_text(json.dumps({"key": key, "values": {"lr": 0.01}, **extra}))
    folds = {"0": {"score": score, "epochs": 2}} if score is not None else {}
    (td / "result.json").write_text(json.dumps({"folds": folds, **({"score": score} if folds else {})}))
    if epochs:
        fold = td / "train" / "3d_fullres" / ("fold_1" if folds else "fold_0")
        fold.mkdir(parents=True)
        (fold / "progress.json").write_text(json.dumps({"history": [{}] * epochs}))
    return td


class _Trial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


def test_the_ray_scheduler_records_the_trials_it_stops(tmp_path: Path) -> None:

    from automed.search.ray_tune_hooks import RecordingStops

    sched = RecordingStops(
        str(tmp_path), time_attr="epoch", metric="score", mode="max", grace_period=1, reduction_factor=2
    )
    good, poor = _Trial("good"), _Trial("poor")
    for t in (good, poor):
        _trial(tmp_path, t.trial_id, epochs=1)
        sched.on_trial_add(None, t)
    assert sched.on_trial_result(None, good, {"epoch": 1.0, "score": 0.9}) == "CONTINUE"
    assert sched.on_trial_result(None, poor, {"epoch": 1.0, "score": 0.1}) == "STOP"
    assert json.loads((tmp_path / "trials" / "poor" / STOPPED).read_text()) == {
        "by": "scheduler",
        "epoch": 1.0,
    }
    assert not (tmp_path / "trials" / "good" / STOPPED).exists()
    assert trials_table(tmp_path, 2).set_index("trial").loc["poor", "status"] == "stopped early"


def _signal(wd: Path) -> Path:
    return wd / "ray" / "search_budget_reached.json"


class _Live:
    """A Tune trial as a callback sees it."""

    def __init__(self, trial_id: str, status: str = "RUNNING", last: dict[str, float] | None = None) -> None:
        self.trial_id, self.status, self.last_result = trial_id, status, last or {}


def _budget_step(tmp_path: Path, trials: list[_Live], ended: set[str], budget_s: float) -> None:
    """One Tune step with the budget's stopper and marks: ``ended`` are the trials Tune terminates in it."""
    from automed.search.ray_tune_hooks import BudgetMarks, BudgetStopper

    signal = tmp_path / "ray" / "search_budget_reached.json"
    signal.parent.mkdir(exist_ok=True)
    (tmp_path / "ray" / "search_budget.json").write_text(json.dumps({"budget_s": budget_s}))
    stopper = BudgetStopper(str(tmp_path), "search")
    marks = BudgetMarks(str(tmp_path), "search")
    marks.on_step_begin(0, trials)
    if stopper.stop_all():
        for t in trials:
            t.status = "TERMINATED"
    for t in trials:
        t.status = "TERMINATED" if t.trial_id in ended else t.status
    marks.on_step_end(1, trials)


def test_the_budget_stop_is_timed_out_not_the_schedulers(tmp_path: Path) -> None:
    """A search that ran to its time budget: Tune stopped the trials still running, which trials.csv called
    'stopped early' as if ASHA had found them poor, and MLflow tagged them 'stopped'. The budget's stop is marked
    where Tune's stopper ends the experiment, and the outcome comes from the mark."""
    from automed.search.ray_hooks import budget_outcomes

    _trial(tmp_path, "asha", epochs=2)
    (tmp_path / "trials" / "asha" / STOPPED).write_text(json.dumps({"by": "scheduler"}))
    _trial(tmp_path, "late", epochs=3)  # still training fold 0 at the deadline
    _trial(tmp_path, "scored", score=0.7, epochs=1)  # --no-screen: fold 0 done, timed out in fold 1
    _trial(tmp_path, "dup", duplicate_of="late")
    _trial(tmp_path, "done", score=0.8)  # validated its fold in this step
    _trial(tmp_path, "old", epochs=2)  # a sweep from before the mark: as it was
    live = [_Live(k) for k in ("late", "scored", "dup", "claimed late")] + [
        _Live("done", last={"validated": 1.0})
    ]
    live += [_Live("waiting", status="PENDING")]  # never started: no folder to mark
    _budget_step(tmp_path, live, set(), budget_s=0.0)
    outcomes = [TrialOutcome(k, "stopped") for k in ("asha", "late", "scored", "dup")]
    _trial(tmp_path, "claimed late", epochs=0)  # claimed its config while Tune stopped its actor
    got = budget_outcomes(_ctx(tmp_path), [*outcomes, TrialOutcome("done", "complete")], _signal(tmp_path))
    assert [(o.key, o.status) for o in got] == [
        ("asha", "stopped"), ("late", "timed out"), ("scored", "timed out"), ("dup", "stopped"), ("done", "complete"),
    ]  # fmt: skip
    status = trials_table(tmp_path, 2).set_index("trial")["status"].to_dict()
    assert status == {
        "asha": "stopped early", "late": "timed out", "scored": "screened", "dup": "duplicate", "done": "screened",
        "old": "stopped early", "claimed late": "timed out",
    }  # fmt: skip


def test_no_trial_is_marked_timed_out_before_the_budget_stops_the_search(tmp_path: Path) -> None:
    """A trial that ends unvalidated while the budget holds (a duplicate, one the scheduler stopped) is no time-out,
    and a signal a killed driver left behind is dropped at the restored stopper's first check."""
    _trial(tmp_path, "poor", epochs=2)
    (tmp_path / "trials" / "poor" / STOPPED).write_text(json.dumps({"by": "scheduler"}))
    _trial(tmp_path, "running", epochs=1)
    signal = tmp_path / "ray" / "search_budget_reached.json"
    signal.parent.mkdir()
    signal.write_text("{}")  # the killed driver's stopper had fired
    _budget_step(tmp_path, [_Live("poor"), _Live("running")], {"poor"}, budget_s=3600.0)
    assert not signal.exists()
    assert json.loads((tmp_path / "trials" / "poor" / STOPPED).read_text())["by"] == "scheduler"
    assert not (tmp_path / "trials" / "running" / STOPPED).exists()


def test_a_restored_search_marks_the_trials_its_restored_budget_stops(tmp_path: Path) -> None:
    """Tune restores the stopper and the callbacks from its pickle (with cloudpickle) as separate copies, and counts
    the first run's budget afresh from the restore: the driver's own clock and budget say nothing of it."""
    import ray.cloudpickle as pickle

    from automed.search.ray_tune_hooks import BudgetMarks, BudgetStopper

    _trial(tmp_path, "resumed", epochs=1)
    signal = tmp_path / "ray" / "search_budget_reached.json"
    signal.parent.mkdir()
    (tmp_path / "ray" / "search_budget.json").write_text(json.dumps({"budget_s": 0.0}))
    stopper = pickle.loads(pickle.dumps(BudgetStopper(str(tmp_path), "search")))
    marks = pickle.loads(pickle.dumps(BudgetMarks(str(tmp_path), "search")))
    trials = [_Live("resumed")]
    marks.on_step_begin(0, trials)
    assert stopper.stop_all()
    trials[0].status = "TERMINATED"
    marks.on_step_end(1, trials)
    assert json.loads((tmp_path / "trials" / "resumed" / STOPPED).read_text()) == {"by": "budget"}


def test_a_resumed_search_is_stopped_by_the_resumed_drivers_budget(tmp_path: Path) -> None:
    """Tune restores a search with the stopper it pickled when the search first started: TuneConfig's time_budget_s
    gave `automed sweep --resume WD --budget 10m` the first run's whole search budget (hours) again, and a resume
    without --budget too. The stopper reads the budget the driver that runs it wrote."""
    import ray.cloudpickle as pickle

    from automed.search.ray_tune_hooks import BudgetStopper

    ray_dir = tmp_path / "ray"
    ray_dir.mkdir()
    budget, signal = ray_dir / "search_budget.json", ray_dir / "search_budget_reached.json"
    budget.write_text(json.dumps({"budget_s": 3600.0}))
    first = BudgetStopper(str(tmp_path), "search")
    pickled = pickle.dumps(first)  # Tune's tuner.pkl, at the first start
    assert not first.stop_all()
    budget.write_text(json.dumps({"budget_s": 0.0}))  # the resume has no time left for the search
    assert pickle.loads(pickled).stop_all() and signal.is_file()
    assert pickle.loads(pickle.dumps(first)).stop_all()  # a copy made while it ran counts afresh too
    budget.write_text(json.dumps({"budget_s": None}))  # resumed without --budget
    assert not pickle.loads(pickled).stop_all() and not signal.exists()
    # no budget file to read: the budget it was made with, no error
    budget.unlink()
    ray_dir.rename(tmp_path / "moved")
    stopper = pickle.loads(pickle.dumps(BudgetStopper(str(tmp_path), "search")))
    assert stopper.made_with is None and not stopper.stop_all()
    moved = pickle.loads(pickled)
    assert moved.made_with == 3600.0 and not moved.stop_all() and moved.deadline < math.inf


def test_the_ray_engine_takes_a_time_out_from_the_mark_not_its_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine relabelled stopped trials only when its own clock said the search had used its time budget: a
    restored search, whose budget Tune counts from the restore with the first run's value, ended sooner than the
    new driver's budget and its budget stops read 'stopped early'."""
    from ray import tune

    from automed.search.engine import SearchSpec
    from automed.search.ray_engine import RayEngine
    from automed.search.space import SearchSpace

    _trial(tmp_path, "late", epochs=2)
    (tmp_path / "trials" / "late" / STOPPED).write_text(json.dumps({"by": "budget"}))
    _trial(tmp_path, "poor", epochs=2)
    (tmp_path / "trials" / "poor" / STOPPED).write_text(json.dumps({"by": "scheduler"}))

    class Result:
        def __init__(self, key: str) -> None:
            self.config: dict[str, Any] = {}
            self.metrics = {"trial_id": key, "epoch": 2.0}
            self.error = None
            self.path = ""

    monkeypatch.setattr(tune, "with_parameters", lambda fn, **kw: fn)
    monkeypatch.setattr(tune, "with_resources", lambda fn, res: fn)
    monkeypatch.setattr(RayEngine, "_fit", lambda *a: [Result("late"), Result("poor")])
    engine = object.__new__(RayEngine)
    engine.resources, engine.show_progress = {"cpu": 1.0}, False
    space = SearchSpace.model_validate(
        {"name": "t", "parameters": {"lr": {"type": "float", "low": 0.001, "high": 0.01}}}
    )
    spec = SearchSpec(n_trials=2, folds=[0], concurrency=1, time_budget_s=3600.0)
    ctx = _ctx(tmp_path, space.model_dump(mode="json"))
    outcomes = engine.search(None, ctx, space, [], spec, True)  # type: ignore[arg-type]
    assert {o.key: o.status for o in outcomes} == {"late": "timed out", "poor": "stopped"}
    # the budget this driver gives the search, for its stopper (a restored one included)
    assert json.loads((tmp_path / "ray" / "search_budget.json").read_text()) == {"budget_s": 3600.0}


def test_a_timed_out_trial_with_a_score_is_promoted_and_ends_finished_in_mlflow(tmp_path: Path) -> None:
    from automed.search.ray_hooks import budget_outcomes
    from automed.workflow.sweep_stages import SweepOptions, SweepRun, _mark_stopped, stage_promote

    _trial(tmp_path, "scored", score=0.7, epochs=1)
    (tmp_path / "trials" / "scored" / STOPPED).write_text(json.dumps({"by": "budget"}))
    _trial(tmp_path, "poor", score=0.5)
    (tmp_path / "trials" / "poor" / STOPPED).write_text(json.dumps({"by": "scheduler"}))
    outcomes = budget_outcomes(_ctx(tmp_path), [TrialOutcome("scored", "stopped")], _signal(tmp_path))
    units: list[Any] = []

    class Recorder:
        def evaluate(self, fn: Any, ctx: Any, us: list[Any], *args: Any, **kw: Any) -> list[Any]:
            units.extend(us)
            return []

    opts = SweepOptions(trials=2, folds=2, promote=1)
    run = SweepRun(tmp_path, {"stages": {}}, opts, Recorder(), _ctx(tmp_path), 1, time.perf_counter(), False)  # type: ignore[arg-type]
    stage_promote(run)
    assert [(k, f) for k, _, f in units] == [("scored", [1])]

    class Tracker:
        def __init__(self) -> None:
            self.tags: dict[str, dict[str, str]] = {}
            self.ended: dict[str, str] = {}
            self.redactor = None
            self.experiment_id = "0"
            self.client = self

        def find_run(self, key: str, parent: str) -> Any:
            return type("Run", (), {"info": type("Info", (), {"run_id": f"run-{key}"})})

        def search_runs(self, *args: Any, **kw: Any) -> list[Any]:
            return []

        def set_tags(self, run: str, tags: dict[str, str]) -> None:
            self.tags[run] = tags

        def end_run(self, run: str, status: str = "FINISHED") -> None:
            self.ended[run] = status

    tracker = Tracker()
    _mark_stopped(tracker, "sweep", outcomes)
    assert tracker.tags == {"run-scored": {"screen.outcome": "timed out"}}
    assert tracker.ended == {"run-scored": "FINISHED"}


def pruned_objective(ctx: SweepContext, key: str, values: Any, folds: Any, report: Any) -> dict[str, Any]:
    """Stands in for run_trial in the optuna engine's processes: the first trial scores well, the others poorly,
    so the pruner stops them at their first rung."""
    td = Path(ctx.sweep_dir) / "trials" / key
    td.mkdir(parents=True, exist_ok=True)
    (td / "trial.json").write_text(json.dumps({"key": key, "values": values}))
    score = 0.9 if key == "t0000" else 0.1
    for epoch in range(1, 5):
        report({"epoch": float(epoch), "score": score})
    return {"key": key, "folds": {"0": {"score": score}}, "n_folds_done": 1, "score": score}


def test_the_optuna_engine_marks_the_trials_it_prunes(tmp_path: Path) -> None:
    from automed.search.engine import SearchSpec
    from automed.search.optuna_engine import OptunaEngine
    from automed.search.space import SearchSpace

    space = SearchSpace.model_validate(
        {"name": "t", "parameters": {"lr": {"type": "float", "low": 0.001, "high": 0.01}}}
    )
    spec = SearchSpec(n_trials=3, folds=[0], concurrency=1, grace_epochs=1, seed=0)
    ctx = _ctx(tmp_path, space.model_dump(mode="json"))
    outcomes = OptunaEngine(None, {"cpu": 1.0, "gpu": 0.0}).search(
        pruned_objective, ctx, space, [], spec, False
    )
    assert {o.key: o.status for o in outcomes} == {
        "t0000": "complete",
        "t0001": "stopped",
        "t0002": "stopped",
    }
    for key in ("t0001", "t0002"):
        assert json.loads((tmp_path / "trials" / key / STOPPED).read_text())["by"] == "scheduler"
    assert not (tmp_path / "trials" / "t0000" / STOPPED).exists()


def test_the_live_lines_say_once_who_stopped_a_trial_and_which_trial_a_duplicate_repeats(
    tmp_path: Path,
) -> None:
    """The live view showed a stopped, a timed-out and a duplicate trial alike (no line: they finish no fold)."""
    import io

    from rich.console import Console

    from automed.workflow.trials_live import TrialsDisplay

    buf = io.StringIO()
    display = TrialsDisplay(tmp_path, 2, "plain", console=Console(file=buf, width=200))
    _trial(tmp_path, "a", epochs=2)
    (tmp_path / "trials" / "a" / STOPPED).write_text(json.dumps({"by": "budget"}))
    _trial(tmp_path, "b", duplicate_of="a")
    _trial(tmp_path, "c", epochs=1)
    (tmp_path / "trials" / "c" / STOPPED).write_text(json.dumps({"by": "scheduler"}))
    _trial(tmp_path, "d", epochs=1)
    (tmp_path / "trials" / "d" / "failed.json").write_text(json.dumps({"error": "RuntimeError"}))
    display.poll()
    display.poll()  # nothing new: nothing said again
    lines = buf.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["a", "b", "c"], lines  # a failure is said once, at the end
    assert lines[0].endswith("timed out") and lines[1].endswith("duplicate of a")
    assert lines[2].endswith("stopped early")


def test_a_search_without_a_budget_keeps_a_stopper_for_a_resume_with_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tune restores a search with the run config it pickled at the first start: a first run without --budget must
    still carry the budget's stopper and marks, or `automed sweep --resume WD --budget X` is not limited."""
    from ray import tune

    from automed.search.engine import SearchSpec
    from automed.search.ray_engine import RayEngine
    from automed.search.space import SearchSpace

    made: list[Any] = []

    class Tuner:
        def __init__(self, trainable: Any, tune_config: Any, run_config: Any) -> None:
            made.append(run_config)

        def fit(self) -> list[Any]:
            return []

        @staticmethod
        def can_restore(path: str) -> bool:
            return False

    monkeypatch.setattr(tune, "Tuner", Tuner)
    monkeypatch.setattr(tune, "with_parameters", lambda fn, **kw: fn)
    monkeypatch.setattr(tune, "with_resources", lambda fn, res: fn)
    engine = object.__new__(RayEngine)
    engine.resources, engine.show_progress = {"cpu": 1.0}, False
    space = SearchSpace.model_validate(
        {"name": "t", "parameters": {"lr": {"type": "float", "low": 0.001, "high": 0.01}}}
    )
    spec = SearchSpec(n_trials=2, folds=[0], concurrency=1, time_budget_s=None)
    engine.search(None, _ctx(tmp_path, space.model_dump(mode="json")), space, [], spec, False)  # type: ignore[arg-type]
    (run_config,) = made
    assert run_config.stop is not None and not run_config.stop.stop_all()  # no budget now: never stops
    assert json.loads((tmp_path / "ray" / "search_budget.json").read_text()) == {"budget_s": None}
    assert [type(c).__name__ for c in run_config.callbacks] == ["TrialProgress", "BudgetMarks"]
