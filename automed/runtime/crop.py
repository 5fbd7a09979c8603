"""Crop to the non-zero region of all channels (holes filled), as the fingerprint and preprocessing both need."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

BBox = list[list[int]]  # [[start, stop] per axis], array order


def nonzero_mask(channels: np.ndarray) -> np.ndarray:
    """Voxels where any channel is non-zero, with enclosed holes filled. ``channels`` is ``(C, z, y, x)``."""
    mask: np.ndarray = np.any(channels != 0, axis=0)
    if mask.all():
        return mask
    # face-connected background not reaching the border is a hole (the same result as scipy's binary_fill_holes)
    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    filled: np.ndarray = sitk.GetArrayFromImage(
        sitk.BinaryFillhole(img, fullyConnected=False, foregroundValue=1)
    )
    return filled.astype(bool)


def bbox_of(mask: np.ndarray) -> BBox:
    """Tight bounding box of ``mask``; the whole array when the mask is empty."""
    if not mask.any():
        return [[0, s] for s in mask.shape]
    box: BBox = []
    for ax in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != ax)
        idx = np.flatnonzero(mask.any(axis=other))
        box.append([int(idx[0]), int(idx[-1]) + 1])
    return box


def slicer(box: BBox) -> tuple[slice, ...]:
    return tuple(slice(a, b) for a, b in box)


def box_shape(box: BBox) -> list[int]:
    return [b - a for a, b in box]
