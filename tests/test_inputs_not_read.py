"""What an input folder holds that predict (and the bundle) do not read is named, not dropped unseen: suffix-less files
that are not DICOM gave 'no images' without a word about them, and beside images they were skipped silently; so were
series nested two levels deep (a PACS or CD export's PATIENT/SERIES/IM0001), sub-folders of NIfTI and broken links."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from automed.errors import DatasetError
from automed.infer.inputs import discover
from automed.runtime.inputs import find_cases
from tests.conftest import shared


def _nifti(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 4, 5), np.float32)), str(path))


def _not_dicom(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "IM0001").write_bytes(b"\x00" * 300)  # a PACS-like name, but not DICOM
    (folder / "notes").write_text("scanned on the old CT")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")  # hidden: never named
    (folder / "empty").mkdir()  # nothing to name
    return folder


def test_a_folder_of_files_that_are_not_images_names_them(tmp_path: Path) -> None:
    folder = _not_dicom(tmp_path / "in")
    with pytest.raises(
        DatasetError,
        match=r"found none; 2 not read: IM0001, notes \(read are images \(\.nii\.gz .*\) and DICOM",
    ):
        discover(folder, 1)
    with pytest.raises(SystemExit, match=r"no images found; 2 not read: IM0001, notes \(read are"):
        find_cases(folder, 1)


def test_what_is_not_read_beside_images_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _not_dicom(tmp_path / "in")
    _nifti(folder / "a.nii.gz")
    _nifti(folder / "nifti" / "b.nii.gz")  # sub-folders are read for DICOM only
    (folder / "gone.nii.gz").symlink_to(tmp_path / "moved.nii.gz")
    with caplog.at_level(logging.WARNING, logger="automed"):
        assert [c.case_id for c in discover(folder, 1)] == ["a"]
    said = "4 not read: IM0001, gone.nii.gz \\(a broken link\\), nifti/, notes \\(read are images"
    assert any(re.search(said, r.getMessage()) for r in caplog.records)
    assert [c.case_id for c in find_cases(folder, 1)] == ["a"]
    assert re.search(said, capsys.readouterr().err)


def test_a_series_two_levels_deep_is_read_and_nifti_deep_named(tmp_path: Path) -> None:
    """A series two levels deep (PATIENT/SERIES) was named as not read; it is a case (tests/test_dicom_deep_folders.py
    has the PACS layouts). Other images in sub-folders, at any depth, are still named, not read."""
    shutil.copytree(shared("dicom", "hippo_crop_series", "Study1"), tmp_path / "in" / "patient" / "series")
    assert [c.case_id for c in discover(tmp_path / "in", 1)] == ["patient_series"]
    assert [c.case_id for c in discover(tmp_path / "in" / "patient", 1)] == ["series"]
    _nifti(tmp_path / "nifti" / "patient" / "a.nii.gz")
    with pytest.raises(
        DatasetError,
        match=r"found none; 1 not read: patient/ \(.* DICOM images alone in its sub-folders at any depth, besides "
        r"every image there for a classification or regression model: pass",
    ):
        discover(tmp_path / "nifti", 1)


def test_macos_hidden_files_are_no_inputs(tmp_path: Path) -> None:
    """macOS writes an AppleDouble ``._NAME`` beside each file copied to a foreign disk: beside a NIfTI it was an
    unreadable case ('._a'), in a series folder a stray that refused the series."""
    apple_double = b"\x00\x05\x16\x07" + b"\x00" * 80
    _nifti(tmp_path / "in" / "a.nii.gz")
    (tmp_path / "in" / "._a.nii.gz").write_bytes(apple_double)
    assert [c.case_id for c in discover(tmp_path / "in", 1)] == ["a"]
    assert [c.case_id for c in find_cases(tmp_path / "in", 1)] == ["a"]
    series = tmp_path / "series"
    shutil.copytree(shared("dicom", "hippo_crop_series", "Study1"), series)
    (series / "._1.dcm").write_bytes(apple_double)
    (series / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    assert [c.case_id for c in discover(series, 1)] == ["series"]
    assert [c.case_id for c in find_cases(series, 1)] == ["series"]


def test_a_cds_dicomdir_is_not_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A DICOM CD's index (``DICOMDIR``, DICOM without pixels) beside its series folders was named as 'neither an
    image nor DICOM' on every run."""
    shutil.copytree(shared("dicom", "hippo_crop_series", "Study1"), tmp_path / "cd" / "mr")
    (tmp_path / "cd" / "DICOMDIR").write_bytes(b"\x00" * 128 + b"DICM" + b"\x00" * 64)
    with caplog.at_level(logging.WARNING, logger="automed"):
        assert [c.case_id for c in discover(tmp_path / "cd", 1)] == ["mr"]
    assert not caplog.records
    assert [c.case_id for c in find_cases(tmp_path / "cd", 1)] == ["mr"]
    assert not capsys.readouterr().err


def test_what_a_series_folder_holds_besides_its_dicom_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A series folder is read as one volume; its notes or a folder inside it were skipped without a word."""
    series = tmp_path / "mr"
    shutil.copytree(shared("dicom", "hippo_crop_series", "Study1"), series)
    (series / "notes").write_text("contrast at 2 min")
    _nifti(series / "old" / "a.nii.gz")
    (series / "DICOMDIR").write_bytes(b"\x00" * 132)  # a CD's index: not named
    with caplog.at_level(logging.WARNING, logger="automed"):
        assert [c.case_id for c in discover(series, 1)] == ["mr"]
    assert any(re.search(r"mr: 2 not read: notes, old/ \(", r.getMessage()) for r in caplog.records)
    assert [c.case_id for c in find_cases(series, 1)] == ["mr"]
    assert re.search(r"mr: 2 not read: notes, old/ \(", capsys.readouterr().err)
