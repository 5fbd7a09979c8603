"""What TPE is told of a duplicate trial (one whose config an earlier trial has, :mod:`automed.workflow.trial_claim`).
A duplicate of a running trial returns at once with no score; Ray's OptunaSearch told it PRUNED with no intermediate
value, and the optuna engine pruned it too: TPE ranks such a trial below every other, so the config was judged worst
before its own trial ended. Now a duplicate is told its original's score once the original has one, and is no
observation (FAIL, which TPE skips) when the original ends without one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from automed.search.space import SearchSpace

SPACE = SearchSpace.model_validate(
    {"name": "t", "parameters": {"lr": {"type": "float", "low": 0.001, "high": 0.01}}}
)


def _claimed(sweep: Path, key: str, original: str = "") -> None:
    td = sweep / "trials" / key
    td.mkdir(parents=True)
    dup = {"duplicate_of": original} if original else {}
    (td / "trial.json").write_text(json.dumps({"key": key, "values": {}, **dup}))


def _searcher(sweep: Path) -> Any:
    import optuna

    from automed.search.ray_engine import _DefineByRun
    from automed.search.ray_tune_hooks import TruthfulSearch

    search = TruthfulSearch(
        str(sweep),
        space=_DefineByRun(SPACE.model_dump(mode="json")),
        metric="score",
        mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    return search


def _states(search: Any) -> dict[str, tuple[str, float | None]]:
    return {
        tid: (search._ot_study.trials[t.number].state.name, search._ot_study.trials[t.number].value)
        for tid, t in search._ot_trials.items()
    }


@pytest.mark.parametrize("original_first", [False, True])
def test_a_duplicate_of_a_running_trial_is_told_the_originals_score_once_known(
    tmp_path: Path, original_first: bool
) -> None:
    search = _searcher(tmp_path)
    for tid in ("orig", "dup", "other"):
        assert search.suggest(tid) is not None
    _claimed(tmp_path, "orig")
    _claimed(tmp_path, "dup", original="orig")
    _claimed(tmp_path, "other")
    search.on_trial_result("orig", {"score": 0.3, "training_iteration": 1, "epoch": 1.0})
    if not original_first:
        search.on_trial_complete("dup", {"epoch": 0.0})  # returned at once: orig still runs
        assert _states(search)["dup"] == ("RUNNING", None)  # not PRUNED: TPE ignores it for now
    search.on_trial_complete("orig", {"score": 0.8, "validated": 1.0, "epoch": 4.0})
    if original_first:  # the driver heard of orig's end before of its duplicate's
        search.on_trial_complete("dup", {"epoch": 0.0})
    search.on_trial_complete("other", {"score": 0.4, "epoch": 2.0})  # stopped by ASHA: PRUNED
    assert _states(search) == {
        "orig": ("COMPLETE", 0.8),
        "dup": ("COMPLETE", 0.8),
        "other": ("PRUNED", None),
    }


def test_a_duplicate_of_a_trial_that_ends_without_a_score_is_no_observation(tmp_path: Path) -> None:
    search = _searcher(tmp_path)
    for tid in ("orig", "dup", "late", "failed", "dup2"):
        search.suggest(tid)
    _claimed(tmp_path, "orig")
    _claimed(tmp_path, "dup", original="orig")
    _claimed(tmp_path, "late", original="orig")
    _claimed(tmp_path, "failed")
    _claimed(tmp_path, "dup2", original="failed")
    search.on_trial_complete("dup", {"epoch": 0.0})
    search.on_trial_complete("orig", {"score": 0.2, "epoch": 2.0})  # the scheduler stopped it
    search.on_trial_complete("late", {"epoch": 0.0})  # found orig done with no score
    search.on_trial_complete("failed", error=True)
    search.on_trial_complete("dup2", {"epoch": 0.0})
    assert _states(search) == {
        "orig": ("PRUNED", None),
        "dup": ("FAIL", None),
        "late": ("FAIL", None),
        "failed": ("FAIL", None),
        "dup2": ("FAIL", None),
    }


def test_the_searcher_keeps_its_waiting_duplicates_across_a_checkpoint(tmp_path: Path) -> None:
    """Tune saves the searcher with the experiment and restores it on --resume: a duplicate still waiting for its
    original is told when the restored searcher hears of the original's end."""
    search = _searcher(tmp_path)
    search.suggest("orig")
    search.suggest("dup")
    _claimed(tmp_path, "orig")
    _claimed(tmp_path, "dup", original="orig")
    search.on_trial_complete("dup", {"epoch": 0.0})
    search.save(str(tmp_path / "searcher.pkl"))
    restored = _searcher(tmp_path)
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.on_trial_complete("orig", {"score": 0.6, "validated": 1.0})
    assert _states(restored) == {"orig": ("COMPLETE", 0.6), "dup": ("COMPLETE", 0.6)}


