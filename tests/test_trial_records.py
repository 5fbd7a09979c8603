"""A sweep trial's records are read through one reader each (``search.trial_records``). A damaged ``trial.json``
(the config the trial trained: nothing else records it) is refused naming the file, the rule, the value found and the
fix, by a resume before its MLflow run opens and wherever the sweep reads it; a damaged ``result.json`` (recomputed
from the trial's fold files) is read as none, as a trial without one was, with a warning. Before, either crashed the
sweep with a bare JSONDecodeError, KeyError or TypeError, and a trial.json without its config was listed until the
best trial's config was read."""

from __future__ import annotations

import contextlib
import json
import logging
import re
from pathlib import Path
from typing import Any, cast

import pytest

from automed.errors import ArtifactError
from automed.search.context import SweepContext
from automed.search.engine import TrialOutcome
from automed.search.report import trials_table
from automed.search.schema import SearchSpace
from automed.search.trial_records import check_trials, read_result, read_trial
from automed.train.config import TrainConfig
from automed.workflow import sweep, trial_claim
from automed.workflow.sweep_stages import SweepOptions, _units
from automed.workflow.sweep_state import new_state
from automed.workflow.sweep_verdict import failure_lines
from automed.workflow.trial_claim import reuse

FIX = "put back the trial.json automed wrote (from a backup): it is the config the trial trained"
SPACE = {
    "name": "tiny",
    "parameters": {"loss": {"type": "categorical", "choices": ["dice_ce", "dice_focal"]}},
}


def trial_json(key: str = "t1") -> dict[str, Any]:
    """A trial.json as ``trial_claim.claim`` writes it."""
    config = TrainConfig(loss="dice_focal").model_dump(mode="json")
    return {"key": key, "values": {"loss": "dice_focal"}, "is_default": False, "config": config, "digest": "9f2e",
            "identity": {**config, "optimizer": "sgd"}}  # fmt: skip


def result_json(key: str = "t1", folds: tuple[int, ...] = (0,)) -> dict[str, Any]:
    """A result.json as ``trial._aggregate`` writes it."""
    done = {str(f): {"score": 0.5 + f / 10, "epochs": 2} for f in folds}
    return {"key": key, "values": {"loss": "dice_focal"}, "folds": done, "n_folds_done": len(done),
            "compute_s": 3.5, "trial_s": 4.0, "host": "h", "node": "", "score": 0.55}  # fmt: skip


def _trial(sweep_dir: Path, key: str = "t1", trial: Any = None, result: Any = None, text: str = "") -> Path:
    td = sweep_dir / "trials" / key
    td.mkdir(parents=True)
    (td / "trial.json").write_text(text or json.dumps(trial_json(key) if trial is None else trial))
    if result is not None:
        (td / "result.json").write_text(result if isinstance(result, str) else json.dumps(result))
    return td


def test_records_as_automed_writes_them_are_read(tmp_path: Path) -> None:
    td = _trial(tmp_path, result=result_json())
    assert read_trial(td / "trial.json", config=True) == trial_json()
    check_trials(tmp_path)
    no_config = {k: v for k, v in trial_json().items() if k != "config"}
    (td / "trial.json").write_text(json.dumps(no_config))
    assert read_trial(td / "trial.json") == no_config  # a reader of its key and values alone
    with pytest.raises(ArtifactError, match=re.escape("trial.json must hold config")):
        check_trials(tmp_path)  # a resume reads the configs
    assert read_result(td / "result.json") == result_json()
    assert read_result(td / "none.json") is None


