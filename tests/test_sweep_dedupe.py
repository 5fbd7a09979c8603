"""A sweep trains each training config once: a finite space caps --trials at its number of distinct configs, and a
trial whose resolved config an earlier trial has reuses that trial's result (a duplicate, never a second default,
never promoted) instead of training it again."""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from automed import api
from automed.plan.schema import Plan
from automed.search.context import SweepContext
from automed.search.grid import distinct_points, space_points
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

    def count(parameters: dict[str, Any], more_than: int = 100) -> int | None:
        found = distinct_points(_space(parameters), base, plan, more_than)
        return None if found is None else len(found)

    assert count(FOUR) == 4
    # two values of a plan-aware scale that give the same batch are one config (the plan's batch is 2)
    scales = {**FOUR, "batch_size_scale": {"type": "categorical", "choices": [1.0, 0.989]}}
    assert len(space_points(_space(scales), 100) or []) == 8 and count(scales) == 4
    # a conditional parameter counts where its condition holds; int ranges are finite
    conditional = {
        "optimizer": {"type": "categorical", "choices": ["sgd", "adamw"]},
        "momentum": {"type": "categorical", "choices": [0.9, 0.99], "when": {"optimizer": "sgd"}},
        "base_features": {"type": "int", "low": 8, "high": 16, "step": 8},
    }
    assert count(conditional) == 6 and count(conditional, more_than=5) is None  # counting stops there
    assert count({**FOUR, "learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2}}) is None


class SearchRecorder:
    def __init__(self) -> None:
        self.calls: list[tuple[list[dict[str, Any]], int]] = []

    def search(self, objective: Any, ctx: Any, space: Any, points: Any, spec: Any, resume: bool) -> list[Any]:
        self.calls.append((points, spec.n_trials))
        return []


def _run(wd: Path, trials: int) -> SweepRun:
    ctx = SweepContext(str(wd), "ds", {}, {}, {}, 2, "sqlite:///x.db", "e", "r")
    opts = SweepOptions(trials=trials, folds=2, promote=1)
    state: dict[str, Any] = {"stages": {}, "sweep_run_id": "r"}
    return SweepRun(wd, state, opts, SearchRecorder(), ctx, 1, time.perf_counter(), False)  # type: ignore[arg-type]


def test_a_finite_space_is_evaluated_once_per_config_up_to_trials(
    tmp_path: Path, planned: tuple[Path, Plan], caplog: pytest.LogCaptureFixture
) -> None:
    """3 trials of a 4-point space often drew one point twice; 8 trials of it could only draw points again."""
    _, plan = planned
    default = {"optimizer": "adamw", "loss": "dice_focal"}
    run = _run(tmp_path, trials=8)
    with caplog.at_level(logging.WARNING):
        stage_search(run, _space(FOUR), TrainConfig(), plan, default, None)  # type: ignore[arg-type]
    ((points, n_trials),) = run.engine.calls  # type: ignore[attr-defined]
    # every config once, the default's first: no sampling left to repeat one
    assert n_trials == 4 and points[0] == default
    assert sorted((p["optimizer"], p["loss"]) for p in points) == [
        ("adamw", "dice_ce"), ("adamw", "dice_focal"), ("sgd", "dice_ce"), ("sgd", "dice_focal"),
    ]  # fmt: skip
    note = "the search space has 4 distinct config(s): 4 trial(s) evaluate each once (not --trials 8)"
    assert run.state["stages"]["search_capped"] == note and note in caplog.text
    # as many trials as configs: each once, nothing said; fewer: the default, then sampled
    for trials, want in ((4, 4), (3, 1)):
        run = _run(tmp_path, trials=trials)
        stage_search(run, _space(FOUR), TrainConfig(), plan, default, None)  # type: ignore[arg-type]
        ((points, n_trials),) = run.engine.calls  # type: ignore[attr-defined]
        assert (n_trials, len(points), points[0]) == (trials, want, default)
        assert "search_capped" not in run.state["stages"]
    # a partial default (the base's optimizer is none of the choices) would be completed by sampling: left out
    run = _run(tmp_path, trials=8)
    stage_search(run, _space(FOUR), TrainConfig(), plan, {"loss": "dice_ce"}, None)  # type: ignore[arg-type]
    ((points, n_trials),) = run.engine.calls  # type: ignore[attr-defined]
    assert n_trials == 4 and len({(p["optimizer"], p["loss"]) for p in points}) == 4
    # a space of floats: the default point, then --trials sampled
    floats = _space({"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2}})
    run = _run(tmp_path, trials=8)
    stage_search(run, floats, TrainConfig(), plan, {"learning_rate": 0.01}, None)  # type: ignore[arg-type]
    assert run.engine.calls == [([{"learning_rate": 0.01}], 8)]  # type: ignore[attr-defined]


def _trial_ctx(sweep_dir: Path, plan_dir: Path, default: dict[str, Any]) -> SweepContext:
    shutil.copy(plan_dir / "plan.json", sweep_dir / "plan.json")
    space = _space({**FOUR, "batch_size_scale": {"type": "categorical", "choices": [1.0, 0.989]}})
    return SweepContext(
        str(sweep_dir), "ds", TrainConfig().model_dump(mode="json"), space.model_dump(mode="json"), default, 2,
        "sqlite:///x.db", "e", "r",
    )  # fmt: skip


def _fake_training(monkeypatch: pytest.MonkeyPatch, scores: dict[str, float | None]) -> list[str]:
    """Trials "train" by writing their fold-0 result (None: stopped before fold 0 finished); the keys trained."""
    import automed.workflow.trial as trial

    trained: list[str] = []

    def train(
        ctx: Any, key: str, values: Any, folds: Any, report: Any, plan: Any, td: Path, config: Any
    ) -> Any:
        trained.append(key)
        score = scores[key]
        result = {"key": key, "folds": {}, "n_folds_done": 0}
        if score is not None:
            result = {
                "key": key,
                "folds": {"0": {"score": score, "epochs": 2}},
                "n_folds_done": 1,
                "score": score,
            }
        (td / "result.json").write_text(json.dumps(result))
        return result

    monkeypatch.setattr(trial, "_train", train)
    return trained


DEFAULT = {"optimizer": "sgd", "loss": "dice_ce", "batch_size_scale": 1.0}


def test_a_trial_with_an_earlier_trials_config_reuses_its_result(
    tmp_path: Path, planned: tuple[Path, Plan], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Ray engine once ran three trials of one point, all flagged default and all promoted; batch_size_scale
    1.0 and 0.989 (both batch 2) trained twice."""
    from automed.search.report import trials_table
    from automed.workflow.sweep_stages import stage_promote
    from automed.workflow.trial import run_trial

    ctx = _trial_ctx(tmp_path, planned[0], DEFAULT)
    trained = _fake_training(monkeypatch, {"a": 0.7, "b": 0.9, "c": 0.5})
    reports: list[dict[str, float]] = []
    # a drew values that resolve to the default's config before the default trial itself started
    run_trial(ctx, "a", {**DEFAULT, "batch_size_scale": 0.989}, [0], reports.append)
    out = run_trial(ctx, "d", DEFAULT, [0], reports.append)  # the enqueued default: a's config
    again = run_trial(ctx, "e", {**DEFAULT, "batch_size_scale": 0.989}, [0], reports.append)  # a re-draw
    run_trial(ctx, "b", {**DEFAULT, "optimizer": "adamw"}, [0], reports.append)
    run_trial(ctx, "c", {**DEFAULT, "loss": "dice_focal"}, [0], reports.append)
    assert trained == ["a", "b", "c"]  # each config trained once
    assert out == {"key": "d", "duplicate_of": "a", "folds": {}, "n_folds_done": 0, "score": 0.7}
    assert again["duplicate_of"] == "a" and reports == [{"epoch": 0.0, "score": 0.7, "validated": 1.0}] * 2
    saved = {k: json.loads((tmp_path / "trials" / k / "trial.json").read_text()) for k in "abcde"}
    assert [k for k, t in saved.items() if t["is_default"]] == ["a"]  # by config: one default
    assert (
        saved["d"]["digest"]
        == saved["a"]["digest"]
        == TrainConfig.model_validate(saved["a"]["config"]).digest()
    )
    table = trials_table(tmp_path, 2).set_index("trial")
    assert table.loc[["d", "e"], "status"].tolist() == ["duplicate"] * 2
    assert table.loc[["d", "e"], "duplicate_of"].tolist() == ["a", "a"]
    # the score of the trial they repeat, but no fold of their own: never promoted or best
    assert table.loc[["d", "e"], "fold0_score"].tolist() == [0.7, 0.7]
    assert table.loc[["d", "e"], "folds_done"].tolist() == [0, 0]
    assert table["default"].sum() == 1
    # a restarted duplicate stays one (and trains nothing)
    assert run_trial(ctx, "d", DEFAULT, [0])["duplicate_of"] == "a" and trained == ["a", "b", "c"]

    promoted: list[Any] = []

    class Recorder:
        def evaluate(self, fn: Any, ctx: Any, units: list[Any], *args: Any, **kw: Any) -> list[Any]:
            promoted.extend(units)
            return []

    run = _run(tmp_path, trials=5)
    run.engine = Recorder()  # type: ignore[assignment]
    stage_promote(run)  # --promote 1: the best other than the default (b), and the default (a); never d or e
    assert sorted({k for k, _, _ in promoted}) == ["a", "b"]


def test_a_duplicate_of_a_running_trial_frees_its_slot_and_takes_the_final_score(
    tmp_path: Path, planned: tuple[Path, Plan], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A duplicate waited (holding a Ray or worker slot) while the trial it repeats ran, and had no score when that
    trial was between a failed attempt and its retry. It now returns at once, and the trials table takes the
    score the original ends with."""
    import fcntl
    import threading

    from automed.search.report import trials_table
    from automed.workflow.trial import run_trial

    ctx = _trial_ctx(tmp_path, planned[0], DEFAULT)
    trained = _fake_training(monkeypatch, {"a": None})
    run_trial(ctx, "a", DEFAULT, [0])  # its first attempt ended before fold 0 finished (then a retry runs)
    reports: list[dict[str, float]] = []
    assert "score" not in run_trial(ctx, "b", DEFAULT, [0], reports.append)  # between the attempts: none yet
    with (tmp_path / "trials" / "a" / ".running").open("a") as running:
        fcntl.flock(running, fcntl.LOCK_SH)  # a's retry runs
        got: list[dict[str, Any]] = []
        dup = threading.Thread(target=lambda: got.append(run_trial(ctx, "c", DEFAULT, [0], reports.append)))
        dup.start()
        dup.join(timeout=10)
        assert not dup.is_alive() and got, "the duplicate waited for the trial it repeats"
        assert got[0] == {"key": "c", "duplicate_of": "a", "folds": {}, "n_folds_done": 0, "pending": True}
        (tmp_path / "trials" / "a" / "result.json").write_text(
            json.dumps({"folds": {"0": {"score": 0.8}}, "score": 0.8, "n_folds_done": 1})
        )
        fcntl.flock(running, fcntl.LOCK_UN)
    assert reports == [] and trained == ["a"]  # no score told to the engine while a ran, nothing trained
    table = trials_table(tmp_path, 2).set_index("trial")
    # both duplicates get the score a ended with, but count no fold of their own (never promoted or best)
    assert table.loc[["b", "c"], "fold0_score"].tolist() == [0.8, 0.8]
    assert table.loc[["b", "c"], "folds_done"].tolist() == [0, 0]
    assert table.loc[["b", "c"], "status"].tolist() == ["duplicate"] * 2
    # a duplicate that comes after a finished: its score at once, told to the engine
    assert run_trial(ctx, "d", DEFAULT, [0], reports.append)["score"] == 0.8
    assert reports == [{"epoch": 0.0, "score": 0.8, "validated": 1.0}]


def test_the_verdict_says_which_duplicates_have_no_score(
    tmp_path: Path, planned: tuple[Path, Plan], monkeypatch: pytest.MonkeyPatch
) -> None:
    from automed.search.report import trials_table
    from automed.workflow.sweep_verdict import duplicates_note
    from automed.workflow.trial import run_trial

    ctx = _trial_ctx(tmp_path, planned[0], DEFAULT)
    _fake_training(monkeypatch, {"a": None, "b": 0.6})
    other = {**DEFAULT, "optimizer": "adamw"}
    for key, values in (("a", DEFAULT), ("b", other), ("c", DEFAULT), ("d", other)):
        run_trial(ctx, key, values, [0])
    table = trials_table(tmp_path, 2).set_index("trial")
    assert math.isnan(table.loc["c", "fold0_score"]) and table.loc["d", "fold0_score"] == 0.6
    assert duplicates_note(table.reset_index()) == (
        "2 trial(s) drew the config of an earlier trial and took its result (not trained again); "
        "1 of them (c) has no score: the trial it repeats has none"
    )


def duplicate_objective(ctx: Any, key: str, values: Any, folds: Any, report: Any) -> dict[str, Any]:
    """Stands in for run_trial in the optuna engine's processes: every trial repeats one that was stopped early."""
    return {"key": key, "duplicate_of": "t0000", "folds": {}, "n_folds_done": 0}


@pytest.mark.slow  # about 5 s (a process pool; a short training): make test-fast stays under 3 minutes
def test_the_optuna_engine_counts_a_duplicate_without_a_score_as_stopped(tmp_path: Path) -> None:
    """A duplicate of a trial stopped early returns no score: the optuna engine failed it on the missing key."""
    from automed.search.engine import SearchSpec
    from automed.search.optuna_engine import OptunaEngine

    ctx = SweepContext(
        str(tmp_path), "ds", {}, _space(FOUR).model_dump(mode="json"), {}, 2, "sqlite:///x", "e", "r"
    )
    spec = SearchSpec(n_trials=2, folds=[0], concurrency=1, seed=0)
    engine = OptunaEngine(None, {"cpu": 1.0, "gpu": 0.0})
    outcomes = engine.search(duplicate_objective, ctx, _space(FOUR), [], spec, False)
    assert [o.status for o in outcomes] == ["stopped", "stopped"], outcomes


def test_a_partial_default_point_is_said_and_its_trial_is_not_the_default(
    tmp_path: Path,
    planned: tuple[Path, Plan],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The planner's learning rate is automatic (none of a float range) and its optimizer 'auto' none of the choices:
    the default point fixed only the loss and was enqueued without a word, its first trial sampling the rest."""
    from automed.search.report import trials_table
    from automed.workflow.trial import run_trial

    _, plan = planned
    space = _space(
        {
            "optimizer": {"type": "categorical", "choices": ["sgd", "adamw"]},
            "loss": {"type": "categorical", "choices": ["dice_ce", "dice_focal"]},
            "learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2},
        }
    )
    point = {"loss": "dice_ce"}  # default_point's answer for this space and the base config
    run = _run(tmp_path, trials=4)
    with caplog.at_level(logging.WARNING):
        stage_search(run, space, TrainConfig(), plan, point, None)  # type: ignore[arg-type]
    assert run.engine.calls == [([point], 4)]  # type: ignore[attr-defined]
    note = (
        "the planner's default point fixes loss and leaves optimizer, learning_rate to the sampler (their default "
        "values are none the space holds; give them a `default:`): its first trial samples them, so no trial is "
        "the planner default"
    )
    assert caplog.text.count(note) == 1 and run.state["stages"]["default_partial"] == note
    # the trial the partial point drew is not flagged the default (its config is not the planner's)
    shutil.copy(planned[0] / "plan.json", tmp_path / "plan.json")
    ctx = SweepContext(
        str(tmp_path), "ds", TrainConfig().model_dump(mode="json"), space.model_dump(mode="json"), point, 2,
        "sqlite:///x.db", "e", "r",
    )  # fmt: skip
    _fake_training(monkeypatch, {"first": 0.7})
    run_trial(ctx, "first", {"optimizer": "sgd", "loss": "dice_ce", "learning_rate": 0.004}, [0])
    assert not trials_table(tmp_path, 2)["default"].any()
    # a complete default point says nothing; a finite space leaves a partial one out and says so
    run = _run(tmp_path, trials=4)
    stage_search(run, space, TrainConfig(), plan, {**point, "optimizer": "sgd", "learning_rate": 0.01}, None)  # type: ignore[arg-type]
    assert "default_partial" not in run.state["stages"]
    run = _run(tmp_path, trials=8)
    stage_search(run, _space(FOUR), TrainConfig(), plan, point, None)  # type: ignore[arg-type]
    assert run.state["stages"]["default_partial"].endswith(
        "leaves optimizer to the sampler (their default values are none the space holds; give them a `default:`): "
        "it is not evaluated, so no trial is the planner default"
    )


@pytest.mark.parametrize("reports", [0, 2])
def test_a_ray_duplicate_that_takes_no_score_still_reports_the_metric(
    monkeypatch: pytest.MonkeyPatch, reports: int
) -> None:
    """A duplicate of a trial still running (or one that ended unvalidated) reported nothing: Tune ended it with a
    result of its config alone and refused it ("Trial returned a result which did not include the specified
    metric(s) `score`"), which ended a resumed sweep whose space has two parameters. It reports no score (NaN) at
    epoch 0; a trial that reported is left as it is."""
    from ray import tune

    from automed.search.ray_engine import _search_trainable

    got: list[dict[str, float]] = []
    monkeypatch.setattr(tune, "report", got.append)
    monkeypatch.setattr(tune, "get_context", lambda: type("C", (), {"get_trial_id": lambda self: "dup"})())

    def objective(ctx: Any, key: str, values: Any, folds: Any, report: Any) -> dict[str, Any]:
        for epoch in range(1, reports + 1):
            report({"epoch": float(epoch), "score": 0.5})
        return {"key": key, "duplicate_of": "orig", "folds": {}, "n_folds_done": 0, "pending": True}

    space = _space({"loss": {"type": "categorical", "choices": ["dice_ce", "dice_focal"]}})
    ctx = SweepContext("/sweep", "ds", {}, space.model_dump(mode="json"), {}, 2, "sqlite:///x.db", "e", "r")
    _search_trainable({"loss": "dice_ce"}, objective, ctx, [0])
    if reports:
        assert got == [{"epoch": 1.0, "score": 0.5}, {"epoch": 2.0, "score": 0.5}]
    else:
        ((only,),) = [got]
        assert only["epoch"] == 0.0 and math.isnan(only["score"])
