"""Spacing rules: the target spacing (median, or a percentile on a thick anisotropic axis), the median shape at a
spacing, and the transpose that puts the coarsest axis first."""

from __future__ import annotations

import numpy as np

from automed.fingerprint.schema import Fingerprint
from automed.plan.preset import Preset


def target_spacing(fp: Fingerprint, preset: Preset) -> tuple[list[float], str]:
    spacings = np.array(fp.spacings, dtype=np.float64)
    target = np.median(spacings, axis=0)
    sizes = np.median(np.array([c.shape_after_crop for c in fp.cases], dtype=np.float64), axis=0)
    if fp.dimension == 2:
        return [
            float(v) for v in target
        ], "median spacing of the cases (2D data: out-of-plane spacing unused)"
    worst = int(np.argmax(target))
    others = [a for a in range(3) if a != worst]
    thr = preset.spacing.anisotropy_threshold
    aniso_spacing = target[worst] > thr * max(target[a] for a in others)
    aniso_size = sizes[worst] * thr < min(sizes[a] for a in others)
    if aniso_spacing and aniso_size:
        pct = float(np.percentile(spacings[:, worst], preset.spacing.thick_axis_percentile))
        floor = max(target[a] for a in others)
        new = pct if pct >= floor else floor + 1e-5
        median_thick = float(target[worst])
        target[worst] = new
        return [float(v) for v in target], (
            f"median spacing, except thick axis {worst}: median spacing ratio {median_thick:.3g}/"
            f"{floor:.3g} > {thr:g} and it has under 1/{thr:g} of the voxels of the other axes, so its "
            f"{preset.spacing.thick_axis_percentile:g}th-percentile spacing {pct:.4g} is used "
            f"(kept >= the in-plane spacing) to avoid interpolating thick slices too much (nnU-Net rule)"
        )
    why = "median spacing of the cases (nnU-Net rule)"
    if aniso_spacing:
        why += f"; axis {worst} is thick but not short enough (< 1/{thr:g} of the voxels) for the percentile rule"
    return [float(v) for v in target], why


def median_shape(fp: Fingerprint, spacing: list[float]) -> list[int]:
    """Median over cases of the cropped shape resampled to ``spacing`` (original axis order)."""
    shapes = np.array([c.shape_after_crop for c in fp.cases], dtype=np.float64)
    sp = np.array(fp.spacings, dtype=np.float64)
    resampled = np.round(shapes * sp / np.array(spacing, dtype=np.float64))
    return [max(1, int(v)) for v in np.median(resampled, axis=0)]


def transpose_for(spacing: list[float]) -> tuple[list[int], list[int], str]:
    worst = int(np.argmax(spacing))
    fwd = [worst] + [a for a in range(len(spacing)) if a != worst]
    bwd = [fwd.index(a) for a in range(len(spacing))]
    if fwd == list(range(len(spacing))):
        return fwd, bwd, "the coarsest axis is already first; no transpose"
    return fwd, bwd, f"axis {worst} has the coarsest spacing and is moved first so 2D slices are in-plane"