@pytest.mark.parametrize(
    ("change", "rule", "found"),
    [
        ({"config": None}, "trial.json must hold config (the training config it trains, an object)", "none"),
        ({"values": None}, "trial.json must hold values (its sampled values, an object)", "none"),
        ({"values": ["dice_focal"]}, "trial.json's values must be its sampled values, an object",
         "['dice_focal'] (list)"),
        ({"key": 3}, "trial.json's key must be the trial's key, text", "3 (int)"),
        ({"is_default": "no"}, "trial.json's is_default must be whether it is the planner default, true or false",
         "'no' (str)"),
        ({"duplicate_of": 7}, "trial.json's duplicate_of must be the trial it repeats, text or null", "7 (int)"),
    ],
)  # fmt: skip
def test_a_trial_json_with_a_key_missing_or_of_another_type_is_refused(
    tmp_path: Path, change: dict[str, Any], rule: str, found: str
) -> None:
    content = {k: v for k, v in {**trial_json(), **change}.items() if v is not None}
    td = _trial(tmp_path, trial=content)
    with pytest.raises(ArtifactError) as e:
        read_trial(td / "trial.json", config=True)
    (p,) = e.value.problems
    assert (p.file, p.rule, p.value) == (str(td / "trial.json"), rule, found) and p.fix.startswith(FIX)


@pytest.mark.parametrize(
    ("text", "rule"),
    [("", "trial.json must be valid JSON"), ('{"key": "t1", "val', "trial.json must be valid JSON"),
     ("[1]", "trial.json must be a JSON object")],
)  # fmt: skip
def test_a_trial_json_that_is_no_object_is_refused(tmp_path: Path, text: str, rule: str) -> None:
    td = _trial(tmp_path, text=text or " ")
    with pytest.raises(ArtifactError) as e:
        read_trial(td / "trial.json")
    assert [p.rule for p in e.value.problems] == [rule]


def test_the_trials_table_refuses_a_damaged_trial_json(tmp_path: Path) -> None:
    """A trial.json whose values are no object, or a truncated one, crashed the table with a bare AttributeError
    or JSONDecodeError."""
    _trial(tmp_path, "t0")
    _trial(tmp_path, "t1", trial={**trial_json("t1"), "values": ["dice_focal"]})
    with pytest.raises(ArtifactError, match=re.escape("trial.json's values must be its sampled values")):
        trials_table(tmp_path, 2)
    (tmp_path / "trials" / "t1" / "trial.json").write_text('{"key": "t1", "values"')
    with pytest.raises(ArtifactError, match=re.escape("trial.json must be valid JSON")):
        trials_table(tmp_path, 2)


@pytest.mark.parametrize(
    ("result", "rule"),
    [('{"folds": {"0": {"score"', "result.json must be a readable JSON file"),
     ([], "result.json must be a JSON object"),
     ({"score": 0.5}, "result.json's folds must be an object of an object per fold"),
     ({"folds": {"0": {"score": "0.5", "epochs": 2}}}, "result.json's folds must each be a fold number"),
     ({"folds": {"zero": {"score": 0.5, "epochs": 2}}}, "result.json's folds must each be a fold number"),
     ({"folds": {"0": {"score": 0.5, "epochs": 1.5}}}, "result.json's folds must each be a fold number"),
     ({"folds": {"0": {"epochs": 2}}}, "result.json's folds must each be a fold number"),
     ({**result_json(), "score": None}, "result.json's score must be the trial's score over its folds")],
)  # fmt: skip
def test_a_damaged_result_json_is_read_as_none_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, result: Any, rule: str
) -> None:
    """The units still to run (a promotion's, a grid's) take every fold of it (run_trial finds the finished ones
    done and writes result.json anew); the table lists it with no fold done. Both had crashed."""
    td = _trial(tmp_path, result=result)
    before = (td / "result.json").read_bytes()
    with caplog.at_level(logging.WARNING):
        assert read_result(td / "result.json") is None
        assert _units(tmp_path, [("t1", {"loss": "dice_focal"})], [0, 1]) == [
            ("t1", {"loss": "dice_focal"}, [0]), ("t1", {"loss": "dice_focal"}, [1])
        ]  # fmt: skip
        row = trials_table(tmp_path, 2).iloc[0]
    assert (row["trial"], row["folds_done"]) == ("t1", 0)
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 3 and all(m.startswith(f"{td / 'result.json'}: {rule}") for m in said)
    assert "read as no fold of the trial done" in said[0] and "writes it anew" in said[0]
    assert (td / "result.json").read_bytes() == before  # left for the trial's next fold unit to write anew


