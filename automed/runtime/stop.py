"""A stop asked by a signal whose exception Python dropped: SIGTERM's handler raises where the main thread is, and
when that is a hook run around ``os.fork`` (a DataLoader starting its worker processes every epoch) Python prints
"Exception ignored" and goes on - the training had run to its end, registered a model and exited 0. The handler also
records the stop here; long loops call :func:`check` at each step and stop there."""

from __future__ import annotations

import threading

_asked = threading.Event()


def ask() -> None:
    """Record that the command must stop (the signal handler, before it raises)."""
    _asked.set()


def clear() -> None:
    """A new command in this process (its handler installed) starts with no stop asked."""
    _asked.clear()


def check() -> None:
    """Raise :class:`KeyboardInterrupt` (everything cleans up as after Ctrl-C) when a stop was asked."""
    if _asked.is_set():
        raise KeyboardInterrupt("stopped: a signal asked the command to stop")
