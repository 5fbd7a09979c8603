"""Per-channel intensity normalization as planned (CT: global clip + z-score; others: per-image z-score)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class ChannelScheme(Protocol):
    """What normalization needs of a channel's plan (``automed.plan.schema.ChannelNormalization`` or the
    bundle's JSON read into a namespace)."""

    @property
    def channel(self) -> int: ...
    @property
    def scheme(self) -> str: ...
    @property
    def use_nonzero_mask(self) -> bool: ...
    @property
    def clip_low(self) -> float | None: ...
    @property
    def clip_high(self) -> float | None: ...
    @property
    def mean(self) -> float | None: ...
    @property
    def std(self) -> float | None: ...


def normalize(data: np.ndarray, plans: Sequence[ChannelScheme], mask: np.ndarray | None) -> np.ndarray:
    """Normalize ``data`` ``(C, ...)`` in place (float32) and return it. ``mask`` is the non-zero region."""
    for p in plans:
        x = data[p.channel]
        if p.scheme == "ct":
            assert (
                p.clip_low is not None
                and p.clip_high is not None
                and p.mean is not None
                and p.std is not None
            )
            np.clip(x, p.clip_low, p.clip_high, out=x)
            x -= p.mean
            x /= max(p.std, 1e-8)
        elif p.scheme == "none":
            continue
        elif p.scheme == "rescale_0_1":
            lo, hi = float(x.min()), float(x.max())
            x -= lo
            x /= max(hi - lo, 1e-8)
        elif p.scheme == "rgb_0_1":
            x /= 255.0
        elif p.use_nonzero_mask and mask is not None and mask.any():
            vals = x[mask]
            mean, std = float(vals.mean()), float(vals.std())
            x -= mean
            x /= max(std, 1e-8)
            x[~mask] = 0
        else:
            mean, std = float(x.mean()), float(x.std())
            x -= mean
            x /= max(std, 1e-8)
    return data
