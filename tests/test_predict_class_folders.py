"""A folder-per-class test set (``test/<class>/<images>``, the layout classification trains on) is predicted by an
image-level model, each case named as training names it (``<class>_<file stem>``): it was refused with "no images
found ... pass a sub-folder of other images itself". A segmentation model still reads DICOM alone in sub-folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from automed.data.class_folders import load_class_folders
from automed.errors import DatasetError
from automed.infer.inputs import discover
from automed.runtime.inputs import find_cases


def _test_set(root: Path) -> Path:
    """Two classes of PNG pictures, one named with a space (training makes it ``_``)."""
    for cls, names in {"benign": ("a", "b c"), "malignant": ("a", "d")}.items():
        (root / cls).mkdir(parents=True)
        for i, name in enumerate(names):
            picture = np.full((8, 8), 40 * i, np.uint8)
            sitk.WriteImage(sitk.GetImageFromArray(picture), str(root / cls / f"{name}.png"))
    return root


def test_an_image_level_model_predicts_a_folder_per_class_test_set(tmp_path: Path) -> None:
    root = _test_set(tmp_path / "test")
    trained = sorted(c.case_id for c in load_class_folders(root).cases)
    assert trained == ["benign_a", "benign_b_c", "malignant_a", "malignant_d"]
    cases = discover(root, 1, dimension=2)
    assert [c.case_id for c in cases] == trained  # the IDs training gives the same pictures
    assert [c.images for c in cases] == [
        (root / "benign" / "a.png",),
        (root / "benign" / "b c.png",),
        (root / "malignant" / "a.png",),
        (root / "malignant" / "d.png",),
    ]
    assert [c.case_id for c in discover(root, 1, dimension=2)] == trained  # deterministic
    # the bundle's runtime (predict.py) reads the same cases
    assert sorted(c.case_id for c in find_cases(root, 1, 2)) == trained


def test_a_segmentation_model_still_reads_dicom_alone_in_sub_folders(tmp_path: Path) -> None:
    root = _test_set(tmp_path / "test")
    with pytest.raises(DatasetError, match=r"none; 2 not read: benign/, malignant/"):
        discover(root, 1)
    with pytest.raises(SystemExit, match=r"no images found; 2 not read: benign/, malignant/"):
        find_cases(root, 1)


def test_a_class_folder_of_the_wrong_channels_is_named(tmp_path: Path) -> None:
    """The pictures of a class folder are checked as any input is: an RGB picture for a grey model is refused,
    naming the file."""
    root = _test_set(tmp_path / "test")
    sitk.WriteImage(
        sitk.GetImageFromArray(np.zeros((8, 8, 3), np.uint8), isVector=True), str(root / "benign" / "e.png")
    )
    with pytest.raises(DatasetError, match=r"benign/e\.png: the model needs 1 channel\(s\) per case"):
        discover(root, 1, dimension=2)
