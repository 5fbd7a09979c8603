"""Postprocessing chosen on cross-validation: keep only the largest connected component (face connectivity) of all
foreground together and/or of single labels. Applied to label maps in the original geometry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk


def largest_component(mask: np.ndarray) -> np.ndarray:
    """``mask`` with only its largest face-connected component (an empty mask stays empty)."""
    if not mask.any():
        return mask
    cc = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), False)
    relabeled = sitk.RelabelComponent(cc, sortByObjectSize=True)
    out: np.ndarray = sitk.GetArrayFromImage(relabeled) == 1
    return out


def apply(labels: np.ndarray, steps: Sequence[dict[str, Any]]) -> np.ndarray:
    """Apply steps ``{"kind": "largest_component", "labels": [values]}`` in order; voxels removed become 0.
    ``labels`` holding every foreground value means "all foreground as one mask"."""
    out = labels.copy()
    for step in steps:
        if step["kind"] != "largest_component":
            raise ValueError(f"unknown postprocessing step {step['kind']!r}")
        values = [int(v) for v in step["labels"]]
        mask = np.isin(out, values)
        out[mask & ~largest_component(mask)] = 0
    return out
