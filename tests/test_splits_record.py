"""A work dir's ``splits.json`` is read through one check (``data.splits.read_splits``) by every train and sweep
path that reads it: a damaged one (not JSON, not an object, a key missing or of another type, fold counts that
disagree, another layout) is refused naming the file, the rule, the value found and the fix, and never treated as
missing (a new split would change the folds trained on it). Before, train, sweep and their resumes crashed with a
bare JSONDecodeError, KeyError or TypeError."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, cast

import pytest

from automed.data.splits import SCHEMA_VERSION, check_splits, read_splits
from automed.errors import ArtifactError
from automed.search.schema import SearchSpace
from automed.train.config import TrainConfig
from automed.workdir import WorkDir
from automed.workflow import sweep
from automed.workflow.sweep_stages import SweepOptions
from automed.workflow.sweep_state import new_state
from automed.workflow.train import _fold_jobs
from automed.workflow.train_options import TrainOptions

FIX = "put back the splits.json automed wrote (from a backup)"


def written() -> dict[str, Any]:
    """A splits.json as ``make_splits`` writes it (two folds)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "method": "GroupKFold",
        "n_folds": 2,
        "seed": 12345,
        "cases_hash": "0f3c",
        "reason": "2-fold split of 4 cases in 4 subject group(s), seed 12345",
        "folds": [{"train": ["c", "d"], "val": ["a", "b"]}, {"train": ["a", "b"], "val": ["c", "d"]}],
    }


def _workdir(tmp_path: Path, content: Any = None, text: str | None = None) -> Path:
    wd = tmp_path / "W"
    wd.mkdir()
    WorkDir(wd).splits.write_text(text if text is not None else json.dumps(content))
    return wd


def _refused(path: Path) -> list[Any]:
    """The problems ``read_splits`` refuses ``path`` with, having left it as it was."""
    before = path.read_bytes()
    with pytest.raises(ArtifactError) as e:
        read_splits(path)
    assert path.read_bytes() == before
    for p in e.value.problems:
        assert p.file == str(path)
    return list(e.value.problems)


def test_a_split_as_automed_writes_it_is_read(tmp_path: Path) -> None:
    wd = _workdir(tmp_path, written())
    assert read_splits(WorkDir(wd).splits) == written()
    unversioned = {k: v for k, v in written().items() if k != "schema_version"}
    (tmp_path / "old.json").write_text(json.dumps(unversioned))
    assert (
        read_splits(tmp_path / "old.json") == unversioned
    )  # edited by hand, or an earlier automed's: version 1


@pytest.mark.parametrize("cut", [0, 1, 60])
def test_a_truncated_split_is_refused(tmp_path: Path, cut: int) -> None:
    wd = _workdir(tmp_path, text=json.dumps(written())[:cut])
    (p,) = _refused(WorkDir(wd).splits)
    assert p.rule == "splits.json must be valid JSON" and re.fullmatch(r".+ at line 1", p.value)
    assert p.fix.startswith(FIX)  # never "delete it and re-run the stage": a new split changes the folds


@pytest.mark.parametrize(("content", "found"), [([], "[] (list)"), ("S", "'S' (str)"), (3, "3 (int)")])
def test_a_split_that_is_not_an_object_is_refused(tmp_path: Path, content: Any, found: str) -> None:
    (p,) = _refused(WorkDir(_workdir(tmp_path, content)).splits)
    assert (p.rule, p.value) == ("splits.json must be a JSON object", found)
    assert p.fix.startswith(FIX) and "never makes a new one in its place" in p.fix


