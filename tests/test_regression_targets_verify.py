"""Regression targets that pass as finite numbers yet cannot be trained on: a spread too large to standardize in
float64, and one value for every case (issue 15 audit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from automed.data.dataset import load_dataset
from automed.data.verify import verify
from automed.errors import DatasetError


def _csv(tmp_path: Path, values: list[str]) -> Path:
    rows = ["SubjectID,Channel_0,ValueToPredict"]
    (tmp_path / "img").mkdir()
    for i, v in enumerate(values):
        arr = np.random.default_rng(i).normal(100, 20, size=(4, 6, 5)).astype(np.float32)
        sitk.WriteImage(sitk.GetImageFromArray(arr), str(tmp_path / "img" / f"s{i:02d}.nii.gz"))
        rows.append(f"s{i:02d},img/s{i:02d}.nii.gz,{v}")
    out = tmp_path / "d.csv"
    out.write_text("\n".join(rows) + "\n")
    return out


def test_regression_values_too_large_to_standardize_are_an_error(tmp_path: Path) -> None:
    ds = load_dataset(_csv(tmp_path, ["0.5", "1e300", "1.5", "2.5"]))
    assert ds.task_type == "regression"
    with pytest.raises(DatasetError) as exc:
        verify(ds, show_progress=False)
    (bad,) = [p for p in exc.value.problems if "standard deviation" in p.rule]
    assert "s01" in bad.value and "1e+300" in bad.value
    assert "units" in bad.fix


def test_regression_with_one_value_for_every_case_is_an_error(tmp_path: Path) -> None:
    ds = load_dataset(_csv(tmp_path, ["2.5", "2.5", "2.5", "2.5"]))
    assert ds.task_type == "regression"
    with pytest.raises(DatasetError, match=r"regression target must vary"):
        verify(ds, show_progress=False)


def test_ordinary_regression_values_pass(tmp_path: Path) -> None:
    ds = load_dataset(_csv(tmp_path, ["0.5", "1e12", "-3.25", "2.5"]))
    verify(ds, show_progress=False)


def test_integer_targets_read_as_classes_name_the_regression_option(tmp_path: Path) -> None:
    # ages: at most 20 distinct integers are read as classes, so a rare age is a class of one case
    ds = load_dataset(_csv(tmp_path, ["31", "31", "34", "40", "40", "31"]))
    assert ds.task_type == "classification"
    with pytest.raises(DatasetError) as exc:
        verify(ds, show_progress=False)
    (rare,) = [p for p in exc.value.problems if "'34'" in p.value]
    assert "--task regression" in rare.fix


def test_named_classes_are_not_told_of_regression(tmp_path: Path) -> None:
    ds = load_dataset(_csv(tmp_path, ["normal", "normal", "rare", "effusion", "effusion", "normal"]))
    with pytest.raises(DatasetError) as exc:
        verify(ds, show_progress=False)
    assert all("--task" not in p.fix for p in exc.value.problems)


def test_numbers_with_a_unit_are_told_to_drop_it(tmp_path: Path) -> None:
    """Volumes written '250.5 ml' are text, so classes: a regression of N cases became N classes of one case each,
    and each class was told 'add cases of this class, or merge it', with no word of the unit."""
    ds = load_dataset(_csv(tmp_path, ["250.5 ml", "117.0 ml", "132 ml", "250.5 ml"]))
    assert ds.task_type == "classification"
    with pytest.raises(DatasetError) as exc:
        verify(ds, show_progress=False)
    (rare,) = [p for p in exc.value.problems if "'117.0 ml'" in p.value]
    assert "numbers with a unit" in rare.fix and "'117.0 ml'" in rare.fix and "117.0" in rare.fix
    assert "--task" not in rare.fix  # class names: no integer guess to override
