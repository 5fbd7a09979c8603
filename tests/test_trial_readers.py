"""The other reads of a sweep trial's records go through ``search.trial_records`` too: a new trial's claim and an
``auto`` trial's settling read the others' ``trial.json`` with :func:`read_trial` (a damaged one refused naming the
file, the rule, the value and the fix), the live view and Tune's hooks skip a damaged one instead of crashing, and
a trial's result counts no fold whose ``fold_result.json`` is damaged (:func:`read_fold_result`: it runs again, its
training kept). Before, each crashed with a bare JSONDecodeError, KeyError, TypeError or AttributeError."""

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
from automed.search.ray_hooks import _duplicate_of
from automed.search.trial_records import read_fold_result
from automed.train.config import TrainConfig
from automed.workflow import trial_claim
from automed.workflow.trial import _aggregate
from automed.workflow.trials_live import read_trials

SPACE = {
    "name": "tiny",
    "parameters": {"loss": {"type": "categorical", "choices": ["dice_ce", "dice_focal"]}},
}
FOLD = {"score": 0.7, "epochs": 2, "compute_s": 3.0, "unit_s": 3.5, "node": ""}


def _trial_json(key: str) -> dict[str, Any]:
    """A trial.json as ``trial_claim.claim`` writes it."""
    config = TrainConfig(loss="dice_focal").model_dump(mode="json")
    return {"key": key, "values": {"loss": "dice_focal"}, "is_default": False, "config": config, "digest": "9f2e",
            "identity": {**config, "optimizer": "sgd"}}  # fmt: skip


def _trial(sweep_dir: Path, key: str, content: Any) -> Path:
    td = sweep_dir / "trials" / key
    td.mkdir(parents=True)
    (td / "trial.json").write_text(content if isinstance(content, str) else json.dumps(content))
    return td / "trial.json"


def _ctx(sweep_dir: Path) -> SweepContext:
    return SweepContext(str(sweep_dir), "ds", TrainConfig().model_dump(mode="json"), SPACE, {}, 2, "sqlite:///x.db",
                        "e", "r")  # fmt: skip


def _fold(td: Path, result: str) -> Path:
    """A finished, validated fold of trial folder ``td`` whose fold_result.json holds ``result``."""
    folder = td / "train" / "3d_fullres" / "fold_0"
    folder.mkdir(parents=True)
    (folder / "validation_metrics.json").write_text(json.dumps([{"case": "a", "dice_1": 0.8}]))
    (folder / "fold_result.json").write_text(result)
    return folder / "fold_result.json"


