"""``automed select -o OUT`` is checked like every other output, before the trainings are read: never inside an
automed output that a later run replaces whole (the next ``automed export`` of that folder removed the selection with
it), never a folder holding a training it compares, never a folder of the user's or a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from automed import api
from automed.artifacts import mark_output
from automed.errors import ArtifactError
from tests.conftest import refused_naming


def _trainings(root: Path) -> list[Path]:
    """Two training work dirs by name only: the output is refused before either is read."""
    return [root / "W1", root / "W2"]


@pytest.mark.parametrize("kind", ["export", "cube", "report", "predictions"])
def test_not_inside_an_output_replaced_whole(kind: str, tmp_path: Path) -> None:
    around = tmp_path / kind
    around.mkdir()
    mark_output(around, kind)
    with pytest.raises(ArtifactError) as exc:
        api.select(_trainings(tmp_path), around / "sel", show_progress=False)
    refused_naming(
        exc, around / "sel", "must not lie inside another automed output", f"an automed {kind} output"
    )
    assert not (around / "sel").exists()


def test_not_inside_an_export_written_before_the_marker(tmp_path: Path) -> None:
    old = tmp_path / "export"
    old.mkdir()
    for name in ("export.json", "preprocess.json"):
        (old / name).write_text("{}")
    with pytest.raises(ArtifactError) as exc:
        api.select(_trainings(tmp_path), old / "sel", show_progress=False)
    refused_naming(exc, old / "sel", "must not lie inside another automed output")


def test_not_a_folder_holding_a_training(tmp_path: Path) -> None:
    (tmp_path / "W1").mkdir()
    with pytest.raises(ArtifactError) as exc:
        api.select(_trainings(tmp_path), tmp_path, show_progress=False)
    refused_naming(exc, tmp_path, "must not be, or hold, the model or the inputs", "W1")


def test_not_a_folder_of_the_users_nor_a_file(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    with pytest.raises(ArtifactError) as exc:
        api.select(_trainings(tmp_path), mine, show_progress=False)
    refused_naming(
        exc, mine, "select writes into a new folder or an earlier selection", "without selection.json"
    )
    assert (mine / "notes.txt").read_text() == "the user's"
    with pytest.raises(ArtifactError) as exc:
        api.select(_trainings(tmp_path), mine / "notes.txt", show_progress=False)
    refused_naming(exc, mine / "notes.txt", "must be a folder")


def test_an_earlier_selection_may_be_chosen_again(tmp_path: Path) -> None:
    """An earlier selection is accepted as the output: the refusal then comes from the trainings (none there)."""
    sel = tmp_path / "sel"
    sel.mkdir()
    (sel / "selection.json").write_text("{}")
    with pytest.raises(ArtifactError) as exc:
        api.select(_trainings(tmp_path), sel, show_progress=False)
    refused_naming(exc, tmp_path / "W1" / "model.json", "a training work dir's model.json must exist")
    assert str(sel) not in str(exc.value)


def test_a_selection_passed_as_a_training_is_named_so(tmp_path: Path) -> None:
    """``select sel W2 -o sel``: the error says that sel is a selection folder and what to pass instead."""
    from automed.errors import ConfigError

    sel = tmp_path / "sel"
    sel.mkdir()
    (sel / "selection.json").write_text("{}")
    with pytest.raises(ConfigError) as exc:
        api.select([sel, tmp_path / "W2"], sel, show_progress=False)
    refused_naming(
        exc, sel, "select compares training work dirs", "a selection folder", "pass the training work dirs"
    )
