"""Postprocessing chosen on cross-validation, applied in the original geometry: a class bias (``{"kind":
"class_bias", "offsets": [one per class]}``: log-probability offsets added before the argmax, so that a model
that systematically over- or under-segments a label is corrected; it acts where probabilities become labels, see
:func:`decide`), then keeping only the largest connected component (face connectivity) of all foreground together
and/or of single labels (label maps)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk


def largest_component(mask: np.ndarray) -> np.ndarray:
    """``mask`` with only its largest face-connected component (an empty mask stays empty). Labelled within the
    mask's bounding box: a small structure of a large image costs passes over the image, not the labelling of it
    (components are numbered in the same scan order there, so equal sizes resolve alike)."""
    if not mask.any():
        return np.zeros(mask.shape, dtype=bool)
    box = tuple(
        slice(int(hit[0]), int(hit[-1]) + 1)
        for hit in (
            np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != d)))
            for d in range(mask.ndim)
        )
    )
    cc = sitk.ConnectedComponent(sitk.GetImageFromArray(mask[box].astype(np.uint8)), False)
    relabeled = sitk.RelabelComponent(cc, sortByObjectSize=True)
    out = np.zeros(mask.shape, dtype=bool)
    out[box] = sitk.GetArrayFromImage(relabeled) == 1
    return out


CLASS_BIAS = "class_bias"


def class_bias(steps: Sequence[dict[str, Any]]) -> list[float] | None:
    """The class-bias offsets among ``steps`` (``None``: no such step)."""
    found = [s for s in steps if s["kind"] == CLASS_BIAS]
    return [float(x) for x in found[-1]["offsets"]] if found else None


def decide(probs: np.ndarray, offsets: Sequence[float] | None = None) -> np.ndarray:
    """Class indices of ``(K, ...)`` probabilities: the argmax, after adding ``offsets`` to the log-probabilities
    (multiplying each class's probabilities by the exponential: the same order, no logarithm of the volume). Class
    by class: memory of two volumes, not a second copy of all probabilities (a large CT's are gigabytes)."""
    if not offsets or not any(offsets):
        out: np.ndarray = probs.argmax(0)
        return out
    if len(offsets) != probs.shape[0]:
        raise ValueError(f"class bias has {len(offsets)} offsets for {probs.shape[0]} classes")
    weights = np.exp(np.asarray(offsets, dtype=np.float64))
    best = probs[0] * np.float32(weights[0])
    out = np.zeros(probs.shape[1:], dtype=np.int64)
    for c in range(1, probs.shape[0]):
        x = probs[c] * np.float32(weights[c])
        higher = x > best  # ties keep the lower class, as argmax does
        out[higher] = c
        np.maximum(best, x, out=best)
    return out


def describe(step: dict[str, Any]) -> str:
    """One line for a person (model card, MLflow tags)."""
    if step["kind"] == CLASS_BIAS:
        offsets = ", ".join(f"{x:+.2f}" for x in step["offsets"])
        return f"class bias (log-probability offsets per class, background first): {offsets}"
    return f"largest connected component of labels {step['labels']}"


def apply(labels: np.ndarray, steps: Sequence[dict[str, Any]]) -> np.ndarray:
    """Apply the label-map steps ``{"kind": "largest_component", "labels": [values]}`` in order; voxels removed
    become 0. ``labels`` holding every foreground value means "all foreground as one mask". A class-bias step was
    applied where the labels were decided (:func:`decide`) and is skipped here."""
    out = labels.copy()
    for step in steps:
        if step["kind"] == CLASS_BIAS:
            continue
        if step["kind"] != "largest_component":
            raise ValueError(f"unknown postprocessing step {step['kind']!r}")
        values = [int(v) for v in step["labels"]]
        mask = np.isin(out, values)
        out[mask & ~largest_component(mask)] = 0
    return out