def test_an_intact_result_json_keeps_its_done_folds(tmp_path: Path) -> None:
    _trial(tmp_path, result=result_json(folds=(0,)))
    assert _units(tmp_path, [("t1", {"loss": "dice_focal"})], [0, 1]) == [("t1", {"loss": "dice_focal"}, [1])]


def test_a_resumed_sweep_refuses_damaged_trials_before_its_mlflow_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every trial's trial.json, all problems at once, before the sweep reopens its MLflow run."""
    opts = SweepOptions(trials=2, folds=2, tracking_uri=f"sqlite:///{tmp_path / 'store.db'}")
    state = new_state(str(tmp_path / "data"), opts, SearchSpace.model_validate(SPACE), TrainConfig(), "all")
    monkeypatch.setattr(sweep, "resume_state", lambda *a: (state, opts))
    wd = tmp_path / "S"
    folds = [{"train": ["a"], "val": ["b"]}, {"train": ["b"], "val": ["a"]}]
    wd.mkdir()
    (wd / "splits.json").write_text(json.dumps({"schema_version": 1, "n_folds": 2, "folds": folds}))
    _trial(wd, "t0", text='{"key": "t0"')
    _trial(wd, "t1", trial={**trial_json("t1"), "values": None})
    _trial(wd, "t2")
    with pytest.raises(ArtifactError, match=re.escape(f"cannot resume the sweep in {wd}")) as e:
        sweep._sweep(None, wd, opts, None, True, False)
    assert [(Path(p.file).parent.name, p.rule) for p in e.value.problems] == [
        ("t0", "trial.json must be valid JSON"),
        ("t1", "trial.json's values must be its sampled values, an object"),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["S"]  # no MLflow store made


def test_a_failed_trial_with_damaged_values_still_gets_its_line(tmp_path: Path) -> None:
    """The sweep's summary of failed trials crashed with a bare TypeError on values that are no object."""
    _trial(tmp_path, "t1", trial={**trial_json("t1"), "values": ["dice_focal"]})
    lines = failure_lines(tmp_path, [TrialOutcome("t1", "error", "RuntimeError: out of memory")])
    assert lines == ["trial t1 failed (no values): RuntimeError: out of memory; no traceback saved (the engine's "
                     "logs)"]  # fmt: skip


def test_a_duplicate_of_a_trial_with_a_damaged_result_takes_no_score(tmp_path: Path) -> None:
    """(It crashed with a bare JSONDecodeError.)"""
    _trial(tmp_path, "t0", result='{"folds": ')
    ctx = SweepContext(str(tmp_path), "ds", {}, SPACE, {}, 2, "sqlite:///x.db", "e", "r")
    assert reuse(ctx, "t1", "t0", [0], None) == {
        "key": "t1",
        "duplicate_of": "t0",
        "folds": {},
        "n_folds_done": 0,
    }


def test_a_restarted_trial_refuses_its_damaged_trial_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restarted trial (or another fold of it) compares its config with the one it started with: a trial.json
    without it had crashed the trial with a bare KeyError."""
    monkeypatch.setattr(trial_claim, "resolve", lambda *a: TrainConfig(loss="dice_focal"))  # (no plan needed)
    td = _trial(tmp_path, trial={k: v for k, v in trial_json().items() if k != "config"})
    before = (td / "trial.json").read_bytes()
    ctx = SweepContext(str(tmp_path), "ds", TrainConfig().model_dump(mode="json"), SPACE, {}, 2, "sqlite:///x.db",
                       "e", "r")  # fmt: skip
    with (
        contextlib.ExitStack() as running,
        pytest.raises(ArtifactError, match=re.escape("trial.json must hold config")),
    ):
        trial_claim.claim(ctx, "t1", {"loss": "dice_focal"}, cast(Any, None), running)
    assert (td / "trial.json").read_bytes() == before
