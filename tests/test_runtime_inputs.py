"""The exported bundle's own input checks (automed/runtime, no automed imports there) refuse what `automed predict`
refuses: several DICOM series in one folder, a second channel file for a one-channel model, two inputs writing one
prediction, an output folder that is or holds the inputs, non-finite voxels (unless --nan-to)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from automed.runtime.io import find_cases, read_case
from tests.conftest import shared, two_series_folder


def _img(path: Path, value: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 5, 6), value, np.float32)), str(path))
    return path


def test_two_dicom_series_in_one_folder(tmp_path: Path) -> None:
    mixed = two_series_folder(tmp_path / "mixed")
    (case,) = find_cases(mixed, 1)
    with pytest.raises(SystemExit, match=r"exactly one DICOM series, found 2 .*its own folder"):
        read_case(case)
    (one,) = find_cases(shared("dicom", "hippo_crop_series", "Study1"), 1)
    assert read_case(one)[0].shape[0] == 1


def test_second_channel_for_a_one_channel_model(tmp_path: Path) -> None:
    _img(tmp_path / "pat_0000.nii.gz")
    _img(tmp_path / "pat_0001.nii.gz")
    with pytest.raises(SystemExit, match=r"second channel file beside pat_0000\.nii\.gz.*takes 1 channel"):
        find_cases(tmp_path, 1)
    assert [c.case_id for c in find_cases(tmp_path, 2)] == ["pat"]


def test_two_inputs_with_one_prediction_name(tmp_path: Path) -> None:
    _img(tmp_path / "a.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 6), np.uint8)), str(tmp_path / "a.png"))
    with pytest.raises(SystemExit, match=r"both would write the prediction a\.nii\.gz"):
        find_cases(tmp_path, 1)


def test_bundle_cli_refuses_output_into_inputs_and_nan(tmp_path: Path) -> None:
    from automed.runtime import cli

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "preprocess.json").write_text('{"files": {"onnx": []}}')
    inputs = tmp_path / "in"
    _img(inputs / "a.nii.gz")
    for out in (inputs, tmp_path):
        with pytest.raises(SystemExit, match="must not be, or hold, the input"):
            cli.main(["-i", str(inputs), "-o", str(out)], bundle=bundle)
    assert sorted(p.name for p in inputs.iterdir()) == ["a.nii.gz"]
