"""Resampling of image and label arrays to a target spacing with SimpleITK.

Pixel centres are mapped so the physical extent is kept (like ``skimage.transform.resize``). When the spacing ratio
of the case or of the target exceeds the plan's threshold, the thick axis is resampled on its own with a low order
(nearest by default) and the other axes with the image order, so thick slices are not blurred into each other.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

_INTERP = {0: sitk.sitkNearestNeighbor, 1: sitk.sitkLinear, 3: sitk.sitkBSpline}


def new_shape(shape: tuple[int, ...], spacing: list[float], target: list[float]) -> list[int]:
    return [max(1, round(s * sp / t)) for s, sp, t in zip(shape, spacing, target, strict=True)]


def _resize(arr: np.ndarray, out_shape: list[int], order: int) -> np.ndarray:
    """Resize one ``(z, y, x)`` float array to ``out_shape`` with interpolation ``order``."""
    if list(arr.shape) == list(out_shape):
        return arr
    img = sitk.GetImageFromArray(arr.astype(np.float32, copy=False))
    in_sp = np.ones(3)
    out_sp = np.array(arr.shape, dtype=np.float64) / np.array(out_shape, dtype=np.float64)
    ref = sitk.Image([int(v) for v in reversed(out_shape)], sitk.sitkFloat32)
    ref.SetSpacing([float(v) for v in reversed(out_sp)])
    ref.SetOrigin([float(v) for v in reversed(0.5 * (out_sp - in_sp))])
    interp = _INTERP.get(order, sitk.sitkBSpline)
    out = sitk.Resample(img, ref, sitk.Transform(), interp, 0.0, sitk.sitkFloat32, True)
    res: np.ndarray = sitk.GetArrayFromImage(out)
    if order >= 2:
        # keep intensities inside the input range (B-splines overshoot near edges)
        np.clip(res, float(arr.min()), float(arr.max()), out=res)
    return res


def separate_axis(spacing: list[float], target: list[float], threshold: float) -> int | None:
    """The thick axis to resample on its own, or ``None``."""
    for sp in (spacing, target):
        if max(sp) / min(sp) > threshold:
            axis = int(np.argmax(sp))
            # two axes tying for the coarsest spacing: no separate axis (nnU-Net does the same)
            if sum(1 for s in sp if np.isclose(s, sp[axis])) > 1:
                return None
            return axis
    return None


def resample_array(
    arr: np.ndarray, out_shape: list[int], order: int, axis: int | None, z_order: int
) -> np.ndarray:
    """Resample one 3D array, optionally resizing ``axis`` separately with ``z_order``."""
    if list(arr.shape) == list(out_shape):
        return arr
    if axis is None:
        return _resize(arr, out_shape, order)
    inplane = list(out_shape)
    inplane[axis] = arr.shape[axis]
    step = _resize(arr, inplane, order)
    return _resize(step, out_shape, z_order)


def resample_data(
    data: np.ndarray, out_shape: list[int], order: int, axis: int | None, z_order: int
) -> np.ndarray:
    """Resample ``(C, z, y, x)`` image data."""
    if list(data.shape[1:]) == list(out_shape):
        return data
    return np.stack([resample_array(c, out_shape, order, axis, z_order) for c in data]).astype(np.float32)


def resample_seg(
    seg: np.ndarray, out_shape: list[int], n_classes: int, order: int, axis: int | None, z_order: int
) -> np.ndarray:
    """Resample a class-index map by interpolating each class' one-hot mask and taking the arg-max."""
    if list(seg.shape) == list(out_shape):
        return seg
    if order == 0:
        return resample_array(seg.astype(np.float32), out_shape, 0, None, 0).astype(seg.dtype)
    best = np.full(out_shape, -1.0, dtype=np.float32)
    out = np.zeros(out_shape, dtype=seg.dtype)
    for k in range(n_classes):
        m = seg == k
        if not m.any():
            continue
        r = resample_array(m.astype(np.float32), out_shape, order, axis, z_order)
        better = r > best
        out[better] = k
        best[better] = r[better]
    return out
