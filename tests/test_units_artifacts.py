"""Atomic writes give the mode a plain write gives: mkstemp's 0600 had made JSON records (a prediction's record, its
review pages' details, plans) unreadable to colleagues who could read the label maps beside them."""

from __future__ import annotations

import os
from pathlib import Path

from automed.artifacts import write_bytes_atomic, write_json_atomic


def test_an_atomic_write_has_the_mode_the_umask_gives(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "a.json", {"x": 1})
        os.umask(0o077)
        write_bytes_atomic(tmp_path / "b.bin", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o600  # a private umask is kept


def test_a_folder_written_whole_has_the_mode_the_umask_gives(tmp_path: Path) -> None:
    from automed.artifacts import atomic_directory

    old = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "out") as tmp:
            (tmp / "x.csv").write_text("a\n")
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755


def test_a_mount_that_refuses_modes_is_written_as_before(tmp_path: Path, monkeypatch: object) -> None:
    import pytest

    def refuse(fd: int, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    mp = pytest.MonkeyPatch()
    mp.setattr(os, "fchmod", refuse)
    try:
        write_json_atomic(tmp_path / "a.json", {"x": 1})
    finally:
        mp.undo()
    assert (tmp_path / "a.json").read_text().strip().startswith("{")
