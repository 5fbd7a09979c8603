"""What a ``selection.json`` chose is read through ``records.read_chosen`` by predict (a selection folder as the
model), its review log and a pair's members: a damaged one is refused naming the file, the rule, the value and the
fix, where it had crashed with a bare JSONDecodeError, KeyError or TypeError."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from automed.errors import ArtifactError
from automed.records import read_chosen
from automed.workdir import WorkDir, pair_members
from automed.workflow.predict import model_dir
from automed.workflow.review_log import training_run

FIX = "run automed select again into this folder (-o)"


def _selection(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    WorkDir(folder).selection.write_text(text)
    return WorkDir(folder).selection


@pytest.mark.parametrize(
    ("text", "rule", "found"),
    [
        ('{"chosen": {"mem', "selection.json must be valid JSON", "line 1"),
        ("[]", "selection.json must hold chosen", "[] (list)"),
        ('{"score": 0.8}', "selection.json must hold chosen", "None (NoneType)"),
        ('{"chosen": {"members": "W"}}', "selection.json must hold chosen", "{'members': 'W'} (dict)"),
        ('{"chosen": {"members": ["W"], "relative": ["../W", null]}}', "selection.json's chosen relative",
         "['../W', None] (list)"),
    ],
)  # fmt: skip
def test_predict_and_its_review_log_refuse_a_damaged_selection(
    tmp_path: Path, text: str, rule: str, found: str
) -> None:
    path = _selection(tmp_path / "S", text)
    for read in (lambda: model_dir(tmp_path / "S"), lambda: training_run(tmp_path / "S", None)):
        with pytest.raises(ArtifactError) as exc:
            read()
        (p,) = exc.value.problems
        assert p.file == str(path) and p.rule.startswith(rule) and found in p.value and p.fix.startswith(FIX)
    assert path.read_text() == text


def test_a_pair_refuses_a_damaged_selection(tmp_path: Path) -> None:
    path = _selection(tmp_path / "S", '{"chosen": []}')
    WorkDir(tmp_path / "S").pair.parent.mkdir()
    WorkDir(tmp_path / "S").pair.write_text(json.dumps({"members": [{"folder": "m0"}, {"folder": "m1"}]}))
    with pytest.raises(ArtifactError, match=r"selection\.json must hold chosen"):
        pair_members(tmp_path / "S")
    assert path.read_text() == '{"chosen": []}'


def test_a_choice_as_select_writes_it_is_read(tmp_path: Path) -> None:
    chosen: dict[str, Any] = {"candidate": "3d_fullres", "members": ["/p/W"], "relative": ["../W"]}
    assert read_chosen(_selection(tmp_path, json.dumps({"chosen": chosen, "score": 0.8}))) == chosen
    before_places = {"candidate": "3d_fullres", "members": ["/p/W"]}  # written before relative places
    assert read_chosen(_selection(tmp_path, json.dumps({"chosen": before_places}))) == before_places
