"""The private session folder of automed's own Ray cluster: Ray's session files (logs naming paths, object spill)
go to a folder only this user reaches (Ray opens its own to everyone, 0777), removed when the engine closes; one
left by a driver killed since (kill -9: it could not remove its own) is removed by the next."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def private_temp() -> str:
    """A new private folder (0700) with this driver's record, where Ray itself would go (``RAY_TMPDIR``, else
    ``/tmp``: a macOS ``TMPDIR`` is too long for Ray's Unix sockets, whose paths are limited to 107 bytes); stale
    ones removed first (:func:`remove_stale`)."""
    base = os.environ.get("RAY_TMPDIR") or ("/tmp" if os.name == "posix" else None)
    remove_stale(base)
    folder = tempfile.mkdtemp(prefix="automed-ray-", dir=base)
    Path(folder, "driver.pid").write_text(driver_id())
    return folder


def driver_id() -> str:
    """This process as a driver record: host, PID namespace and pid (a pid is only judged where it means the same
    process: a temp folder shared between hosts or containers holds other drivers' folders)."""
    import socket

    try:
        namespace = str(Path("/proc/self/ns/pid").readlink())
    except OSError:
        namespace = ""
    return f"{socket.gethostname()} {namespace} {os.getpid()}"


def remove_stale(base: str | None) -> None:
    """This user's private Ray folders whose driver, on this host and in this PID namespace, is gone (killed, so it
    could not remove its own)."""
    here = driver_id().rsplit(" ", 1)[0]
    for folder in Path(base or tempfile.gettempdir()).glob("automed-ray-*"):
        try:
            if folder.stat().st_uid != os.getuid():
                continue
            where, _, pid_text = (folder / "driver.pid").read_text().rpartition(" ")
            pid = int(pid_text)
        except (OSError, ValueError):  # another user's, or one without a record (not ours to judge)
            continue
        if where != here:  # another host's or container's driver: its pid means nothing here
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # alive, another user's process
            pass
