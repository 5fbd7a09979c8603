"""``automed export --case``: a mistyped parity case is named by its option before the model is loaded (it read
"the input must exist ... Fix: pass a folder, a DICOM folder or a CSV", predict's words for ``-i``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from automed import api
from automed.errors import ConfigError


def test_a_missing_parity_case_is_named_by_its_option(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"--case: the parity case must exist.*nope\.png.*leave --case out"
    ) as err:
        api.export(tmp_path / "work", tmp_path / "E", case=tmp_path / "nope.png")
    assert "a CSV" not in str(err.value) and not (tmp_path / "E").exists()


def test_a_parity_case_under_the_home_folder_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--case=~/c.nii.gz`` reaches automed unexpanded (the shell expands no ``~`` after ``=``): it was refused as
    missing though it exists; the model is what is missing here."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "c.nii.gz").write_bytes(b"")
    with pytest.raises(Exception) as err:
        api.export(tmp_path / "work", tmp_path / "E", case="~/c.nii.gz")
    assert "--case" not in str(err.value) and "work" in str(err.value)


@pytest.mark.slow
def test_a_parity_case_with_nan_voxels_is_refused_before_the_export(
    small_training: dict[str, Path], tmp_path: Path
) -> None:
    """A parity case holding NaN ran the whole export, then blamed the model ("exported models must match torch ...
    max |dp| nan ... report this model") and left a parity-failed record (review finding)."""
    import shutil

    import numpy as np
    import SimpleITK as sitk

    from automed.errors import DatasetError

    root = tmp_path / "copy"
    shutil.copytree(small_training["root"], root)  # nothing may be written in the shared work dir
    image = sitk.ReadImage(str(root / "data" / "imagesTr" / "case_000.nii.gz"))
    values = sitk.GetArrayFromImage(image).astype(np.float32)
    values[0, 0, :16] = np.nan
    bad = sitk.GetImageFromArray(values)
    bad.CopyInformation(image)
    sitk.WriteImage(bad, str(tmp_path / "nan.mha"))  # (ITK's NIfTI reader turns NaN into 0)
    before = sorted(p.name for p in (root / "W").iterdir())
    with pytest.raises(DatasetError, match=r"parity case's voxels must be finite.*16 NaN.*another --case"):
        api.export(root / "W", tmp_path / "E", case=tmp_path / "nan.mha", show_progress=False)
    assert not (tmp_path / "E").exists() and sorted(p.name for p in (root / "W").iterdir()) == before
