"""Sliding-window pieces shared by automed's torch predictor and the bundle's numpy one: Gaussian importance map,
window positions, mirror sets; and :func:`predict_windows`, the numpy sliding window over any ``forward``."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from functools import cache
from typing import Literal, get_args

import numpy as np


@cache
def gaussian_importance(patch: tuple[int, ...], sigma_scale: float = 1 / 8) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(p, dtype=np.float64) for p in patch], indexing="ij")
    g = np.ones(patch)
    for grid, p in zip(grids, patch, strict=True):
        c, s = (p - 1) / 2, max(p * sigma_scale, 1e-3)
        g *= np.exp(-((grid - c) ** 2) / (2 * s * s))
    g /= g.max()
    g = np.maximum(g, g[g > 0].min())
    out: np.ndarray = g.astype(np.float32)
    return out


def window_starts(size: int, patch: int, step: float) -> list[int]:
    if size <= patch:
        return [0]
    # a step under one voxel moves the window by one voxel: more windows would repeat the same places (and a step
    # such as 1e-9 asked for billions of them)
    n = min(math.ceil((size - patch) / (patch * step)) + 1, size - patch + 1)
    gap = (size - patch) / (n - 1)
    return [round(i * gap) for i in range(n)]


Mirrors = Literal["all", "even"]  # the mirror sets TTA can average (model.json, planner presets)
MIRRORS: tuple[str, ...] = get_args(Mirrors)


def mirror_axes_sets(n_spatial: int, tta: bool, mirrors: str = "all") -> list[tuple[int, ...]]:
    """The combinations of flipped spatial axes (of a ``(N, C, *spatial)`` batch) that ``tta`` averages: ``all``
    of them (nnU-Net's 8 in 3D, 4 in 2D), or the ``even`` half that flips an even number of axes (the identity and
    the 180-degree rotations: 4 in 3D, 2 in 2D). Held-out hippocampus, three trainings: the even half scored the
    same Dice as all eight (0.8504 vs 0.8503) in 0.47x the time (bench/RESULTS.md)."""
    if not tta:
        return [()]
    if mirrors not in MIRRORS:
        raise ValueError(f"mirrors must be one of {MIRRORS}, got {mirrors!r}")
    axes = range(2, 2 + n_spatial)
    every = [c for r in range(n_spatial + 1) for c in itertools.combinations(axes, r)]
    return every if mirrors == "all" else [c for c in every if len(c) % 2 == 0]


def padding(shape: Sequence[int], target: Sequence[int]) -> tuple[list[tuple[int, int]], list[slice]]:
    """Symmetric padding of ``shape`` up to ``target`` and the slices that undo it."""
    pads, crop = [], []
    for s, t in zip(shape, target, strict=True):
        total = max(t - s, 0)
        lo = total // 2
        pads.append((lo, total - lo))
        crop.append(slice(lo, lo + s))
    return pads, crop


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def predict_windows(
    forwards: Sequence[Callable[[np.ndarray], np.ndarray]],
    data: np.ndarray,
    patch: Sequence[int],
    n_classes: int,
    *,
    step: float = 0.5,
    tta: bool = True,
    mirrors: str = "all",
    batch: int = 2,
) -> np.ndarray:
    """Class probabilities ``(K, *spatial)`` of ``data`` ``(C, *spatial)``: Gaussian-weighted windows, mean softmax
    over the ``forwards`` (fold models returning logits) and mirrorings."""
    x = np.ascontiguousarray(data, dtype=np.float32)[None]
    target = [max(p, s) for p, s in zip(patch, x.shape[2:], strict=True)]
    pads, crop = padding(x.shape[2:], target)
    xp = np.pad(x, [(0, 0), (0, 0), *pads])
    size = xp.shape[2:]
    starts = [window_starts(s, p, step) for s, p in zip(size, patch, strict=True)]
    g = gaussian_importance(tuple(patch))
    acc = np.zeros((n_classes, *size), dtype=np.float32)
    norm = np.zeros(tuple(size), dtype=np.float32)
    flips = mirror_axes_sets(len(patch), tta, mirrors)
    corners = list(itertools.product(*starts))
    for i in range(0, len(corners), batch):
        chunk = corners[i : i + batch]
        sls = [tuple(slice(c, c + p) for c, p in zip(corner, patch, strict=True)) for corner in chunk]
        xb = np.concatenate([xp[(slice(None), slice(None), *sl)] for sl in sls])
        total = np.zeros((len(chunk), n_classes, *patch), dtype=np.float32)
        for fwd in forwards:
            for f in flips:
                xi = np.ascontiguousarray(np.flip(xb, f)) if f else xb
                p = _softmax(np.asarray(fwd(xi), dtype=np.float32))
                total += np.flip(p, f) if f else p
        total /= len(forwards) * len(flips)
        for k, sl in enumerate(sls):
            acc[(slice(None), *sl)] += total[k] * g
            norm[sl] += g
    probs = acc / norm
    out: np.ndarray = probs[(slice(None), *crop)]
    return out