@pytest.mark.parametrize(
    ("text", "rule", "found"),
    [
        ('{"score": 0.', "fold_result.json must be a readable JSON file", "line 1"),
        ("[0.7]", "fold_result.json must be a JSON object", "[0.7] (list)"),
        (json.dumps({**FOLD, "score": "0.7"}), "fold_result.json's score must be the fold's score", "'0.7' (str)"),
        (json.dumps({k: v for k, v in FOLD.items() if k != "epochs"}), "fold_result.json must hold epochs", "none"),
    ],
)  # fmt: skip
def test_a_trial_counts_no_fold_whose_fold_result_is_damaged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, rule: str, found: str
) -> None:
    path = _fold(tmp_path, text)
    nothing = cast(Any, None)  # the plan and task serve only folds with rows
    with caplog.at_level(logging.WARNING):
        out, metrics = _aggregate(tmp_path, "t1", {}, TrainConfig(), _ctx(tmp_path), nothing, nothing)
    assert (out["folds"], out["n_folds_done"], metrics) == ({}, 0, {})
    (said,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert said.startswith(f"{path}: {rule}") and found in said and "counts as not done" in said
    assert path.read_text() == text  # left as it was: the fold's next unit writes it anew


def test_an_intact_fold_result_counts_its_fold(tmp_path: Path) -> None:
    path = _fold(tmp_path, json.dumps(FOLD))
    assert read_fold_result(path) == FOLD
    assert read_fold_result(path.with_name("none.json")) is None
    written_before_nodes = {k: v for k, v in FOLD.items() if k != "node"}
    path.write_text(json.dumps(written_before_nodes))
    assert read_fold_result(path) == written_before_nodes


def test_a_new_trial_refuses_another_trials_damaged_trial_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its claim looks for a trial with its config: one without its key had crashed it with a bare KeyError."""
    monkeypatch.setattr(trial_claim, "resolve", lambda *a: TrainConfig(loss="dice_focal"))  # (no plan needed)
    other = _trial(tmp_path, "t0", {k: v for k, v in _trial_json("t0").items() if k != "key"})
    with (
        contextlib.ExitStack() as running,
        pytest.raises(ArtifactError, match=re.escape("trial.json must hold key")) as exc,
    ):
        trial_claim.claim(_ctx(tmp_path), "t1", {"loss": "dice_focal"}, cast(Any, None), running)
    assert exc.value.problems[0].file == str(other)
    assert not (tmp_path / "trials" / "t1" / "trial.json").exists()


def test_settling_refuses_a_trial_json_without_its_config(tmp_path: Path) -> None:
    """An ``auto`` trial's first fold records its training identity: a trial.json without its config had crashed
    it with a bare KeyError."""
    saved = {**{k: v for k, v in _trial_json("t1").items() if k != "config"}, "identity": None}
    tfile = _trial(tmp_path, "t1", saved)
    with pytest.raises(ArtifactError, match=re.escape("trial.json must hold config")):
        trial_claim.settle(_ctx(tmp_path), "t1", "adamw")
    assert json.loads(tfile.read_text()) == saved


def test_the_live_view_skips_a_damaged_trial_json_and_reads_a_damaged_result_as_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """It polls every second: a trial.json that is no object (TypeError) or a result.json that is none
    (AttributeError) had ended the view; a damaged result.json warns where the sweep reads it, not each poll."""
    _trial(tmp_path, "t0", "[]")
    (_trial(tmp_path, "t1", _trial_json("t1")).parent / "result.json").write_text('["score"]')
    with caplog.at_level(logging.WARNING):
        (row,) = read_trials(tmp_path)
    assert (row["key"], row["folds"], row["score"]) == ("t1", 0, None) and not caplog.records


def test_tunes_hooks_take_a_damaged_trial_json_for_no_duplicate(tmp_path: Path) -> None:
    assert _duplicate_of(_trial(tmp_path, "t0", '"t1"')) == ""  # no object: had raised AttributeError
    assert _duplicate_of(_trial(tmp_path, "t1", {**_trial_json("t1"), "duplicate_of": "t0"})) == "t0"
    assert _duplicate_of(tmp_path / "trials" / "t2" / "trial.json") == ""  # not claimed yet


@pytest.mark.parametrize(
    ("text", "found"), [('{"compute_s": 1', "line 1"), ('{"seconds": 4.0}', "{'seconds': 4.0} (dict)")]
)
def test_a_damaged_fold_partial_leaves_its_compute_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, found: str
) -> None:
    """A fold stopped part-way records its compute in fold_partial.json: a damaged one had crashed the trial's
    result (and, in a failing fold, hidden the fold's own exception) with a bare JSONDecodeError or KeyError."""
    folder = tmp_path / "train" / "3d_fullres" / "fold_0"
    folder.mkdir(parents=True)
    (folder / "fold_partial.json").write_text(text)
    with caplog.at_level(logging.WARNING):
        out, _ = _aggregate(
            tmp_path, "t1", {}, TrainConfig(), _ctx(tmp_path), cast(Any, None), cast(Any, None)
        )
    assert (out["folds"], out["compute_s"]) == ({}, 0.0)
    (said,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert said.startswith(f"{folder / 'fold_partial.json'}: fold_partial.json must be") and found in said
    (folder / "fold_partial.json").write_text('{"compute_s": 4.5}')
    assert _aggregate(tmp_path, "t1", {}, TrainConfig(), _ctx(tmp_path), cast(Any, None), cast(Any, None))[0][
        "compute_s"
    ] == pytest.approx(4.5)
