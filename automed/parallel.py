"""Bounded parallel map over worker processes with a progress bar; the progress of a command's stages (:class:`Stages`).

At most ``2 * workers`` items are in flight, so memory is bounded by a few cases whatever the dataset size. Results
come back in input order. ``workers <= 1`` runs inline (no process start-up; used by tests and tiny datasets).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, wait
from typing import Any, TypeVar

from rich import get_console
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

T = TypeVar("T")
R = TypeVar("R")

_PRELOAD = ["numpy", "SimpleITK", "scipy.ndimage", "automed.data.io"]


def default_workers() -> int:
    """Worker count from ``AUTOMED_WORKERS`` or the CPU count (at most 8)."""
    env = os.environ.get("AUTOMED_WORKERS")
    if env:
        if not env.strip().isdigit():
            from automed.errors import ConfigError

            raise ConfigError.single(
                "AUTOMED_WORKERS", "a worker count is a whole number of at least 0", repr(env),
                "set it to e.g. 4 (0 or 1: no worker processes), or unset it for one per core",
            )  # fmt: skip
        return max(1, int(env))
    return max(1, min(8, os.cpu_count() or 1))


def progress_bar(disable: bool = False, console: Console | None = None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=disable,
        transient=False,
        console=console,
    )


class Steps:
    """The steps of one stage: calling it counts one done; :meth:`stop` ends the stage before its count, and the
    stage's last line (or its bar) says where and why instead of "done"."""

    def __init__(self, advance: Callable[[], None] | None = None) -> None:
        self._advance = advance
        self.stopped: str | None = None

    def __call__(self) -> None:
        if self._advance is not None:
            self._advance()

    def stop(self, reason: str) -> None:
        self.stopped = reason


class Stages:
    """A command's stages, each a count of steps (``automed select``: the candidates scored case by case, the class
    bias's reading of the cases and its offset search, the largest components, the inference timing): on a terminal
    a bar per stage (:func:`progress_bar`), elsewhere (a log file, CI) plain lines: the stage as it starts, its count
    at each tenth reached ``every_s`` seconds or more after the stage's last line (a fast stage shows its start and
    end only) and its end with the time it took (or where it stopped and why: :meth:`Steps.stop`); a stage not run
    says so (:meth:`skip`); ``show=False``: nothing."""

    def __init__(self, show: bool = True, console: Console | None = None, every_s: float = 5.0) -> None:
        self.show = show
        self.console = console
        self.every_s = every_s

    @contextlib.contextmanager
    def stage(self, description: str, total: int) -> Iterator[Steps]:
        """A stage of ``total`` steps; it yields the :class:`Steps` that count them."""
        console = self.console or get_console()
        if not self.show:
            yield Steps()
        elif console.is_terminal:
            with progress_bar(console=console) as bar:
                task = bar.add_task(description, total=total)
                steps = Steps(lambda: bar.advance(task))
                yield steps
                if steps.stopped is not None:
                    bar.update(task, description=f"{description} (stopped: {steps.stopped})")
        else:
            yield from _plain_stage(console, description, total, self.every_s)

    def skip(self, description: str, reason: str) -> None:
        """A stage that is not run, and why (one line, on a terminal too)."""
        if self.show:
            _line(self.console or get_console(), f"{description}: skipped ({reason})")


def _line(console: Console, text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)  # a log line is never wrapped


def _plain_stage(console: Console, description: str, total: int, every_s: float) -> Iterator[Steps]:
    t0, done, shown, last = time.perf_counter(), [0], [0], [time.perf_counter()]

    def advance() -> None:
        done[0] += 1
        tenth = 10 * done[0] // max(total, 1)
        if tenth > shown[0] and done[0] < total and time.perf_counter() - last[0] >= every_s:
            shown[0], last[0] = tenth, time.perf_counter()
            _line(console, f"{description}: {done[0]}/{total} ({time.perf_counter() - t0:.0f} s)")

    _line(console, f"{description}: 0/{total}")
    steps = Steps(advance)
    yield steps
    took = time.perf_counter() - t0
    if steps.stopped is not None:
        _line(console, f"{description}: {done[0]}/{total} stopped in {took:.0f} s: {steps.stopped}")
    else:
        _line(console, f"{description}: {done[0]}/{total} done in {took:.0f} s")


def end_with(driver: int) -> None:
    """A worker pool's initializer: the worker ends when the command that started it is gone, so a ``kill -9`` of
    automed leaves no workers behind (they kept training into the work dir, then hung, under PID 1)."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(driver, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # alive, another user's (a reused PID would be too: then nothing changes)
                pass

    threading.Thread(target=watch, daemon=True, name="automed-driver-watch").start()


class _StoppablePool(ProcessPoolExecutor):
    """Left by Ctrl-C or SIGTERM (a ``KeyboardInterrupt``), it stops its workers instead of waiting for their tasks:
    a SIGTERM sent to this process alone (``kill PID``, a container's PID 1) reaches none of them, and the ``with``
    block's ``shutdown(wait=True)`` then waited for every running fold or trial to end."""

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool | None:
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            stop_pool(self)
            return None
        return super().__exit__(exc_type, exc, tb)


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started, terminate the running workers and wait briefly for them."""
    procs = list(getattr(pool, "_processes", {}).values())  # the executor's own record of its workers
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(5)


def process_pool(workers: int, context: str, preload: list[str] | None = None) -> ProcessPoolExecutor:
    """A process pool whose workers end with this process (:func:`end_with`) and stop when it is interrupted."""
    ctx = mp.get_context(context)
    if preload is not None:
        ctx.set_forkserver_preload(preload)
    return _StoppablePool(max_workers=workers, mp_context=ctx, initializer=end_with, initargs=(os.getpid(),))


class WorkerPool:
    """Worker processes shared by several :func:`parallel_map` calls (e.g. one per slide), started on first use and
    stopped on exit. ``preload``: modules the fork server imports once, so every worker starts with them (the fork
    server is per process: the first pool's preload is the one that counts)."""

    def __init__(self, workers: int, preload: list[str] | None = None) -> None:
        self.workers = workers
        self.preload = preload if preload is not None else _PRELOAD
        self._pool: ProcessPoolExecutor | None = None

    def executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = process_pool(self.workers, "forkserver", self.preload)
        return self._pool

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        if self._pool is not None and exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            stop_pool(self._pool)
        elif self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def parallel_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int,
    description: str,
    total: int | None = None,
    show_progress: bool = True,
    pool: WorkerPool | None = None,
) -> Iterator[R]:
    """Yield ``fn(item)`` for each item, in order, computed by ``workers`` processes (those of ``pool`` when given,
    else a pool of its own)."""
    seq = list(items)
    n = total if total is not None else len(seq)
    with progress_bar(disable=not show_progress) as bar:
        task = bar.add_task(description, total=n)
        if workers <= 1 or len(seq) <= 1:
            for it in seq:
                yield fn(it)
                bar.advance(task)
            return
        with contextlib.ExitStack() as stack:
            if pool is None:
                pool = stack.enter_context(WorkerPool(workers))
            executor = pool.executor()
            pending: list[Future[R]] = []
            queue = iter(seq)
            for item in queue:
                pending.append(executor.submit(fn, item))
                if len(pending) >= 2 * workers:
                    break
            try:
                while pending:
                    fut = pending.pop(0)
                    res = fut.result()
                    for nxt in queue:
                        pending.append(executor.submit(fn, nxt))
                        break
                    bar.advance(task)
                    yield res
            finally:  # a caller that stops early (or an error) leaves nothing running in a shared pool
                for fut in pending:
                    fut.cancel()
                wait(pending)