@pytest.mark.parametrize(
    ("change", "rule", "found"),
    [
        ({"n_folds": None}, "splits.json must hold n_folds (the number of folds, a whole number)", "none"),
        ({"folds": None}, "splits.json must hold folds (a list of folds, each with train and val lists of case ids)",
         "none"),
        ({"n_folds": "2"}, "splits.json's n_folds must be the number of folds, a whole number", "'2' (str)"),
        ({"n_folds": True}, "splits.json's n_folds must be the number of folds, a whole number", "True (bool)"),
        ({"folds": {"0": {}}}, "splits.json's folds must be a list of folds, each with train and val lists of case "
         "ids", "{'0': {}} (dict)"),
        ({"folds": [{"train": "a", "val": ["b"]}, {"train": ["b"], "val": ["a"]}]},
         "splits.json's folds must be a list of folds, each with train and val lists of case ids", "(list)"),
        ({"folds": [{"train": ["b"]}, {"train": ["a"], "val": ["b"]}]},
         "splits.json's fold 0 must hold val (a list of case ids)", "['train'] (list)"),
        ({"n_folds": 3}, "splits.json's n_folds must be at least 1 and count its folds", "n_folds 3, 2 fold(s)"),
        ({"n_folds": 0, "folds": []}, "splits.json's n_folds must be at least 1 and count its folds",
         "n_folds 0, 0 fold(s)"),
    ],
)  # fmt: skip
def test_a_split_with_a_key_missing_or_of_another_type_is_refused(
    tmp_path: Path, change: dict[str, Any], rule: str, found: str
) -> None:
    content = {**written(), **change}
    content = {k: v for k, v in content.items() if v is not None}
    (p,) = _refused(WorkDir(_workdir(tmp_path, content)).splits)
    assert p.rule == rule and found in p.value and p.fix.startswith(FIX)


def test_a_split_of_a_newer_automed_is_refused(tmp_path: Path) -> None:
    (p,) = _refused(WorkDir(_workdir(tmp_path, {**written(), "schema_version": 2})).splits)
    assert p.rule == "splits.json schema_version must be 1" and "newer automed" in p.value


def test_folds_trained_on_a_damaged_split_refuse_another_split(tmp_path: Path) -> None:
    """``check_splits`` (train, preprocess: before the split is written again) compared a damaged split with a new
    one through a bare JSONDecodeError; now its trained folds keep it: refused, never replaced."""
    wd = _workdir(tmp_path, text='{"n_folds": 2, "folds": [')
    fold = wd / "train" / "3d_fullres" / "fold_0"
    fold.mkdir(parents=True)
    (fold / "checkpoint_final.pt").write_bytes(b"weights")
    with pytest.raises(ArtifactError, match=re.escape("splits.json must be valid JSON")):
        check_splits(cast(Any, None), WorkDir(wd).splits)  # refused before the dataset is split again
    assert WorkDir(wd).splits.read_text() == '{"n_folds": 2, "folds": ['


def test_a_training_refuses_a_damaged_split_before_its_folds(tmp_path: Path) -> None:
    """``train`` (and ``--resume``) read the folds to train from splits.json: a truncated one had crashed with a
    bare JSONDecodeError (after the training's MLflow run was opened)."""
    wd = _workdir(tmp_path, text=json.dumps(written())[:100])
    nothing = cast(Any, None)  # what comes after the split is not reached
    with pytest.raises(ArtifactError, match=re.escape("splits.json must be valid JSON")):
        _fold_jobs(wd, nothing, TrainConfig(), TrainOptions(), nothing, nothing, True, 0)


def test_a_resumed_sweep_refuses_a_damaged_split_before_its_mlflow_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep read its split after it had opened (or reopened) its MLflow run, with a bare KeyError; now it is
    read first, and nothing is written (no store, no run)."""
    space = SearchSpace.model_validate(
        {"name": "tiny", "fixed": {"epochs": 2}, "parameters": {"loss": {"type": "categorical",
                                                                         "choices": ["dice_ce", "dice_focal"]}}}
    )  # fmt: skip
    opts = SweepOptions(trials=2, folds=2, tracking_uri=f"sqlite:///{tmp_path / 'store.db'}")
    state = new_state(str(tmp_path / "data"), opts, space, TrainConfig(), "all")
    monkeypatch.setattr(sweep, "resume_state", lambda *a: (state, opts))
    wd = _workdir(tmp_path, {k: v for k, v in written().items() if k != "n_folds"})
    with pytest.raises(ArtifactError, match=re.escape("splits.json must hold n_folds")):
        sweep._sweep(None, wd, opts, None, True, False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["W"] and [p.name for p in wd.iterdir()] == [
        "splits.json"
    ]
