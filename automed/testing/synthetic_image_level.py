"""Deterministic synthetic image-level datasets (images + a GaNDLF-style CSV) for tests and the README example.

Classification: each image shows bright blobs on a noisy background; class k has k + 1 of them (a property flips,
rotations and zoom keep), so a small network learns it in a few hundred iterations. Regression: each
volume holds one sphere whose volume in mm³ is the target (as predicting a structure's volume from the image).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

CLASS_NAMES = ("one", "two", "three")


def _blob(shape: tuple[int, ...], centre: np.ndarray, radius: float) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    d = sum(((g - c) / radius) ** 2 for g, c in zip(grids, centre, strict=True))
    out: np.ndarray = np.asarray(d) <= 1.0
    return out


def make_classification(
    dest: Path,
    n_cases: int = 24,
    *,
    shape: tuple[int, ...] = (32, 32),
    n_classes: int = 2,
    names: bool = True,
    seed: int = 0,
) -> Path:
    """``dest/images/case_XXX.{png|nii.gz}`` and ``dest/dataset.csv`` (``SubjectID,Channel_0,ValueToPredict``; the
    class names, or indices with ``names=False``). 2D shapes write 8-bit PNGs, 3D shapes NIfTI volumes."""
    rng = np.random.default_rng(seed)
    (dest / "images").mkdir(parents=True, exist_ok=True)
    rows = ["SubjectID,Channel_0,ValueToPredict"]
    for i in range(n_cases):
        k = i % n_classes
        img = rng.normal(40, 10, size=shape)
        for b in range(k + 1):  # class k shows k + 1 blobs: invariant to flips, rotations and zoom
            centre = np.array(shape, dtype=float) / 2 + rng.uniform(-1.5, 1.5, size=len(shape))
            centre[-1] = shape[-1] * (b + 1) / (k + 2)
            img += 150 * _blob(shape, centre, min(shape) / 8)
        if len(shape) == 2:
            path = dest / "images" / f"case_{i:03d}.png"
            sitk.WriteImage(sitk.GetImageFromArray(np.clip(img, 0, 255).astype(np.uint8)), str(path))
        else:
            path = dest / "images" / f"case_{i:03d}.nii.gz"
            im = sitk.GetImageFromArray(img.astype(np.float32))
            im.SetSpacing((1.0, 1.0, 2.0))
            sitk.WriteImage(im, str(path))
        rows.append(f"case_{i:03d},images/{path.name},{CLASS_NAMES[k] if names else k}")
    (dest / "dataset.csv").write_text("\n".join(rows) + "\n")
    return dest / "dataset.csv"


def make_regression(
    dest: Path, n_cases: int = 24, *, shape: tuple[int, int, int] = (16, 24, 24), seed: int = 0
) -> Path:
    """``dest/images/case_XXX.nii.gz`` (spacing 1 x 1 x 1.5 mm) with one sphere each, and ``dest/dataset.csv`` whose
    ValueToPredict is the sphere's volume in mm³."""
    rng = np.random.default_rng(seed)
    (dest / "images").mkdir(parents=True, exist_ok=True)
    rows = ["SubjectID,Channel_0,ValueToPredict"]
    spacing = (1.0, 1.0, 1.5)  # x, y, z
    for i in range(n_cases):
        radius = rng.uniform(2.5, min(shape) / 3)
        centre = np.array(shape, dtype=float) / 2 + rng.uniform(-1.5, 1.5, size=3)
        mask = _blob(shape, centre, radius)
        img = rng.normal(20, 5, size=shape) + 100 * mask
        im = sitk.GetImageFromArray(img.astype(np.float32))
        im.SetSpacing(spacing)
        sitk.WriteImage(im, str(dest / "images" / f"case_{i:03d}.nii.gz"))
        volume = float(mask.sum()) * float(np.prod(spacing))
        rows.append(f"case_{i:03d},images/case_{i:03d}.nii.gz,{volume:.1f}")
    (dest / "dataset.csv").write_text("\n".join(rows) + "\n")
    return dest / "dataset.csv"
