"""How a path listed in a dataset description resolves (relative to the description's folder, absolute as is), and
what an operating-system error on such a path means to the user (a symlink loop, a permission problem)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from automed.errors import Problem


def resolve_listed(base: Path, rel: str) -> Path:
    """``rel`` as listed in a ``dataset.json`` or CSV, resolved against ``base`` (the file's folder) unless absolute.

    A path that cannot be resolved (a symlink loop, an unreadable folder) is kept as written, normalised, so that
    :func:`automed.data.verify.verify` reports it as a problem of that file instead of failing here."""
    p = Path(rel)
    if p.is_absolute():
        return p
    try:
        return (base / p).resolve()
    except (OSError, RuntimeError):  # Python 3.11 raises RuntimeError on a symlink loop
        return Path(os.path.normpath(base / p))


def os_problem(
    path: Path | str, exc: OSError | RuntimeError, what: str = "file", rule: str | None = None
) -> Problem:
    """The :class:`Problem` for an operating-system error met while opening ``path`` (a ``what``: image, label, CSV).

    ``RuntimeError`` is what Python 3.11's ``Path.resolve`` raises on a symlink loop."""
    code = exc.errno if isinstance(exc, OSError) else errno.ELOOP
    rule = rule or f"every listed {what} must be readable"
    if code == errno.ELOOP:
        return Problem(
            str(path),
            rule,
            "a symlink loop (ELOOP: the link, or a folder on its way, leads back to itself)",
            "point the path at the real file; find the looping link with `ls -l` / `readlink -f` and fix or remove it",
        )
    if code in (errno.EACCES, errno.EPERM):
        return Problem(
            str(path),
            rule,
            f"permission denied ({errno.errorcode[code]})",
            "make the file and the folders above it readable by this user (chmod/chown), or copy it somewhere "
            "readable",
        )
    name = errno.errorcode.get(code, "OSError") if code is not None else type(exc).__name__
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return Problem(str(path), rule, f"{name}: {reason}", "check the path and the file system it is on")


def access_problem(path: Path, what: str = "image") -> Problem | None:
    """``None`` when ``path`` (a file, or a DICOM folder) can be opened; else the problem: missing, symlink loop,
    permission denied. Opens the file without reading it, so it costs one system call or two."""
    try:
        if path.is_dir():
            next(path.iterdir(), None)  # lists the folder: fails as opening a file would
        else:
            with path.open("rb"):
                pass
    except (FileNotFoundError, NotADirectoryError):
        return Problem(
            str(path),
            f"every listed {what} must exist",
            "missing file",
            "fix the path in the dataset description or add the file",
        )
    except OSError as exc:
        return os_problem(path, exc, what)
    return None
