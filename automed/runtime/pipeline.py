"""Image preprocessing (transpose -> crop to non-zero -> normalize -> resample) and the way back (probabilities at
the target spacing -> label map in the original image grid), driven by a JSON-able :class:`Spec`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from .crop import bbox_of, nonzero_mask, slicer
from .normalize import ChannelScheme, normalize
from .postprocess import decide
from .resample import new_shape, resample_data, separate_axis

NORM_KEYS = ("channel", "scheme", "use_nonzero_mask", "clip_low", "clip_high", "mean", "std")


@dataclass(frozen=True)
class Spec:
    """One configuration's pre/post-processing, as automed's plan gives it (``preprocess.json`` in a bundle)."""

    transpose_forward: list[int]
    transpose_backward: list[int]
    spacing: list[float]  # target spacing, network axis order
    dimension: int  # 2: resample in-plane only and predict slice by slice
    normalization: list[dict[str, Any]]
    image_order: int
    z_order: int
    separate_z_threshold: float
    label_values: list[int]
    n_channels: int
    extra: dict[str, Any] = field(default_factory=dict)

    def schemes(self) -> list[ChannelScheme]:
        return [SimpleNamespace(**{k: n.get(k) for k in NORM_KEYS}) for n in self.normalization]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Spec:
        return cls(**d)


def target_spacing(spec: Spec, case_spacing: list[float]) -> list[float]:
    """3D configurations resample all axes; 2D ones only in-plane (the first axis keeps its spacing)."""
    return [case_spacing[0], *spec.spacing] if spec.dimension == 2 else list(spec.spacing)


def preprocess_image(
    channels: np.ndarray, spacing_zyx: list[float] | tuple[float, ...], spec: Spec
) -> tuple[np.ndarray, dict[str, Any], np.ndarray]:
    """``(C, z, y, x)`` float image -> ``(data, properties, crop mask)``; ``data`` at the target spacing."""
    t = spec.transpose_forward
    data = np.ascontiguousarray(channels.astype(np.float32, copy=False).transpose(0, *[a + 1 for a in t]))
    spacing_t = [float(spacing_zyx[a]) for a in t]
    shape_before = list(data.shape[1:])
    mask = nonzero_mask(data)
    box = bbox_of(mask)
    sl = slicer(box)
    # a copy of its own: normalization works in place, and neither the transpose (identity, float32 input) nor the
    # crop (nothing to crop) need copy, so the caller's image (read once, then given to every fold, ensemble member,
    # cascade stage and parity run) would come back normalized
    data = np.array(data[(slice(None), *sl)], dtype=np.float32, order="C", copy=True)
    mask = mask[sl]
    data = normalize(data, spec.schemes(), mask)
    target = target_spacing(spec, spacing_t)
    shape_crop = list(data.shape[1:])
    out_shape = new_shape(tuple(shape_crop), spacing_t, target)
    axis = separate_axis(spacing_t, target, spec.separate_z_threshold) if spec.dimension == 3 else None
    data = resample_data(data, out_shape, spec.image_order, axis, spec.z_order)
    props = {
        "original_spacing": [float(s) for s in spacing_zyx],
        "transpose_forward": list(t),
        "shape_before_crop": shape_before,
        "crop_box": box,
        "shape_after_crop": shape_crop,
        "spacing_after_crop": spacing_t,
        "target_spacing": target,
        "shape_after_resampling": out_shape,
        "separate_axis": axis,
    }
    return data.astype(np.float32, copy=False), props, mask


def to_original(
    probs: np.ndarray,
    props: dict[str, Any],
    spec: Spec,
    probabilities: bool = False,
    class_bias: list[float] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Probabilities ``(K, ...)`` at the target spacing -> label values in the original grid ``(z, y, x)`` (and the
    probabilities there, background 1 outside the crop, when asked). ``class_bias``: log-probability offsets
    added before the argmax (a postprocessing step chosen on CV, :mod:`automed.runtime.postprocess`)."""
    axis = props["separate_axis"]
    p = resample_data(
        probs, list(props["shape_after_crop"]), 1, axis if isinstance(axis, int) else None, spec.z_order
    )
    box = props["crop_box"]
    full_shape = list(props["shape_before_crop"])
    sl = tuple(slice(a, b) for a, b in box)
    seg = np.zeros(full_shape, dtype=np.int16)
    seg[sl] = decide(p, class_bias).astype(np.int16)
    back = spec.transpose_backward
    values = np.array(spec.label_values, dtype=np.int16)
    labels = np.ascontiguousarray(values[seg].transpose(*back))
    out_probs = None
    if probabilities:
        full = np.zeros((p.shape[0], *full_shape), dtype=np.float32)
        full[0] = 1.0
        full[(slice(None), *sl)] = p
        out_probs = full.transpose(0, *[a + 1 for a in back])
    return labels, out_probs
