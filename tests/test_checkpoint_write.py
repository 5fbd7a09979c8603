"""Checkpoints are written through a temporary file: what a killed writer left (a Ray node that died mid-fold, a
``kill -9``) is removed by the fold's next write, and a failed write leaves no partial file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from automed.train.state import load_checkpoint, save_checkpoint


def test_a_killed_writers_partial_checkpoint_is_removed_by_the_next_write(tmp_path: Path) -> None:
    left = tmp_path / ".checkpoint_latest.pt.28234.tmp"  # as a worker on a node that died left it
    left.write_bytes(b"PK\x03\x04 partial")
    best = tmp_path / ".checkpoint_best.pt.28234.tmp"
    best.write_bytes(b"partial")
    save_checkpoint(tmp_path / "checkpoint_latest.pt", {"model": {"w": torch.ones(3)}})
    assert not left.exists() and best.exists()  # each checkpoint's own leftovers, at its own next write
    save_checkpoint(tmp_path / "checkpoint_best.pt", {"model": {"w": torch.ones(3)}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_best.pt", "checkpoint_latest.pt"]
    assert load_checkpoint(tmp_path / "checkpoint_latest.pt")["model"]["w"].sum() == 3


def test_a_write_that_fails_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(obj: object, fh: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "checkpoint_latest.pt", {"model": {}})
    assert list(tmp_path.iterdir()) == []
