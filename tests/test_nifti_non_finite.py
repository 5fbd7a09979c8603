"""NaN and infinite voxels of float NIfTI files: ITK's reader made them 0, so verify, predict (and its --nan-to),
the bundle, metrics and explain never saw them; a scan with NaN around the brain was trained and predicted as if
they were 0. They are read back from the file where ITK wrote 0 (runtime.nifti_raw)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from automed.errors import AutomedError


def _float_nifti(path: Path, gz: bool = True) -> Path:
    a = np.ones((9, 8, 5), np.float32)
    a[4, 3, 2], a[1, 1, 1], a[0, 7, 4] = np.nan, np.inf, -np.inf
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(a, np.diag([0.8, 0.9, 2.0, 1.0])), str(path))
    return path


def test_the_reader_gives_nan_and_infinity_back_where_they_are_stored(tmp_path: Path) -> None:
    from automed.runtime.io import read_picture

    for name in ("a.nii.gz", "a.nii"):
        img = read_picture(_float_nifti(tmp_path / name))
        arr = sitk.GetArrayFromImage(img)  # (z, y, x): the file's (x, y, z) transposed
        assert np.isnan(arr[2, 3, 4]) and arr[1, 1, 1] == np.inf and arr[4, 7, 0] == -np.inf
        assert np.count_nonzero(~np.isfinite(arr)) == 3 and img.GetSpacing() == pytest.approx((0.8, 0.9, 2.0))
    plain = tmp_path / "b.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((5, 8, 9), np.int16)), str(plain))
    assert np.isfinite(sitk.GetArrayFromImage(read_picture(plain))).all()


def test_verify_predict_and_metrics_see_them(tmp_path: Path) -> None:
    from automed.data.io import read_image
    from automed.data.verify_rules import voxel_problem
    from automed.evaluate.cells import check_voxels
    from automed.runtime.io import Case, read_case, unusable_voxels

    image = _float_nifti(tmp_path / "scan.nii.gz")
    arrays, _ = read_image(image)
    problem = voxel_problem(image, arrays[0])
    assert problem is not None and problem.value == "3 NaN/Inf voxels"
    channels, _ = read_case(Case("scan", (image,), ".nii.gz"))  # predict's and the bundle's reader
    assert int(unusable_voxels(channels).sum()) == 3
    with pytest.raises(AutomedError, match="scan"):
        check_voxels(arrays[0], str(image), "reference of scan", labels=False)
