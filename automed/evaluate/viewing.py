"""How a viewer shows a volume: a ``(z, y, x)`` array of an image with any direction reordered to ``(S, P, L)``, so
its axial slices show anterior up and the patient's right on the left (radiological convention), its coronal and
sagittal slices (drawn with the origin low) the head up. Pictures only: the arrays written as images keep their grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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


def shown_image(channels: np.ndarray) -> np.ndarray:
    """What a picture of a case's ``(C, z, y, x)`` channels draws: a picture of three channels (RGB) whole, in
    colour; anything else its first channel, in grey."""
    if channels.shape[0] == 3 and channels.shape[1] == 1:
        return channels
    first: np.ndarray = channels[0]
    return first


def as_viewed(a: np.ndarray, order: tuple[list[int], list[bool]] | None) -> np.ndarray:
    """``a`` ``(z, y, x)`` reordered by :func:`lps_order` (unchanged when ``order`` is None)."""
    if order is None:
        return a
    axes, flips = order
    out = a.transpose(axes)
    return np.flip(out, tuple(j for j in range(3) if flips[j])) if any(flips) else out


def viewed_index(
    order: tuple[list[int], list[bool]] | None, shape: tuple[int, ...], axis: int, index: int
) -> str:
    """The voxel axis and index (``z=12``) of the image's own grid that slice ``index`` on viewed axis ``axis`` is."""
    if order is None:
        return f"{'zyx'[axis]}={index}"
    axes, flips = order
    own = axes[axis]
    return f"{'zyx'[own]}={shape[own] - 1 - index if flips[axis] else index}"
