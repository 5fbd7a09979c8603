"""A prediction on its reference's voxel grid: the same voxels stored in another axis order or direction (RAS vs LPS,
a transposed array with its affine adjusted) are re-indexed exactly; a prediction elsewhere in space is refused.

Comparing arrays without this would score a flipped-but-correct mask as Dice 0, and a mask under a mirrored affine
as Dice 1."""

from __future__ import annotations

import numpy as np

from automed.data.io import Geometry
from automed.errors import DatasetError

_VOXEL_TOL = (
    0.1  # in voxels: how far a prediction's voxel centre may lie from the reference's (header rounding)
)
_FIX = "predict in the reference's geometry, or resample the prediction onto the reference"


def _matrix(geo: Geometry) -> np.ndarray:
    n = geo.dimension
    return np.asarray(geo.direction, np.float64).reshape(n, n) @ np.diag(np.asarray(geo.spacing, np.float64))


def _plain_picture(geo: Geometry) -> bool:
    """A picture with no geometry of its own: unit pixels at the origin, axes as stored (a PNG)."""
    return (
        np.allclose(geo.spacing, 1.0)
        and np.allclose(geo.origin, 0.0)
        and np.allclose(geo.direction, np.eye(geo.dimension).ravel())
    )


def _in_plane(flat: Geometry, deep: Geometry) -> bool:
    """Whether a 2D image has the in-plane geometry of a one-slice volume (spacing, origin, axes), within header
    rounding."""
    axes = np.asarray(deep.direction, np.float64).reshape(3, 3)[:2, :2]
    near = _VOXEL_TOL * min(deep.spacing[:2])
    return (
        np.allclose(flat.spacing, deep.spacing[:2], rtol=1e-4)
        and bool(np.abs(np.asarray(flat.origin) - np.asarray(deep.origin[:2])).max() < near)
        and np.allclose(np.asarray(flat.direction).reshape(2, 2), axes, atol=1e-4)
    )


def on_reference_grid(pred: np.ndarray, pred_geo: Geometry, ref_geo: Geometry, where: str) -> np.ndarray:
    """``pred`` (a ``(z, y, x)`` array of ``pred_geo``) as an array of ``ref_geo``'s grid, or a clear error."""
    n = ref_geo.dimension
    # a picture and a one-slice volume of the same pixels (as verify accepts them for training), where the picture
    # has no geometry of its own (a PNG) or the volume's in its plane (a 2D .mha rotated, 2 mm where the reference is
    # 0.5 mm, had scored Dice 1 unchecked)
    if pred_geo.dimension != n and pred.shape == ref_geo.shape_zyx:
        flat, deep = (pred_geo, ref_geo) if pred_geo.dimension == 2 else (ref_geo, pred_geo)
        if _plain_picture(flat) or _in_plane(flat, deep):
            return pred
        raise DatasetError.single(
            where,
            "a picture matched with a one-slice volume has no geometry of its own or the volume's in its plane",
            f"spacing {tuple(round(s, 4) for s in flat.spacing)} vs {tuple(round(s, 4) for s in deep.spacing)}, "
            f"origin {tuple(round(o, 3) for o in flat.origin)} vs {tuple(round(o, 3) for o in deep.origin)}, "
            f"direction {tuple(round(d, 3) for d in flat.direction)} vs {tuple(round(d, 3) for d in deep.direction)}",
            _FIX,
        )
    if pred_geo.dimension != n:
        raise DatasetError.single(
            where, "a prediction has its reference's dimension", f"{pred_geo.dimension}D vs {n}D", _FIX
        )
    # index of the prediction = a @ index of the reference + b (x, y, z order)
    inv = np.linalg.inv(_matrix(pred_geo))
    a = inv @ _matrix(ref_geo)
    b = inv @ (np.asarray(ref_geo.origin, np.float64) - np.asarray(pred_geo.origin, np.float64))
    perm = np.abs(a).argmax(axis=0)  # the prediction's axis holding each reference axis
    sign = np.sign(a[perm, np.arange(n)])
    expect = np.zeros((n, n))
    expect[perm, np.arange(n)] = sign
    size = np.asarray(pred_geo.size)
    ref_size = np.asarray(ref_geo.size)
    start = np.where(sign[np.argsort(perm)] > 0, 0, size - 1)  # where index 0 of each reference axis lands
    # how far the far corner of the reference lands from its voxel (a spacing 8 % off had passed a per-step test,
    # its far voxels 4 voxels away)
    drift = np.abs(a - expect) @ np.maximum(ref_size - 1, 1)
    aligned = (
        sorted(perm.tolist()) == list(range(n))
        and drift.max() < _VOXEL_TOL
        and np.abs(b - start).max() < _VOXEL_TOL
        and np.array_equal(size[perm], ref_size)
    )
    if not aligned:
        raise DatasetError.single(
            where,
            "a prediction lies on its reference's voxel grid (same voxels, any axis order or direction)",
            f"size {tuple(pred_geo.size)} vs {tuple(ref_geo.size)}, spacing "
            f"{tuple(round(s, 4) for s in pred_geo.spacing)} vs {tuple(round(s, 4) for s in ref_geo.spacing)}, "
            f"origin {tuple(round(o, 3) for o in pred_geo.origin)} vs {tuple(round(o, 3) for o in ref_geo.origin)}, "
            f"direction {tuple(round(d, 3) for d in pred_geo.direction)} vs "
            f"{tuple(round(d, 3) for d in ref_geo.direction)}",
            _FIX,
        )
    if np.array_equal(perm, np.arange(n)) and (sign > 0).all():
        return pred
    xyz = (pred[0] if n == 2 else pred).T  # array axes in x, y, z order
    out = np.transpose(xyz, perm)
    out = out[tuple(slice(None, None, -1) if s < 0 else slice(None) for s in sign)]
    zyx = np.ascontiguousarray(out.T)
    return zyx[None] if n == 2 else zyx
