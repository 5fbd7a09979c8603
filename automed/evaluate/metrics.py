"""Spacing-aware segmentation metrics for one label of one case.

Definitions (recorded with every logged metric, see ``METRIC_DEFINITIONS``):

- Dice = 2TP / (2TP + FP + FN); IoU = TP / (TP + FP + FN); sensitivity = TP / (TP + FN); precision = TP / (TP + FP).
- Surfaces are the border voxels of each mask (voxels with a 6-connected neighbour outside the mask); distances come
  from an exact Euclidean distance transform in millimetres (``spacing``).
- HD95 = max of the two directed 95th percentiles of border-to-border distances (as MONAI and Metrics Reloaded, not
  MedPy's pooled percentile).
- NSD at tolerance tau = fraction of both borders within tau mm of the other border (border voxels, not surfels).
- ASSD = mean of all border-to-border distances of both directions (symmetric average surface distance).
- Volumes in mm³ (voxel count x voxel volume); volume difference = prediction - reference.

Empty masks (explicit, documented, counted):

| reference | prediction | Dice, IoU | sensitivity | precision | HD95, ASSD | NSD |
|---|---|---|---|---|---|---|
| empty | empty | NaN (excluded from means) | NaN | NaN | NaN | NaN |
| empty | not empty | 0 | NaN | 0 | image diagonal (worst case) | 0 |
| not empty | empty | 0 | 0 | NaN | image diagonal (worst case) | 0 |

The worst-case HD95 keeps misses in the mean instead of silently dropping them (MONAI#9095) or making it infinite.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

METRIC_DEFINITIONS = {
    "dice": "2TP/(2TP+FP+FN); undefined (null, excluded from means, counted) when reference and prediction are both empty",
    "iou": "TP/(TP+FP+FN); undefined when both are empty",
    "sensitivity": "TP/(TP+FN); undefined when the reference is empty",
    "hd95": "max of directed 95th percentiles of border-voxel distances in mm; image diagonal when one mask is empty",
    "nsd": "fraction of border voxels of both masks within tau mm of the other border; 0 when one mask is empty",
    "precision": "TP/(TP+FP); undefined when the prediction is empty",
    "assd": "mean of border-voxel distances in mm, both directions pooled; image diagonal when one mask is empty",
    "volume_diff_mm3": "predicted minus reference volume in mm3",
}


@dataclass(frozen=True)
class LabelMetrics:
    dice: float
    iou: float
    sensitivity: float
    hd95: float
    nsd: float
    n_ref: int
    n_pred: int
    tp: int
    fp: int
    fn: int
    precision: float = math.nan
    assd: float = math.nan
    volume_ref_mm3: float = 0.0
    volume_pred_mm3: float = 0.0
    volume_diff_mm3: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def _border(mask: np.ndarray) -> np.ndarray:
    eroded = ndimage.binary_erosion(
        mask, structure=ndimage.generate_binary_structure(mask.ndim, 1), border_value=0
    )
    out: np.ndarray = mask & ~eroded
    return out


def _distances_to(border: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Distance (mm) of every voxel to the nearest voxel of ``border``."""
    dist: np.ndarray = ndimage.distance_transform_edt(~border, sampling=spacing)
    return dist


def _crop_pair(a: np.ndarray, b: np.ndarray, margin: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Crop both masks to the bounding box of their union (plus a margin) to keep distance transforms small."""
    union = a | b
    idx = [
        np.flatnonzero(union.any(axis=tuple(x for x in range(union.ndim) if x != ax)))
        for ax in range(union.ndim)
    ]
    sl = tuple(slice(max(0, int(i[0]) - margin), int(i[-1]) + 1 + margin) for i in idx)
    return a[sl], b[sl]


def label_metrics(
    ref: np.ndarray, pred: np.ndarray, spacing: tuple[float, ...], tau: float = 1.0
) -> LabelMetrics:
    """All metrics for binary masks ``ref`` and ``pred`` (same shape) with voxel ``spacing`` in mm."""
    if ref.shape != pred.shape:
        raise ValueError(f"reference shape {ref.shape} and prediction shape {pred.shape} must be equal")
    ref = ref.astype(bool, copy=False)
    pred = pred.astype(bool, copy=False)
    tp = int(np.count_nonzero(ref & pred))
    fp = int(np.count_nonzero(~ref & pred))
    fn = int(np.count_nonzero(ref & ~pred))
    n_ref, n_pred = tp + fn, tp + fp
    nan = float("nan")
    if n_ref == 0 and n_pred == 0:
        return LabelMetrics(nan, nan, nan, nan, nan, 0, 0, 0, 0, 0)
    dice = 2 * tp / (2 * tp + fp + fn)
    iou = tp / (tp + fp + fn)
    sens = tp / n_ref if n_ref else nan
    voxel = math.prod(spacing)
    counts = {
        "precision": tp / n_pred if n_pred else nan,
        "volume_ref_mm3": n_ref * voxel,
        "volume_pred_mm3": n_pred * voxel,
        "volume_diff_mm3": (n_pred - n_ref) * voxel,
    }
    if n_ref == 0 or n_pred == 0:
        diagonal = math.sqrt(sum((s * n) ** 2 for s, n in zip(spacing, ref.shape, strict=True)))
        return LabelMetrics(
            dice, iou, sens, diagonal, 0.0, n_ref, n_pred, tp, fp, fn, assd=diagonal, **counts
        )
    keep = [ax for ax, n in enumerate(ref.shape) if n > 1]  # a 2D image stored as (1, y, x) has 2D borders
    if len(keep) < ref.ndim:
        ref, pred = ref.squeeze(), pred.squeeze()
        spacing = tuple(spacing[ax] for ax in keep)
    r, p = _crop_pair(ref, pred)
    br, bp = _border(r), _border(p)
    d_to_ref = _distances_to(br, spacing)
    d_to_pred = _distances_to(bp, spacing)
    d_pr = d_to_ref[bp]  # prediction border -> reference border
    d_rp = d_to_pred[br]
    hd95 = float(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95)))
    nsd = float((np.count_nonzero(d_pr <= tau) + np.count_nonzero(d_rp <= tau)) / (d_pr.size + d_rp.size))
    assd = float((d_pr.sum() + d_rp.sum()) / (d_pr.size + d_rp.size))
    return LabelMetrics(dice, iou, sens, hd95, nsd, n_ref, n_pred, tp, fp, fn, assd=assd, **counts)


def case_metrics(
    ref: np.ndarray, pred: np.ndarray, labels: list[int], spacing: tuple[float, ...], tau: float = 1.0
) -> dict[int, LabelMetrics]:
    """Metrics for every foreground label value in ``labels`` of two label maps."""
    return {lab: label_metrics(ref == lab, pred == lab, spacing, tau) for lab in labels if lab != 0}
