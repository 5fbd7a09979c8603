"""A PNG of one attention map: the slice with the strongest attention, the image in grey, the map in turbo."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def strongest_slice(values: np.ndarray) -> int:
    """The index on the first axis of ``values`` ``(z, y, x)`` whose slice holds the most attention (the middle
    slice when the map is empty)."""
    totals = values.reshape(values.shape[0], -1).sum(axis=1)
    return int(np.argmax(totals)) if float(totals.max()) > 0 else values.shape[0] // 2


def write_overlay(
    image: np.ndarray, values: np.ndarray, spacing_zyx: tuple[float, ...], title: str, path: Path
) -> int:
    """Draw ``values`` (in [0, 1]) over ``image`` (both ``(z, y, x)``, the input's grid) at the strongest slice and
    write a PNG to ``path``; return the slice shown."""
    from matplotlib.figure import Figure

    z = strongest_slice(values)
    img = np.asarray(image[z], dtype=np.float32)
    lo, hi = (float(v) for v in np.percentile(img, [1, 99]))
    aspect = float(spacing_zyx[1]) / float(spacing_zyx[2])
    fig = Figure(figsize=(5.5, 5.0))
    ax = fig.add_subplot()
    ax.imshow(
        img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, aspect=aspect, interpolation="nearest"
    )
    shown = ax.imshow(values[z], cmap="turbo", alpha=0.45, vmin=0.0, vmax=1.0, aspect=aspect)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="attention")
    ax.set_title(f"{title}\nslice {z} of {values.shape[0]}" if values.shape[0] > 1 else title, fontsize=9)
    ax.set_axis_off()
    fig.savefig(path, dpi=100, bbox_inches="tight", format="png")
    return z
