"""A PNG of one attention map: the axial slice with the strongest attention, as a viewer shows it (radiological
convention: anterior up, the patient's right on the left, whatever the image's direction), the image in grey, the
map in turbo."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def strongest_slice(values: np.ndarray) -> int:
    """The index on the first axis of ``values`` ``(z, y, x)`` whose slice holds the most attention (the middle
    slice when the map is empty)."""
    totals = values.reshape(values.shape[0], -1).sum(axis=1)
    return int(np.argmax(totals)) if float(totals.max()) > 0 else values.shape[0] // 2


def lps_order(direction: Sequence[float]) -> tuple[list[int], list[bool]] | None:
    """How a ``(z, y, x)`` array of a 3D image with ``direction`` becomes ``(S, P, L)`` (each index axis taken as
    the patient axis nearest to it, as ``SimpleITK.DICOMOrient(image, "LPS")``): the array axes to transpose to and
    whether each new axis is flipped; ``None`` for a 2D image or two index axes nearest the same patient axis."""
    if len(direction) != 9:
        return None
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)  # column i: index axis i (x, y, z) in LPS
    nearest = [int(np.argmax(np.abs(d[:, i]))) for i in range(3)]
    if sorted(nearest) != [0, 1, 2]:
        return None
    index_axis = [
        nearest.index(2 - j) for j in range(3)
    ]  # new array axis j holds patient axis 2 - j (S, P, L)
    return [2 - i for i in index_axis], [bool(d[nearest[i], i] < 0) for i in index_axis]


def as_viewed(a: np.ndarray, order: tuple[list[int], list[bool]] | None) -> np.ndarray:
    """``a`` ``(z, y, x)`` reordered by :func:`lps_order` (unchanged when ``order`` is None)."""
    if order is None:
        return a
    axes, flips = order
    out = a.transpose(axes)
    return np.flip(out, tuple(j for j in range(3) if flips[j])) if any(flips) else out


def write_overlay(
    image: np.ndarray,
    values: np.ndarray,
    spacing_zyx: tuple[float, ...],
    title: str,
    path: Path,
    direction: Sequence[float] = (),
) -> int:
    """Draw ``values`` (in [0, 1]) over ``image`` (both ``(z, y, x)``, the input's grid with ``direction``) at the
    axial slice with the strongest attention and write a PNG to ``path``; return that slice's index on the image's
    own axis (the one its title names)."""
    from matplotlib.figure import Figure

    order = lps_order(direction)
    image, values = as_viewed(image, order), as_viewed(values, order)
    axes, flips = order if order is not None else ([0, 1, 2], [False] * 3)
    spacing = [float(spacing_zyx[a]) for a in axes]
    z = strongest_slice(values)
    own = values.shape[0] - 1 - z if flips[0] else z  # the slice's index on the input's own axis
    img = np.asarray(image[z], dtype=np.float32)
    lo, hi = (float(v) for v in np.percentile(img, [1, 99]))
    aspect = spacing[1] / spacing[2]
    fig = Figure(figsize=(5.5, 5.0))
    ax = fig.add_subplot()
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
