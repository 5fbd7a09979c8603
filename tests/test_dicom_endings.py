"""Image endings are matched ignoring letter case, and DICOM files end in ``.dcm``, in ``.IMA`` as Siemens scanners
export them (``SUBJ.MR.HEAD.0001.0001.2026.IMA``) or in ``.dicom`` (VinDr-CXR). An ``.IMA`` or ``.dicom`` file kept
its ending in its case ID and so in its prediction's name (``b.ima.nii.gz``), and was no image in a class folder; a
report saved as ``.IMA`` in a series folder refused the series as another image, and a MetaImage ``A.MHA`` was found
as an input but not read."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from automed.data.class_folders import load_class_folders
from automed.data.io import read_header
from automed.errors import DatasetError
from automed.infer.inputs import discover
from automed.runtime.inputs import find_cases
from tests.conftest import shared
from tests.test_dicom_xray_folders import _report, xray_dicom

SIEMENS = "SUBJ.DX.CHEST.0001.0001.2026"


def test_ima_and_upper_case_endings_are_dicom_endings(tmp_path: Path) -> None:
    xray_dicom(tmp_path / f"{SIEMENS}.IMA", 0)
    xray_dicom(tmp_path / "b.ima", 1)
    xray_dicom(tmp_path / "c.DCM", 2)
    xray_dicom(tmp_path / "e.dicom", 3)  # VinDr-CXR's ending
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 4, 5), np.float32)), str(tmp_path / "d.nii.gz"))
    (tmp_path / "d.nii.gz").rename(tmp_path / "d.NII.GZ")  # SimpleITK writes lower-case endings only
    want = [(SIEMENS, ".nii.gz"), ("b", ".nii.gz"), ("c", ".nii.gz"), ("d", ".nii.gz"), ("e", ".nii.gz")]
    assert [(c.case_id, c.suffix) for c in discover(tmp_path, 1)] == want
    assert [(c.case_id, c.suffix) for c in find_cases(tmp_path, 1)] == want
    alone = tmp_path / f"{SIEMENS}.IMA"
    assert [(c.case_id, c.suffix) for c in discover(alone, 1)] == [(SIEMENS, ".nii.gz")]
    assert [(c.case_id, c.suffix) for c in find_cases(alone, 1)] == [(SIEMENS, ".nii.gz")]
    assert read_header(alone).geometry.size == (16, 20, 1)


def test_an_ima_series_is_read_and_a_report_beside_it_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    series = tmp_path / "in" / "mr"
    series.mkdir(parents=True)
    for f in shared("dicom", "hippo_crop_series", "Study1").glob("*.dcm"):
        shutil.copy(f, series / f"SUBJ.MR.HEAD.0001.{int(f.stem):04d}.2026.IMA")
    _report(series / "SUBJ.SR.0002.0001.2026.IMA")
    with caplog.at_level(logging.WARNING, logger="automed"):
        assert [c.case_id for c in discover(series, 1)] == ["mr"]
    assert any("1 not read: SUBJ.SR.0002.0001.2026.IMA" in r.getMessage() for r in caplog.records)
    assert [c.case_id for c in find_cases(series, 1)] == ["mr"]
    assert "1 not read: SUBJ.SR.0002.0001.2026.IMA" in capsys.readouterr().err
    slices = sorted(f.name[: -len(".IMA")] for f in series.glob("SUBJ.MR.*"))
    assert sorted(c.case_id for c in discover(series, 1, dimension=2)) == slices


def test_a_class_folder_of_ima_files_gives_ids_without_the_ending(tmp_path: Path) -> None:
    for i, cls in enumerate(("normal", "effusion")):
        (tmp_path / cls).mkdir()
        xray_dicom(tmp_path / cls / f"{SIEMENS}.IMA", i)
        xray_dicom(tmp_path / cls / "x.dicom", i + 2)
    ds = load_class_folders(tmp_path)
    assert [c.case_id for c in ds.cases] == [
        f"effusion_{SIEMENS}",
        "effusion_x",
        f"normal_{SIEMENS}",
        "normal_x",
    ]


@pytest.mark.parametrize("ending", [".MHA", ".Mhd"])
def test_a_metaimage_ending_in_capitals_is_read(tmp_path: Path, ending: str) -> None:
    """``A.MHA`` was found as an input (endings are matched ignoring case) but SimpleITK picks MetaImage by the
    lower-case ending alone: predict refused it as unreadable ('give ... MHA'), the bundle failed at its turn."""
    from automed.data.io import read_sitk
    from automed.runtime.io import read_case

    sitk.WriteImage(
        sitk.GetImageFromArray(np.ones((3, 4, 5), np.float32)), str(tmp_path / f"a{ending.lower()}")
    )
    (tmp_path / f"a{ending.lower()}").rename(tmp_path / f"A{ending}")  # a .mhd's .raw keeps its name
    assert [(c.case_id, c.suffix) for c in discover(tmp_path, 1)] == [("A", ending.lower())]
    (case,) = find_cases(tmp_path, 1)
    assert read_case(case)[0].shape == (1, 3, 4, 5)
    assert read_sitk(tmp_path / f"A{ending}").GetSize() == (5, 4, 3)


def test_a_siemens_study_folder_of_several_series_says_how_to_split_it(tmp_path: Path) -> None:
    """Siemens exports a study's series into one folder of .IMA files: refused (read as one volume it would stack two
    series), now with both ways out, the bundle's too."""
    from tests.conftest import two_series_folder

    study = two_series_folder(tmp_path / "in" / "study")
    for f in study.iterdir():
        f.rename(f.with_suffix(".IMA"))
    with pytest.raises(
        DatasetError,
        match=r"study: an image folder must hold exactly one DICOM series; found 2 series: .*"
        r"Fix: move each series into its own folder .*automed convert .*study -o OUT",
    ):
        discover(tmp_path / "in", 1)
    with pytest.raises(
        SystemExit, match=r"study: .* exactly one DICOM series, found 2; move each series into"
    ):
        find_cases(tmp_path / "in", 1)
