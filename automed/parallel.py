"""Bounded parallel map over worker processes with a progress bar.

At most ``2 * workers`` items are in flight, so memory is bounded by a few cases whatever the dataset size. Results
come back in input order. ``workers <= 1`` runs inline (no process start-up; used by tests and tiny datasets).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

T = TypeVar("T")
R = TypeVar("R")

_PRELOAD = ["numpy", "SimpleITK", "scipy.ndimage", "automed.data.io"]


def default_workers() -> int:
    """Worker count from ``AUTOMED_WORKERS`` or the CPU count (at most 8)."""
    env = os.environ.get("AUTOMED_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, min(8, os.cpu_count() or 1))


def progress_bar(disable: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=disable,
        transient=False,
    )


def parallel_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int,
    description: str,
    total: int | None = None,
    show_progress: bool = True,
) -> Iterator[R]:
    """Yield ``fn(item)`` for each item, in order, computed by ``workers`` processes."""
    seq = list(items)
    n = total if total is not None else len(seq)
    with progress_bar(disable=not show_progress) as bar:
        task = bar.add_task(description, total=n)
        if workers <= 1 or len(seq) <= 1:
            for it in seq:
                yield fn(it)
                bar.advance(task)
            return
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            pending: list[Future[R]] = []
            queue = iter(seq)
            for item in queue:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * workers:
                    break
            while pending:
                fut = pending.pop(0)
                res = fut.result()
                for nxt in queue:
                    pending.append(pool.submit(fn, nxt))
                    break
                bar.advance(task)
                yield res
