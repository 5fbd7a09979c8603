"""Best-of-N wall time of one prediction, shared by every parity row of the exports."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def best_of(call: Callable[[], T], repeats: int) -> tuple[T, float]:
    """``call()``'s last result and its shortest wall time in seconds over ``repeats`` runs (at least one): the
    first run pays one-off costs (allocations, a runtime's lazy compilation) that a user's later cases do not."""
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = call()
        best = min(best, time.perf_counter() - t0)
    return out, best
