"""A folder-per-class test set (``test/<class>/<images>``, the layout classification trains on) is predicted by an
image-level model, each case named as training names it (``<class>_<file stem>``): it was refused with "no images
found ... pass a sub-folder of other images itself". A segmentation model still reads DICOM alone in sub-folders."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

from automed.data.class_folders import load_class_folders
from automed.errors import DatasetError
from automed.infer.inputs import discover
from automed.runtime.inputs import find_cases
from automed.workflow.predict_truth import folder_truth


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


def test_dicom_in_a_class_folder_is_named_as_training_names_it(tmp_path: Path) -> None:
    """A DICOM X-ray in a class folder kept its space (``benign_x ray 1``) while training and every other image
    there go through safe_id (``benign_x_ray_1``): the prediction table's IDs did not match the training's."""
    from tests.test_dicom_xray_folders import xray_dicom

    root = _test_set(tmp_path / "test")
    xray_dicom(root / "benign" / "x ray 1.dcm", 1)
    ids = [c.case_id for c in discover(root, 1, dimension=2)]
    assert "benign_x_ray_1" in ids and "benign_x ray 1" not in ids
    assert "benign_x_ray_1" in [c.case_id for c in find_cases(root, 1, 2)]  # the bundle's runtime alike
    assert "benign_x_ray_1" in [c.case_id for c in load_class_folders(root).cases]


def test_a_series_in_a_class_folder_of_a_volume_model_gets_a_safe_id(tmp_path: Path) -> None:
    import shutil

    from tests.conftest import shared

    src = shared("dicom", "hippo_crop_series", "Study1")
    root = tmp_path / "test"
    shutil.copytree(src, root / "mild case" / "Study 1")
    (root / "severe").mkdir()
    for got in (discover(root, 1, dimension=3), find_cases(root, 1, 3)):
        assert [c.case_id for c in got] == ["mild_case_Study_1"]
    # a segmentation model keeps a series folder's name as it is (1.000000-CT Abdomen-12345 stays readable)
    assert [c.case_id for c in discover(root, 1)] == ["mild case_Study 1"]


def _classes(*names: str) -> SimpleNamespace:
    return SimpleNamespace(kind="classification", class_names=list(names))


def test_a_folder_per_class_input_gives_each_image_its_folders_class(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _test_set(tmp_path / "test")
    cases = discover(root, 1, dimension=2)
    truth = folder_truth(root, cases, _classes("benign", "malignant"))
    assert truth == {"benign_a": "benign", "benign_b_c": "benign", "malignant_a": "malignant",
                     "malignant_d": "malignant"}  # fmt: skip
    # a folder that is not one of the model's classes: named, its truth left empty (never a wrong class)
    with caplog.at_level("WARNING", logger="automed"):
        truth = folder_truth(root, cases, _classes("benign", "Malignant", "normal"))
    assert truth is not None and truth["benign_a"] == "benign" and truth["malignant_d"] == ""
    assert "malignant/ is not (2 image(s))" in caplog.text and "(malignant/ -> Malignant/)" in caplog.text


def test_no_truth_where_the_folders_are_not_classes(tmp_path: Path) -> None:
    root = _test_set(tmp_path / "test")
    cases = discover(root, 1, dimension=2)
    assert (
        folder_truth(root, cases, _classes("cat", "dog")) is None
    )  # patients' or wards' folders, not classes
    assert folder_truth(root, cases, SimpleNamespace(kind="regression", class_names=[])) is None
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8), np.uint8)), str(root / "top.png"))
    top = discover(root, 1, dimension=2)  # an image at the top: not the folder-per-class layout
    assert folder_truth(root, top, _classes("benign", "malignant")) is None
    assert folder_truth(root / "top.png", top[-1:], _classes("benign", "malignant")) is None


def test_the_bundle_orders_cases_as_automed_predict_does(tmp_path: Path) -> None:
    """Folders ``a/`` and ``a-b/`` are read in that order, their IDs ``a_b`` and ``a-b_x`` sort the other way: the
    bundle's predictions.csv had listed its rows by folder, automed predict's by case ID."""
    for folder, name in (("a", "b"), ("a-b", "x")):
        (tmp_path / folder).mkdir()
        sitk.WriteImage(
            sitk.GetImageFromArray(np.zeros((8, 8), np.uint8)), str(tmp_path / folder / f"{name}.png")
        )
    ours = [c.case_id for c in discover(tmp_path, 1, dimension=2)]
    assert ours == ["a-b_x", "a_b"]
    assert [c.case_id for c in find_cases(tmp_path, 1, 2)] == ours


def test_case_ids_keep_letters_of_every_script_in_one_spelling(tmp_path: Path) -> None:
    """Class folders ``Ödem`` and ``Ädem`` (and a class named in Japanese) gave ``_dem_1`` twice and ``__1``: refused
    as clashing IDs, where the README promises letters. A decomposed (macOS) ``Ö`` gives the same ID as a composed
    one, in training and prediction alike."""
    from automed.runtime.folders import safe_id

    decomposed = unicodedata.normalize("NFD", "Ödem")
    for cls in (decomposed, "Ädem", "肺炎"):
        (tmp_path / cls).mkdir()
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8), np.uint8)), str(tmp_path / cls / "1 a.png"))
    trained = [c.case_id for c in load_class_folders(tmp_path).cases]
    assert trained == sorted(["Ödem_1_a", "Ädem_1_a", "肺炎_1_a"])
    assert [c.case_id for c in discover(tmp_path, 1, dimension=2)] == trained
    assert [c.case_id for c in find_cases(tmp_path, 1, 2)] == trained
    assert safe_id("a/b c:d") == "a_b_c_d" and safe_id(decomposed) == "Ödem"


def test_class_folders_of_integer_classes_written_with_zeros(tmp_path: Path) -> None:
    """Integer classes are numbers (``01`` in a CSV is class ``1``): a test set in folders ``01/``, ``02/`` got no
    truth column at all, without a word."""
    root = tmp_path / "test"
    for folder in ("01", "02"):
        (root / folder).mkdir(parents=True)
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8), np.uint8)), str(root / folder / "x.png"))
    cases = discover(root, 1, dimension=2)
    assert folder_truth(root, cases, _classes("1", "2", "3")) == {"01_x": "1", "02_x": "2"}
