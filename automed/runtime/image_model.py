"""An image-level export (classification, regression) as one numpy model: image in, one table row out.

The image is preprocessed as in training (:func:`preprocess_image`), centre-cropped or padded to the network's input
shape (:func:`fit_centre`, the rule automed's torch predictor uses too), and every fold network predicts it under
every combination of flipped axes. Classification averages softmax probabilities; regression averages the
standardized outputs and maps them back to the target's units (``target.mean``/``target.std`` in
``preprocess.json``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .backends import Forward, forwards_for
from .pipeline import Spec, preprocess_image, target_spacing
from .sliding import mirror_axes_sets


def fit_centre(data: np.ndarray, size: list[int]) -> np.ndarray:
    """``data`` ``(C, *spatial)`` centre-cropped or zero-padded to ``size`` on its spatial axes (the lower corner
    at ``(s - n) // 2``, as in training)."""
    out = np.zeros((data.shape[0], *size), dtype=np.float32)
    src: list[slice] = [slice(None)]
    dst: list[slice] = [slice(None)]
    for s, n in zip(data.shape[1:], size, strict=True):
        lo = (s - n) // 2
        a, b = max(lo, 0), min(lo + n, s)
        src.append(slice(a, b))
        dst.append(slice(a - lo, b - lo))
    out[tuple(dst)] = data[tuple(src)]
    return out


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def network_input(channels: np.ndarray, spacing_zyx: list[float], spec: Spec, shape: list[int]) -> np.ndarray:
    """The preprocessed image at the network's input shape, as a float32 batch of one."""
    return prepared_input(channels, spacing_zyx, spec, shape)[0]


def prepared_input(
    channels: np.ndarray, spacing_zyx: list[float], spec: Spec, shape: list[int]
) -> tuple[np.ndarray, tuple[int, ...]]:
    """:func:`network_input` and the preprocessed image's own spatial shape (before the centre crop or padding)."""
    data, _, _ = preprocess_image(channels, spacing_zyx, spec)
    # a 2D configuration's image is one slice
    x = fit_centre(data, [1, *shape])[:, 0] if len(shape) == 2 else fit_centre(data, shape)
    own = tuple(int(n) for n in data.shape[-len(shape) :])
    return np.ascontiguousarray(x[None], dtype=np.float32), own


def prepared_noted(
    channels: np.ndarray, spacing_zyx: list[float], spec: Spec, shape: list[int]
) -> tuple[np.ndarray, str | None]:
    """:func:`network_input` and the warnings of :func:`scale_note` (the network sees part of the image) and
    :func:`small_note` (the image fills less than half of the network's input), joined, or ``None``; what
    ``automed predict`` and the exported bundle warn about."""
    x, own = prepared_input(channels, spacing_zyx, spec, shape)
    return x, size_notes(own, channels.shape[1:], spacing_zyx, spec, shape)


def size_notes(
    own: tuple[int, ...], shape_zyx: Sequence[int], spacing_zyx: Sequence[float], spec: Spec, shape: list[int]
) -> str | None:
    """The warnings of :func:`scale_note` (``own``: the preprocessed image's shape on the network's axes) and of
    :func:`input_small_note` (the image as read, ``shape_zyx`` pixels at ``spacing_zyx`` mm), joined, or ``None``."""
    notes = [t for t in (scale_note(own, shape), input_small_note(shape_zyx, spacing_zyx, spec, shape)) if t]
    return ". Also: ".join(notes) or None


def scale_note(own: tuple[int, ...], shape: list[int]) -> str | None:
    """A warning when the network sees less than half of the preprocessed image along an axis (an image at another
    resolution than the training images: it is centre-cropped), else ``None``."""
    if all(n <= 2 * s for n, s in zip(own, shape, strict=True)):
        return None
    seen = " x ".join(f"{min(1.0, s / n):.0%}" for n, s in zip(own, shape, strict=True))
    return (
        f"at the model's spacing the image is {' x '.join(map(str, own))}, the network takes "
        f"{' x '.join(map(str, shape))}: it sees the central {seen} of it (larger images are centre-cropped, as in "
        "training). If the image has another resolution than the training images, resample it to theirs first"
    )


def _times(values: Sequence[float], fmt: str = "") -> str:
    return " x ".join(format(v, fmt) for v in values)


def small_note(
    pixels: Sequence[int],
    spacing: Sequence[float],
    model_spacing: Sequence[float],
    shape: Sequence[int],
    *,
    every_axis: bool = False,
) -> str | None:
    """A warning when the whole image (``pixels`` at ``spacing`` mm, the network's axes) covers less than half of
    the network's input ``shape`` along an axis (``every_axis``: along every axis) at the model's spacing (it is
    zero-padded around a few pixels: usually a pixel spacing other than the training images'), else ``None``. A
    segmentation model asks for every axis: its patch is the training images' median shape, and a case with a
    few slices (partial coverage) is short along one axis at the right spacing."""
    at = [p * s / m for p, s, m in zip(pixels, spacing, model_spacing, strict=True)]
    short = [2 * a < n for a, n in zip(at, shape, strict=True)]
    if not (all(short) if every_axis else any(short)):
        return None
    mm = [p * s for p, s in zip(pixels, spacing, strict=True)]
    return (
        f"the image is {_times(pixels)} pixels at {_times(spacing, '.3g')} mm ({_times(mm, '.3g')} mm); at the "
        f"model's spacing ({_times(model_spacing, '.3g')} mm) that is about {_times(at, '.3g')} pixels, the network "
        f"takes {_times(shape)}: the image covers less than half of its input along "
        f"{'every axis' if every_axis else 'an axis'} (the rest is zero "
        "padding). Likely cause: a pixel spacing other than the training images' (check the spacing the file "
        "stores, e.g. a DICOM's Pixel Spacing or Imager Pixel Spacing), or a picture at a lower resolution than "
        "theirs; resample it to the training images' spacing first"
    )


def input_small_note(
    shape_zyx: Sequence[int],
    spacing_zyx: Sequence[float],
    spec: Spec,
    patch: Sequence[int],
    *,
    every_axis: bool = False,
) -> str | None:
    """:func:`small_note` of an image as read (``(z, y, x)`` pixels at ``spacing_zyx`` mm) for a network of input
    ``patch`` (a segmentation model's patch, with ``every_axis``: its sliding window pads an image smaller than it),
    in the network's axes (the plan's transpose; a 2D configuration's in-plane axes)."""
    t = spec.transpose_forward
    pixels = [int(shape_zyx[a]) for a in t]
    spacing = [float(spacing_zyx[a]) for a in t]
    n = len(patch)
    model = target_spacing(spec, spacing)[-n:]
    return small_note(pixels[-n:], spacing[-n:], model, list(patch), every_axis=every_axis)


def combine(outputs: list[np.ndarray], target: dict[str, Any]) -> dict[str, Any]:
    """Fold x flip outputs (each ``(1, K)``) -> the table row: ``prediction`` and ``probability_<class>``."""
    if target["kind"] == "regression":
        value = float(np.mean([o[0, 0] for o in outputs])) * float(target["std"]) + float(target["mean"])
        return {"prediction": value}
    mean = np.mean([softmax(np.asarray(o, dtype=np.float64))[0] for o in outputs], axis=0)
    names = list(target["class_names"])
    return {
        "prediction": names[int(np.argmax(mean))],
        **{f"probability_{n}": float(p) for n, p in zip(names, mean, strict=True)},
    }


class ImageBundleModel:
    """The fold networks of an image-level export for one runtime; ``predict`` gives the case's table row."""

    def __init__(
        self,
        root: Path,
        meta: dict[str, Any],
        runtime: str,
        *,
        threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        self.forwards: list[Forward] = forwards_for(root, meta, runtime, threads, device)
        self.spec = Spec.from_json(meta["spec"])
        self.shape = list(meta["inference"]["patch"])
        self.tta = bool(meta["inference"]["tta"])
        self.mirrors = str(meta["inference"].get("mirrors", "all"))
        self.target = dict(meta["target"])
        self.n_channels = self.spec.n_channels

    def predict(self, channels: np.ndarray, spacing_zyx: list[float]) -> dict[str, Any]:
        return self.predict_noted(channels, spacing_zyx)[0]

    def predict_noted(
        self, channels: np.ndarray, spacing_zyx: list[float]
    ) -> tuple[dict[str, Any], str | None]:
        """The table row and :func:`prepared_noted`'s warning (the network saw only part of the image, or the image
        fills less than half of its input), as ``automed predict`` gives them."""
        x, note = prepared_noted(channels, spacing_zyx, self.spec, self.shape)
        outs = []
        for forward in self.forwards:
            for axes in mirror_axes_sets(x.ndim - 2, self.tta, self.mirrors):
                xi = np.ascontiguousarray(np.flip(x, axes)) if axes else x
                outs.append(np.asarray(forward(xi), dtype=np.float64))
        return combine(outs, self.target), note
