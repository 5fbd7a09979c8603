"""A finished fold's validation records, ``validation_metrics.json`` (its rows) and ``validation_inference.json``
(how they were predicted), are recomputed from the fold's final weights when missing: a damaged one (truncated,
edited) is now read as missing, with a warning naming the file, the rule and the value found, so a resumed training
or sweep trial validates that fold again (its training kept). Before, either crashed the resume with a bare
JSONDecodeError or KeyError, and a ``tta`` of another type (``"no"``) was taken as true."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, cast

import pytest

from automed.records import PROGRESS_VERSION, stamped
from automed.search.context import SweepContext
from automed.train.config import TrainConfig
from automed.workflow.fold import VALIDATED_WITH, read_validation_metrics, validated_rows
from automed.workflow.trial import _aggregate

ROWS = [{"case": "a", "dice_1": 0.8}, {"case": "b", "dice_1": 0.6}]


def _finished_fold(root: Path, metrics: str | None = None, how: str | None = None) -> Path:
    """A fold folder as a finished, validated fold leaves it (``metrics``/``how``: the two records' text)."""
    folder = root / "train" / "3d_fullres" / "fold_0"
    folder.mkdir(parents=True)
    (folder / "checkpoint_final.pt").write_bytes(b"weights")
    (folder / "progress.json").write_text(
        json.dumps(stamped({"finished": True, "history": []}, PROGRESS_VERSION))
    )
    (folder / "validation_metrics.json").write_text(metrics if metrics is not None else json.dumps(ROWS))
    (folder / VALIDATED_WITH).write_text(
        how if how is not None else json.dumps({"tta": True, "mirrors": "even"})
    )
    return folder


def _warned(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_intact_records_give_the_folds_rows(tmp_path: Path) -> None:
    folder = _finished_fold(tmp_path)
    assert validated_rows(folder, True, "even") == ROWS
    assert validated_rows(folder, True, "all") is None  # another mirror set: validated again, as before
    (folder / VALIDATED_WITH).unlink()
    assert (
        validated_rows(folder, True, "all") == ROWS
    )  # validated before the file was written: the defaults then


@pytest.mark.parametrize(
    ("metrics", "rule", "found"),
    [
        ('[{"case": "a", "dice_1": 0.8}, {"ca', "validation_metrics.json must be a readable JSON file", "Unterminated"),
        ("", "validation_metrics.json must be a readable JSON file", "Expecting value"),
        ('{"case": "a"}', "validation_metrics.json must be a list of JSON objects, one per validated case",
         "{'case': 'a'} (dict)"),
        ("[0.8, 0.6]", "validation_metrics.json must be a list of JSON objects, one per validated case",
         "[0.8, 0.6] (list)"),
    ],
)  # fmt: skip
def test_damaged_rows_are_read_as_none_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, metrics: str, rule: str, found: str
) -> None:
    folder = _finished_fold(tmp_path, metrics=metrics)
    with caplog.at_level(logging.WARNING):
        assert validated_rows(folder, True, "even") is None
        assert read_validation_metrics(folder) is None
    (said, again) = _warned(caplog)
    assert said == again and said.startswith(f"{folder / 'validation_metrics.json'}: {rule}, found ")
    assert (
        found in said and "the fold is validated again from its final weights (its training is kept)" in said
    )
    assert (folder / "validation_metrics.json").read_text() == metrics  # left: the new validation replaces it


@pytest.mark.parametrize(
    ("how", "rule", "found"),
    [
        ('{"tta": tr', "validation_inference.json must be a readable JSON file", "Expecting value"),
        ('["even"]', "validation_inference.json must be a JSON object", "['even'] (list)"),
        ('{"tta": true}', "validation_inference.json must hold tta (true or false) and mirrors ('all' or 'even')",
         "{'tta': True} (dict)"),
        ('{"tta": "no", "mirrors": "even"}',
         "validation_inference.json must hold tta (true or false) and mirrors ('all' or 'even')", "'no'"),
        ('{"tta": true, "mirrors": "some"}',
         "validation_inference.json must hold tta (true or false) and mirrors ('all' or 'even')", "'some'"),
    ],
)  # fmt: skip
def test_a_damaged_inference_record_has_the_fold_validated_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str, rule: str, found: str
) -> None:
    folder = _finished_fold(tmp_path, how=how)
    with caplog.at_level(logging.WARNING):
        assert validated_rows(folder, True, "even") is None
    (said,) = _warned(caplog)
    assert said.startswith(f"{folder / VALIDATED_WITH}: {rule}, found ") and found in said
    assert "validated again" in said


def test_a_sweep_trial_counts_no_fold_whose_rows_are_damaged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A trial's result.json is recomputed from its folds' files: a fold with damaged rows counts as not done (its
    unit validates it again), where it had crashed the trial with a bare JSONDecodeError."""
    folder = _finished_fold(tmp_path, metrics='[{"case": "a", "dice_1": 0.')
    result = {"score": 0.7, "epochs": 2, "compute_s": 3.0, "unit_s": 3.5, "node": ""}
    (folder / "fold_result.json").write_text(json.dumps(result))
    ctx = SweepContext(str(tmp_path), "ds", {}, {}, {}, 2, "sqlite:///x.db", "e", "r")
    nothing = cast(Any, None)  # the plan and task serve only folds with rows
    with caplog.at_level(logging.WARNING):
        out, metrics = _aggregate(tmp_path, "t1", {}, TrainConfig(), ctx, nothing, nothing)
    assert (out["folds"], out["n_folds_done"], metrics) == ({}, 0, {})
    assert json.loads((tmp_path / "result.json").read_text())["folds"] == {}
    assert len(_warned(caplog)) == 1
