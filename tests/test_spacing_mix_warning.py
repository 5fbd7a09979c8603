"""2D datasets mixing pictures without a pixel spacing (PNG: read as 1 mm) and images that carry one (DICOM, NIfTI):
automed resamples by spacing, so verify warns that the two kinds would be shown to the network at other scales."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from automed.data.dataset import load_dataset
from automed.data.verify import verify


def _write(path: Path, seed: int, spacing: float | None) -> None:
    arr = np.random.default_rng(seed).integers(1, 255, size=(24, 20), dtype=np.uint8)
    img = sitk.GetImageFromArray(arr)
    if spacing is not None:
        img.SetSpacing((spacing, spacing))
    sitk.WriteImage(img, str(path))


def _dataset(tmp_path: Path, files: list[tuple[str, float | None]]) -> Path:
    tmp_path.mkdir(exist_ok=True)
    rows = ["SubjectID,Channel_0,ValueToPredict"]
    for i, (name, spacing) in enumerate(files):
        _write(tmp_path / name, i, spacing)
        rows.append(f"c{i},{name},{'ab'[i % 2]}")
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "d.csv"


def test_pictures_mixed_with_images_of_another_spacing_warn(tmp_path: Path) -> None:
    files = [("a.png", None), ("b.png", None), ("c.nii.gz", 0.2), ("d.nii.gz", 0.2)]
    rep = verify(load_dataset(_dataset(tmp_path, files)), show_progress=False)
    (w,) = [w for w in rep.warnings if "pixel spacing" in w.rule]
    assert "c2" in w.value and "c0" in w.value and "0.2" in w.value


def test_pictures_alone_or_images_of_one_spacing_do_not_warn(tmp_path: Path) -> None:
    only = [("a.png", None), ("b.png", None), ("c.png", None), ("d.png", None)]
    rep = verify(load_dataset(_dataset(tmp_path / "p", only)), show_progress=False)
    assert not [w for w in rep.warnings if "pixel spacing" in w.rule]
    near = [("a.png", None), ("b.png", None), ("c.nii.gz", 1.0), ("d.nii.gz", 0.9)]
    rep = verify(load_dataset(_dataset(tmp_path / "n", near)), show_progress=False)
    assert not [w for w in rep.warnings if "pixel spacing" in w.rule]
