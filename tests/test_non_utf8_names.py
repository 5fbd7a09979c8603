"""A file name that is not UTF-8 (Latin-1 ``caf\\xe9.nii.gz`` from an old PACS or a Windows share) made SimpleITK
abort the whole process, a C++ ``terminate`` with no Python error and no file named; predict, the bundle and the
image readers now refuse it first, naming it and how to rename it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from automed.data.io import read_header, read_sitk
from automed.errors import DatasetError
from automed.infer.inputs import discover
from automed.runtime.inputs import find_cases
from tests.conftest import shared


def _latin1(folder: Path, name: bytes) -> Path:
    """``folder/name`` (bytes, not UTF-8), renamed from a file written under a UTF-8 name."""
    target = folder / os.fsdecode(name)  # the bytes kept as surrogates, as os.listdir gives them
    try:
        next(f for f in folder.iterdir() if f.is_file()).rename(target)
    except OSError:  # a file system that stores UTF-8 names only (macOS)
        pytest.skip("this file system refuses names that are not UTF-8")
    return target


def test_a_latin1_image_name_is_refused_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    sitk.WriteImage(
        sitk.GetImageFromArray(np.zeros((3, 4, 5), np.float32)), str(tmp_path / "in" / "a.nii.gz")
    )
    bad = _latin1(tmp_path / "in", b"caf\xe9.nii.gz")
    said = r"file names must be UTF-8 .*caf\\xe9\.nii\.gz.*rename them \(convmv"
    with pytest.raises(DatasetError, match=said):
        discover(tmp_path / "in", 1)
    with pytest.raises(SystemExit, match=said):
        find_cases(tmp_path / "in", 1)
    for read in (read_sitk, read_header):  # a dataset's listing, a CSV's row
        with pytest.raises(DatasetError, match=r"file names must be UTF-8"):
            read(bad)


def test_a_latin1_slice_in_a_series_sub_folder_is_refused(tmp_path: Path) -> None:
    series = tmp_path / "in" / "mr"
    shutil.copytree(shared("dicom", "hippo_crop_series", "Study1"), series)
    _latin1(series, b"IM\xe9.dcm")
    with pytest.raises(DatasetError, match=r"file names must be UTF-8 .*mr/IM\\xe9\.dcm"):
        discover(tmp_path / "in", 1)
    with pytest.raises(SystemExit, match=r"file names must be UTF-8 .*mr/IM\\xe9\.dcm"):
        find_cases(tmp_path / "in", 1)


def test_a_latin1_slice_in_a_deep_series_folder_is_refused(tmp_path: Path) -> None:
    """Series are read at any depth (PATIENT/STUDY/SERIES): the check reaches as deep, or SimpleITK aborts."""
    series = tmp_path / "in" / "patient" / "study" / "mr"
    shutil.copytree(shared("dicom", "hippo_crop_series", "Study1"), series)
    _latin1(series, b"IM\xe9.dcm")
    said = r"file names must be UTF-8 .*patient/study/mr/IM\\xe9\.dcm"
    with pytest.raises(DatasetError, match=said):
        discover(tmp_path / "in", 1)
    with pytest.raises(SystemExit, match=said):
        find_cases(tmp_path / "in", 1)
