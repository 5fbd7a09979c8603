"""Deterministic synthetic datasets (NIfTI + dataset.json) for tests, benchmarks and the demo.

Each case holds a large ellipsoid (label 1) with a small ellipsoid (label 2) beside it, on a textured background
that is zero outside a body-shaped region (so crop-to-non-zero has work to do). Channel intensities differ per
label, with noise; ``ct_like`` gives Hounsfield-like integers (air -1000).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import SimpleITK as sitk


def _ellipsoid(shape: tuple[int, int, int], center: np.ndarray, radii: np.ndarray) -> np.ndarray:
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    d = (
        ((zz - center[0]) / radii[0]) ** 2
        + ((yy - center[1]) / radii[1]) ** 2
        + ((xx - center[2]) / radii[2]) ** 2
    )
    out: np.ndarray = d <= 1.0
    return out


def synth_case(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    spacing_zyx: tuple[float, float, float],
    n_channels: int,
    ct_like: bool = False,
    body_fraction: float = 0.8,
) -> tuple[list[np.ndarray], np.ndarray]:
    """One case: channel arrays ``(z, y, x)`` and a label map with values 0, 1, 2."""
    sh = np.array(shape, dtype=np.float64)
    sp = np.array(spacing_zyx, dtype=np.float64)
    extent = sh * sp
    body = _ellipsoid(shape, sh / 2, np.maximum(sh * body_fraction / 2, 1))
    label = np.zeros(shape, dtype=np.uint8)
    r_big = np.maximum(extent * rng.uniform(0.16, 0.22, 3) / sp, 1.0)
    c_big = sh / 2 + rng.uniform(-0.08, 0.08, 3) * sh
    label[_ellipsoid(shape, c_big, r_big) & body] = 1
    r_small = np.maximum(r_big * rng.uniform(0.35, 0.5), 1.0)
    offset = np.array([0.0, 1.0, 0.0]) * (r_big + r_small * 0.9)
    label[_ellipsoid(shape, c_big + offset, r_small) & body] = 2
    chans = []
    for c in range(n_channels):
        if ct_like:
            means = {0: 40.0, 1: 120.0 + 30 * c, 2: -60.0}
            img = np.full(shape, -1000.0)
            noise = 15.0
        else:
            means = {0: 100.0 + 20 * c, 1: 300.0 - 60 * c, 2: 180.0 + 90 * c}
            img = np.zeros(shape)
            noise = 25.0
        for k, m in means.items():
            region = (label == k) & body
            img[region] = m
        img = img + body * rng.normal(0, noise, shape)
        if ct_like:
            chans.append(np.round(img).astype(np.int16))
        else:
            chans.append(np.clip(img, 0, None).astype(np.float32))
    return chans, label


def _write(
    arr: np.ndarray,
    path: Path,
    spacing_zyx: tuple[float, float, float],
    direction: tuple[float, ...],
    origin: tuple[float, float, float],
) -> None:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(tuple(float(s) for s in reversed(spacing_zyx)))
    img.SetDirection(direction)
    img.SetOrigin(origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), useCompression=True)


def make_dataset(
    root: str | Path,
    *,
    n_cases: int = 6,
    shape: tuple[int, int, int] = (24, 32, 28),
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    n_channels: int = 1,
    layout: Literal["msd", "nnunetv2"] = "msd",
    modality: str = "MRI",
    ct_like: bool = False,
    seed: int = 0,
    direction: tuple[float, ...] = (1, 0, 0, 0, 1, 0, 0, 0, 1),
    shape_jitter: int = 2,
    name: str = "Synthetic",
    spacings: list[tuple[float, float, float]] | None = None,
) -> Path:
    """Write a synthetic segmentation dataset and return its folder. ``shape`` and ``spacing`` are ``(z, y, x)``;
    ``spacings`` gives each case its own spacing (cycled)."""
    rootp = Path(root)
    rng = np.random.default_rng(seed)
    training = []
    for i in range(n_cases):
        jit = rng.integers(-shape_jitter, shape_jitter + 1, 3) if shape_jitter else np.zeros(3, dtype=int)
        sh = tuple(int(max(4, s + j)) for s, j in zip(shape, jit, strict=True))
        case_spacing = spacings[i % len(spacings)] if spacings else spacing
        chans, label = synth_case(rng, (sh[0], sh[1], sh[2]), case_spacing, n_channels, ct_like)
        cid = f"case_{i:03d}"
        origin = (float(rng.uniform(-50, 50)), float(rng.uniform(-50, 50)), float(rng.uniform(-50, 50)))
        if layout == "msd":
            if n_channels == 1:
                _write(chans[0], rootp / "imagesTr" / f"{cid}.nii.gz", case_spacing, direction, origin)
            else:
                img = sitk.JoinSeries([_as_img(c, case_spacing, direction, origin) for c in chans])
                (rootp / "imagesTr").mkdir(parents=True, exist_ok=True)
                sitk.WriteImage(img, str(rootp / "imagesTr" / f"{cid}.nii.gz"), useCompression=True)
            _write(label, rootp / "labelsTr" / f"{cid}.nii.gz", case_spacing, direction, origin)
            training.append({"image": f"./imagesTr/{cid}.nii.gz", "label": f"./labelsTr/{cid}.nii.gz"})
        else:
            for c, ch in enumerate(chans):
                _write(ch, rootp / "imagesTr" / f"{cid}_{c:04d}.nii.gz", case_spacing, direction, origin)
            _write(label, rootp / "labelsTr" / f"{cid}.nii.gz", case_spacing, direction, origin)
    names = {str(c): (modality if n_channels == 1 else f"{modality}{c}") for c in range(n_channels)}
    meta: dict[str, object]
    if layout == "msd":
        meta = {
            "name": name,
            "tensorImageSize": "3D" if n_channels == 1 else "4D",
            "modality": names,
            "labels": {"0": "background", "1": "large", "2": "small"},
            "numTraining": n_cases,
            "training": training,
        }
    else:
        meta = {
            "name": name,
            "channel_names": names,
            "labels": {"background": 0, "large": 1, "small": 2},
            "numTraining": n_cases,
            "file_ending": ".nii.gz",
        }
    rootp.mkdir(parents=True, exist_ok=True)
    (rootp / "dataset.json").write_text(json.dumps(meta, indent=1))
    return rootp


def _as_img(
    arr: np.ndarray,
    spacing_zyx: tuple[float, float, float],
    direction: tuple[float, ...],
    origin: tuple[float, float, float],
) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(tuple(float(s) for s in reversed(spacing_zyx)))
    img.SetDirection(direction)
    img.SetOrigin(origin)
    return img


def make_demo_dataset(root: str | Path, seed: int = 7) -> Path:
    """The demo dataset: 20 cases, two channels, two labels, anisotropic spacing (3 mm slices, 1 mm in-plane)."""
    rootp = Path(root)
    if (rootp / "dataset.json").is_file():
        return rootp
    return make_dataset(
        rootp,
        n_cases=20,
        shape=(16, 48, 48),
        spacing=(3.0, 1.0, 1.0),
        n_channels=2,
        layout="nnunetv2",
        modality="MR",
        seed=seed,
        name="AutomedDemo",
    )
