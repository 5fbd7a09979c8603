"""Deterministic synthetic datasets (NIfTI + dataset.json) for tests, benchmarks and the demo.

Each case holds a large ellipsoid (structure 1) with a small ellipsoid (structure 2) beside it, on a textured
background that is zero outside a body-shaped region (so crop-to-non-zero has work to do). Channel intensities differ
per structure, with noise; ``ct_like`` gives Hounsfield-like integers (air -1000).

Real label distributions (:class:`LabelLayout`): structures absent from chosen cases (image and label: nothing to
find), cases with no foreground at all, label values with gaps (structure 2 written as label 4), many labels (extra
small spheres as structures 3, 4, ...) and labels declared in ``dataset.json`` that no case holds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class LabelLayout:
    """How labels are distributed over the cases of a synthetic dataset.

    ``absent`` maps a structure (1 large, 2 small, 3... extras) to the case indices that lack it; ``empty_cases``
    have no foreground at all; ``values`` maps a structure to the label value written (default: the structure
    number, so ``{2: 4}`` gives the IDs ``0, 1, 4``); ``extra`` adds that many small spheres as structures 3, 4, ...;
    ``unused`` are label values declared in ``dataset.json`` that no case holds.
    """

    absent: Mapping[int, Sequence[int]] = field(default_factory=dict)
    empty_cases: Sequence[int] = ()
    values: Mapping[int, int] = field(default_factory=dict)
    extra: int = 0
    unused: Sequence[int] = ()

    def __post_init__(self) -> None:
        written = [self.value(k) for k in range(1, 3 + self.extra)] + [int(v) for v in self.unused]
        if len(set(written)) != len(written) or 0 in written:
            raise ValueError(f"label values must be distinct and non-zero, got {written}")

    def value(self, structure: int) -> int:
        return int(self.values.get(structure, structure))

    def present(self, case: int) -> set[int]:
        if case in self.empty_cases:
            return set()
        everything = set(range(1, 3 + self.extra))
        return {k for k in everything if case not in self.absent.get(k, ())}

    def names(self) -> dict[int, str]:
        out = {0: "background", self.value(1): "large", self.value(2): "small"}
        out.update({self.value(k): f"extra_{k}" for k in range(3, 3 + self.extra)})
        out.update({int(v): f"unused_{v}" for v in self.unused})
        return dict(sorted(out.items()))


def _structure_mean(k: int, c: int, ct_like: bool) -> float:
    """Intensity of structure ``k`` (0 = background) in channel ``c``."""
    if ct_like:
        fixed = {0: 40.0, 1: 120.0 + 30 * c, 2: -60.0}
        return fixed.get(k, 200.0 + 45.0 * (k - 2))
    fixed = {0: 100.0 + 20 * c, 1: 300.0 - 60 * c, 2: 180.0 + 90 * c}
    return fixed.get(k, 420.0 + 60.0 * (k - 2) + 10 * c)


def synth_case(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    spacing_zyx: tuple[float, float, float],
    n_channels: int,
    ct_like: bool = False,
    body_fraction: float = 0.8,
    present: set[int] | None = None,
    extra: int = 0,
) -> tuple[list[np.ndarray], np.ndarray]:
    """One case: channel arrays ``(z, y, x)`` and a map of structure numbers (0 background, 1 large, 2 small,
    3... extras). ``present`` (default: all) chooses the structures drawn; the random draws are the same whichever
    are drawn, so leaving one out changes nothing else."""
    present = set(range(1, 3 + extra)) if present is None else present
    sh = np.array(shape, dtype=np.float64)
    sp = np.array(spacing_zyx, dtype=np.float64)
    extent = sh * sp
    body = _ellipsoid(shape, sh / 2, np.maximum(sh * body_fraction / 2, 1))
    label = np.zeros(shape, dtype=np.uint8)
    r_big = np.maximum(extent * rng.uniform(0.16, 0.22, 3) / sp, 1.0)
    c_big = sh / 2 + rng.uniform(-0.08, 0.08, 3) * sh
    if 1 in present:
        label[_ellipsoid(shape, c_big, r_big) & body] = 1
    r_small = np.maximum(r_big * rng.uniform(0.35, 0.5), 1.0)
    offset = np.array([0.0, 1.0, 0.0]) * (r_big + r_small * 0.9)
    if 2 in present:
        label[_ellipsoid(shape, c_big + offset, r_small) & body] = 2
    for i, k in enumerate(range(3, 3 + extra)):  # small spheres on a ring around the centre
        angle = 2 * np.pi * (i + 0.5) / extra
        centre = sh / 2 + np.array([0.0, np.sin(angle), np.cos(angle)]) * sh * np.array([0, 0.3, 0.3])
        r = np.maximum(1.6 / sp * sp.min(), 1.0)
        if k in present:
            label[_ellipsoid(shape, centre, r) & body & (label == 0)] = k
    chans = []
    for c in range(n_channels):
        img = np.full(shape, -1000.0) if ct_like else np.zeros(shape)
        noise = 15.0 if ct_like else 25.0
        for k in (0, *sorted(int(v) for v in np.unique(label) if v)):
            img[(label == k) & body] = _structure_mean(k, c, ct_like)
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
    labels: LabelLayout | None = None,
) -> Path:
    """Write a synthetic segmentation dataset and return its folder. ``shape`` and ``spacing`` are ``(z, y, x)``;
    ``spacings`` gives each case its own spacing (cycled); ``labels`` chooses how labels are distributed (default:
    every case holds labels 1 and 2)."""
    rootp = Path(root)
    rng = np.random.default_rng(seed)
    layout_ = labels or LabelLayout()
    lut = np.zeros(3 + layout_.extra, dtype=np.uint16)
    for k in range(1, 3 + layout_.extra):
        lut[k] = layout_.value(k)
    big_values = int(lut.max()) > 255
    training = []
    for i in range(n_cases):
        jit = rng.integers(-shape_jitter, shape_jitter + 1, 3) if shape_jitter else np.zeros(3, dtype=int)
        sh = tuple(int(max(4, s + j)) for s, j in zip(shape, jit, strict=True))
        case_spacing = spacings[i % len(spacings)] if spacings else spacing
        chans, structures = synth_case(
            rng,
            (sh[0], sh[1], sh[2]),
            case_spacing,
            n_channels,
            ct_like,
            present=layout_.present(i),
            extra=layout_.extra,
        )
        label = lut[structures].astype(np.uint16 if big_values else np.uint8)
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
            "labels": {str(v): n for v, n in layout_.names().items()},
            "numTraining": n_cases,
            "training": training,
        }
    else:
        meta = {
            "name": name,
            "channel_names": names,
            "labels": {n: v for v, n in layout_.names().items()},
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
