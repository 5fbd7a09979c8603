"""Max-slice thumbnails for ``automed report``: per case and structure, the slice where the reference (else the
prediction) shows most of that structure, with the reference (green) and prediction (red) contours over the image.
Which cases and structures get one (:func:`worst_scored`) and the figure; :mod:`automed.workflow.report` finds the
images, references and predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def worst_scored(table: pd.DataFrame, n: int) -> list[tuple[str, pd.DataFrame]]:
    """The ``n`` cases of lowest mean Dice, each with its rows (one per structure) to draw. A structure absent from
    both the reference and the prediction has no Dice (NaN): it is no failure and nothing to show, so its rows are
    left out, and a case with no Dice at all is never among the worst."""
    scored = table[table["dice"].notna()]
    order = scored.groupby("case")["dice"].mean().sort_values(kind="stable").index[:n]
    return [(str(case), scored[scored["case"] == case]) for case in order]


def max_slice(mask: np.ndarray) -> tuple[int, int]:
    """(axis, index) of the slice with most of ``mask`` along the thinnest axis of a (z, y, x) volume."""
    axis = int(np.argmin(mask.shape))
    area = mask.sum(axis=tuple(a for a in range(3) if a != axis))
    return axis, int(np.argmax(area)) if area.any() else mask.shape[axis] // 2


def thumbnail(
    image: np.ndarray, reference: np.ndarray, prediction: np.ndarray, value: int, title: str
) -> Figure:
    """A small figure of structure ``value`` on its max slice (arrays (z, y, x); image: the first channel)."""
    ref, pred = reference == value, prediction == value
    axis, k = max_slice(ref if ref.any() else pred)
    take = [slice(None)] * 3
    take[axis] = slice(k, k + 1)
    img, r, p = (np.squeeze(a[tuple(take)], axis=axis) for a in (image, ref, pred))
    fig = Figure(figsize=(1.8, 1.8))
    ax = fig.add_subplot()
    lo, hi = np.percentile(img, [1, 99]) if img.size else (0, 1)
    ax.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
    if r.any():
        ax.contour(r, levels=[0.5], colors="lime", linewidths=0.8)
    if p.any():
        ax.contour(p, levels=[0.5], colors="red", linewidths=0.8)
    ax.set_title(title, fontsize=6)
    ax.axis("off")
    fig.subplots_adjust(0.02, 0.02, 0.98, 0.88)
    return fig
