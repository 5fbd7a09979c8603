"""One case at a network's input and an attention map's way back to the input image's grid.

The image goes through the plan's preprocessing (transpose, crop to non-zero, normalize, resample: the runtime's
:func:`~automed.runtime.pipeline.preprocess_image`), then is centre-cropped or zero-padded to the network's input
(:func:`~automed.runtime.image_model.fit_centre`): an image-level network's input shape (as its predictor does), or
for a U-Net the whole preprocessed image padded to at least the patch and to a multiple of the network's divisor (one
forward pass over the whole image, so one map and one normalization per case). A map at the network's input goes
back the same way: the crop or padding undone (voxels the network never saw get 0), resampled to the cropped shape
(linear, the thick axis separately, as probabilities are), pasted into the uncropped volume and transposed back.
There it is rescaled to [0, 1] again over the input's own extent (a 2D configuration's slice by slice): dropping the
padding and resampling lower the peak the network's input held (a 7x5 picture's map was 0.03-0.64).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from automed.runtime.image_model import fit_centre
from automed.runtime.pipeline import Spec, preprocess_image
from automed.runtime.resample import resample_data


@dataclass(frozen=True)
class NetworkInput:
    """``data``: the case at the network's input, ``(C, z, y, x)`` (a 2D network sees ``data[:, z]``); ``shape``:
    the preprocessed image's shape ``(z, y, x)`` before the centre crop or padding; ``props``: the preprocessing
    properties (crop box, shapes, resampling axis)."""

    data: np.ndarray
    shape: list[int]
    props: dict[str, Any]


def image_level_input(
    channels: np.ndarray, spacing_zyx: tuple[float, ...], spec: Spec, patch: list[int]
) -> NetworkInput:
    """An image-level network's input: a 2D network gets the middle slice at ``patch`` (as
    :func:`~automed.runtime.image_model.network_input`), a 3D one the volume at ``patch``."""
    data, props, _ = preprocess_image(channels.astype(np.float32, copy=False), list(spacing_zyx), spec)
    size = [1, *patch] if len(patch) == 2 else list(patch)
    return NetworkInput(fit_centre(data, size), list(data.shape[1:]), props)


def segmentation_input(
    channels: np.ndarray,
    spacing_zyx: tuple[float, ...],
    spec: Spec,
    patch: list[int],
    divisor: list[int],
    extra: Callable[[np.ndarray, dict[str, Any]], np.ndarray] | None = None,
) -> NetworkInput:
    """A U-Net's input: the whole preprocessed image, each in-network axis padded to at least the patch and to a
    multiple of ``divisor`` (a 2D configuration keeps its slices). ``extra(data, props)``: the preprocessed image
    with the channels a cascade stage adds (its first stage's one-hot prediction)."""
    data, props, _ = preprocess_image(channels.astype(np.float32, copy=False), list(spacing_zyx), spec)
    if extra is not None:
        data = extra(data, props)
    spatial = list(data.shape[1:])
    net_axes = spatial[-len(patch) :]
    size = [max(p, -(-s // d) * d) for s, p, d in zip(net_axes, patch, divisor, strict=True)]
    if len(patch) == 2:
        size = [spatial[0], *size]
    return NetworkInput(fit_centre(data, size), spatial, props)


def normalized(a: np.ndarray) -> np.ndarray:
    """``a`` rescaled to [0, 1] as float32 (non-finite values as 0; a constant map, to float32 rounding after
    resampling, becomes zeros rather than its rounding noise stretched to [0, 1])."""
    a = np.nan_to_num(np.asarray(a, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(a.min()), float(a.max())
    flat = hi - lo <= 1e-6 * max(abs(hi), abs(lo))
    out: np.ndarray = np.zeros_like(a) if flat else np.clip((a - lo) / (hi - lo), 0.0, 1.0)
    return out


def undo_fit(values: np.ndarray, shape: list[int]) -> np.ndarray:
    """The inverse of :func:`~automed.runtime.image_model.fit_centre` for one map: ``values`` at the network's
    input back to ``shape`` (what the crop cut off gets 0; the padding is dropped)."""
    out = np.zeros(shape, dtype=np.float32)
    src: list[slice] = []
    dst: list[slice] = []
    for s, n in zip(shape, values.shape, strict=True):
        lo = (s - n) // 2
        a, b = max(lo, 0), min(lo + n, s)
        dst.append(slice(a, b))
        src.append(slice(a - lo, b - lo))
    out[tuple(dst)] = values[tuple(src)]
    return out


def to_input_grid(values: np.ndarray, props: dict[str, Any], spec: Spec) -> np.ndarray:
    """A map ``(z, y, x)`` at the preprocessed image's grid -> the input image's grid ``(z, y, x)``, rescaled to
    [0, 1] over that grid (a 2D configuration's, which normalized each slice, slice by slice: its first axis is
    not resampled); a constant map becomes zeros."""
    axis = props["separate_axis"]
    v = resample_data(
        values[None].astype(np.float32),
        list(props["shape_after_crop"]),
        1,
        axis if isinstance(axis, int) else None,
        spec.z_order,
    )[0]
    full = np.zeros(list(props["shape_before_crop"]), dtype=np.float32)
    full[tuple(slice(a, b) for a, b in props["crop_box"])] = v
    full = np.stack([normalized(s) for s in full]) if spec.dimension == 2 else normalized(full)
    return np.ascontiguousarray(full.transpose(*spec.transpose_backward), dtype=np.float32)


def back_to_input(values: np.ndarray, inp: NetworkInput, spec: Spec) -> np.ndarray:
    """A map at the network's input ``(z, y, x)`` (``inp.data``'s spatial shape) -> the input image's grid."""
    return to_input_grid(undo_fit(values, inp.shape), inp.props, spec)
