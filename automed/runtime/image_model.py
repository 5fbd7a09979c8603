"""An image-level export (classification, regression) as one numpy model: image in, one table row out.

The image is preprocessed as in training (:func:`preprocess_image`), centre-cropped or padded to the network's input
shape (:func:`fit_centre`, the rule automed's torch predictor uses too), and every fold network predicts it under
every combination of flipped axes. Classification averages softmax probabilities; regression averages the
standardized outputs and maps them back to the target's units (``target.mean``/``target.std`` in
``preprocess.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .backends import Forward, forwards_for
from .pipeline import Spec, preprocess_image
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
        """The table row and :func:`scale_note`'s warning (the network saw only part of the image), as ``automed
        predict`` gives them."""
        x, own = prepared_input(channels, spacing_zyx, self.spec, self.shape)
        outs = []
        for forward in self.forwards:
            for axes in mirror_axes_sets(x.ndim - 2, self.tta, self.mirrors):
                xi = np.ascontiguousarray(np.flip(x, axes)) if axes else x
                outs.append(np.asarray(forward(xi), dtype=np.float64))
        return combine(outs, self.target), scale_note(own, self.shape)
