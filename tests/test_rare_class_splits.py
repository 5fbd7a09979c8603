"""Folds of a classification dataset with a rare class (fewer cases than folds) stay stratified: the rare cases
spread over validation folds and every fold's model trains on some of them (issue 15 audit)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from automed.data.schema import Case, Dataset
from automed.data.splits import check_splits, make_splits, write_splits
from automed.errors import ArtifactError


def _ds(counts: list[int]) -> Dataset:
    values = [float(k) for k, n in enumerate(counts) for _ in range(n)]
    cases = tuple(Case(f"c{i:03d}", (Path(f"/x/{i}.png"),), None, v, None) for i, v in enumerate(values))
    return Dataset("t", Path("/x/d.csv"), "csv", ("",), None, cases)


def _rare_per_fold(s: dict[str, object], ds: Dataset, value: float) -> list[int]:
    rare = {c.case_id for c in ds.cases if c.value == value}
    return [len(rare & set(f["val"])) for f in s["folds"]]  # type: ignore[attr-defined]


def test_a_rare_class_is_spread_over_the_folds() -> None:
    ds = _ds([20, 17, 3])
    s = make_splits(ds, 5, 12345)  # automed's default seed
    assert s["method"] == "StratifiedGroupKFold"
    assert max(_rare_per_fold(s, ds, 2.0)) == 1  # unstratified, all 3 fell into fold 4's validation
    assert "fewer cases than folds" in str(s["reason"])
    big = [sum(1 for c in f["val"] if c < "c020") for f in s["folds"]]
    assert big == [4] * 5


def test_classes_all_smaller_than_the_fold_count_are_split_unstratified() -> None:
    """scikit-learn's StratifiedGroupKFold refuses when every class has fewer cases than folds (4 and 4, 5 folds):
    those are split as before, unstratified, not stopped with a ValueError."""
    s = make_splits(_ds([4, 4]), 5, 12345)
    assert s["method"] == "GroupKFold" and len(s["folds"]) == 5


def test_work_dirs_split_before_keep_their_unstratified_folds(tmp_path: Path) -> None:
    ds = _ds([20, 17, 3])
    old = make_splits(ds, 5, 12345, stratify_rare_classes=False)
    assert old["method"] == "GroupKFold"
    path = tmp_path / "splits.json"
    path.write_text(json.dumps(old))
    fold = tmp_path / "train" / "2d" / "fold_0"
    fold.mkdir(parents=True)
    (fold / "checkpoint_final.pt").write_bytes(b"x")
    check_splits(ds, path, 5, 12345)  # no error: the trained folds continue on their split
    with pytest.raises(ArtifactError, match=r"5 folds trained, 3 asked"):  # not "the cases changed"
        check_splits(ds, path, 3, 12345)
    write_splits(ds, path, 5, 12345)
    assert json.loads(path.read_text()) == old
    (fold / "checkpoint_final.pt").unlink()  # nothing trained: a new split, stratified
    assert write_splits(ds, path, 5, 12345)["method"] == "StratifiedGroupKFold"


def test_cases_of_one_subject_group_say_their_scores_are_training_scores(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Patches mined from one slide are one subject group: the split is one fold validating on its training data,
    said only in splits.json, while the run headed its numbers 'cross-validation'."""
    cases = tuple(Case(f"p{i}", (Path(f"/x/{i}.png"),), None, float(i % 2), "slide1") for i in range(6))
    with caplog.at_level("WARNING", logger="automed"):
        s = make_splits(Dataset("t", Path("/x/d.csv"), "csv", ("",), None, cases), 5, 12345)
    assert s["method"] == "all" and s["folds"][0]["train"] == s["folds"][0]["val"]
    assert "6 cases of one subject group (slide1)" in caplog.text and "training scores" in caplog.text