def racing_objective(ctx: Any, key: str, values: Any, folds: Any, report: Any) -> dict[str, Any]:
    """Stands in for run_trial in the optuna engine's processes: t0000 repeats t0001, which runs (so t0000 returns
    with no score); t0001 then scores 0.7; t0003 (trial number 2 is t0000's told score) repeats t0009, which never
    scores."""
    if key == "t0000":
        return {"key": key, "duplicate_of": "t0001", "folds": {}, "n_folds_done": 0, "pending": True}
    if key == "t0003":
        return {"key": key, "duplicate_of": "t0009", "folds": {}, "n_folds_done": 0}
    report({"epoch": 1.0, "score": 0.5})
    return {"key": key, "folds": {"0": {"score": 0.7}}, "n_folds_done": 1, "score": 0.7}


def test_the_optuna_engine_tells_a_duplicate_its_originals_score_once_known(tmp_path: Path) -> None:
    import optuna

    from automed.search.context import SweepContext
    from automed.search.engine import SearchSpec
    from automed.search.optuna_engine import KEY_ATTR, OptunaEngine, _storage

    ctx = SweepContext(str(tmp_path), "ds", {}, SPACE.model_dump(mode="json"), {}, 2, "sqlite:///x", "e", "r")
    spec = SearchSpec(n_trials=3, folds=[0], concurrency=1, seed=0, scheduler="none")
    outcomes = OptunaEngine(None, {"cpu": 1.0, "gpu": 0.0}).search(
        racing_objective, ctx, SPACE, [], spec, False
    )
    assert {o.key: o.status for o in outcomes} == {
        "t0000": "complete",
        "t0001": "complete",
        "t0003": "stopped",
    }
    study = optuna.load_study(study_name="search", storage=_storage(ctx))
    told = [(t.user_attrs[KEY_ATTR], t.state.name, t.value) for t in study.trials]
    # nothing PRUNED: t0000 is told t0001's score (its first, FAIL trial is skipped by TPE); t0003 stays FAIL
    assert told == [
        ("t0000", "FAIL", None),
        ("t0001", "COMPLETE", 0.7),
        ("t0000", "COMPLETE", 0.7),
        ("t0003", "FAIL", None),
    ]
    t0000 = [t for t in study.trials if t.user_attrs[KEY_ATTR] == "t0000"]
    assert t0000[0].params == t0000[1].params


def test_a_restarted_trials_epochs_reach_tpe_at_their_epoch(tmp_path: Path) -> None:
    """Ray's OptunaSearch reported each per-epoch score at Tune's training_iteration, which a trial restarted by a
    retry or a restored search counts from 1 again: Optuna ignored the restarted trial's values ("step already
    reported") until its count passed the old one, so a pruned trial was ranked on stale values. The fold's
    validated score was an intermediate value too."""
    search = _searcher(tmp_path)
    search.suggest("a")
    _claimed(tmp_path, "a")
    for i, score in enumerate((0.1, 0.2, 0.3), start=1):
        search.on_trial_result("a", {"epoch": float(i), "score": score, "training_iteration": i})
    # the driver was killed; the restored trial resumes fold 0 from its epoch-2 checkpoint
    for i, (epoch, score) in enumerate(((3.0, 0.35), (4.0, 0.5)), start=1):
        search.on_trial_result("a", {"epoch": epoch, "score": score, "training_iteration": i})
    search.on_trial_result("a", {"epoch": 4.0, "score": 0.9, "validated": 1.0, "training_iteration": 3})
    search.on_trial_complete("a", {"epoch": 4.0, "score": 0.9, "validated": 1.0})
    trial = search._ot_study.trials[0]
    assert trial.intermediate_values == {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.5}
    assert (trial.state.name, trial.value) == ("COMPLETE", 0.9)
