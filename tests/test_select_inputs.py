"""What ``automed select`` is given: each training once, and a selection folder is not taken for a training (both
refused before anything is read or written)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from automed import api
from automed.errors import ConfigError


def test_the_same_training_twice_is_refused(tmp_path: Path) -> None:
    """``automed select w3d w3d`` (a typo for ``w3d w2d``) compared the training with itself as ``w3d-2``, paired
    it with itself, and chose it."""
    (tmp_path / "w3d").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "w3d")
    for twice in (["w3d", "w3d"], ["w3d", "./link"], ["w3d", "w3d/"]):
        with pytest.raises(ConfigError, match=r"each given once.*the same folder as") as exc:
            api.select([tmp_path / w for w in twice], tmp_path / "S")
        assert "pass each training work dir once" in str(exc.value)
    assert not (tmp_path / "S").exists()


def test_a_selection_folder_is_not_taken_for_a_training(tmp_path: Path) -> None:
    """``automed select sel w2d``: it said to run ``automed train DATASET -o sel`` (into the selection)."""
    sel = tmp_path / "sel"
    sel.mkdir()
    (sel / "selection.json").write_text(json.dumps({"chosen": {}}))
    (tmp_path / "w2d").mkdir()
    with pytest.raises(ConfigError, match=r"compares training work dirs.*a selection folder") as exc:
        api.select([sel, tmp_path / "w2d"], tmp_path / "S")
    assert "the training work dirs it compared" in str(exc.value) and "automed train" not in str(exc.value)
    assert not (tmp_path / "S").exists()
