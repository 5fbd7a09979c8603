"""A PNG of one attention map: the axial slice with the strongest attention, as a viewer shows it (radiological
convention: anterior up, the patient's right on the left, whatever the image's direction), the image in grey (an RGB
picture in its colours), the map in turbo."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from automed.evaluate.viewing import as_viewed, lps_order, shown_image


def strongest_slice(values: np.ndarray) -> int:
    """The index on the first axis of ``values`` ``(z, y, x)`` whose slice holds the most attention (the middle
    slice when the map is empty)."""
    totals = values.reshape(values.shape[0], -1).sum(axis=1)
    return int(np.argmax(totals)) if float(totals.max()) > 0 else values.shape[0] // 2


def overlay_image(channels: np.ndarray) -> np.ndarray:
    """What the overlay draws of a case's ``(C, z, y, x)`` channels (:func:`automed.evaluate.viewing.shown_image`):
    a picture of three channels (RGB) whole, in colour; anything else its first channel, in grey."""
    return shown_image(channels)


def write_overlay(
    image: np.ndarray,
    values: np.ndarray,
    spacing_zyx: tuple[float, ...],
    title: str,
    path: Path,
    direction: Sequence[float] = (),
) -> int:
    """Draw ``values`` (in [0, 1]) over ``image`` (both ``(z, y, x)``, the input's grid with ``direction``; or an
    RGB picture ``(3, 1, y, x)``, :func:`overlay_image`) at the axial slice with the strongest attention and write a
    PNG to ``path``; return that slice's index on the image's own axis (the one its title names)."""
    from matplotlib.figure import Figure

    # a single slice (an X-ray stored coronal) is shown as stored: its axial view would be one row of voxels
    order = lps_order(direction) if min(values.shape) > 1 else None
    colour = image.ndim == 4
    image = np.stack([as_viewed(c, order) for c in image]) if colour else as_viewed(image, order)
    values = as_viewed(values, order)
    axes, flips = order if order is not None else ([0, 1, 2], [False] * 3)
    spacing = [float(spacing_zyx[a]) for a in axes]
    z = strongest_slice(values)
    own = values.shape[0] - 1 - z if flips[0] else z  # the slice's index on the input's own axis
    aspect = spacing[1] / spacing[2]
    fig = Figure(figsize=(5.5, 5.0))
    ax = fig.add_subplot()
    if colour:  # the picture's own colours, its darkest value black and its brightest full
        rgb = np.moveaxis(np.asarray(image[:, z], dtype=np.float32), 0, -1)
        lo, hi = float(rgb.min()), float(rgb.max())
        ax.imshow(
            np.clip((rgb - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0),
            aspect=aspect,
            interpolation="nearest",
        )
    else:
        img = np.asarray(image[z], dtype=np.float32)
        lo, hi = (float(v) for v in np.percentile(img, [1, 99]))
        ax.imshow(
            img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, aspect=aspect, interpolation="nearest"
        )
    shown = ax.imshow(values[z], cmap="turbo", alpha=0.45, vmin=0.0, vmax=1.0, aspect=aspect)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="attention")
    if values.shape[0] > 1:
        where = "zyx"[axes[0]]
        title = f"{title}\naxial, voxel {where} = {own} of {values.shape[0]} (R on the left, A up)"
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    fig.savefig(path, dpi=100, bbox_inches="tight", format="png")
    return own
