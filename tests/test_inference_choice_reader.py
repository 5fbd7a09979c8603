"""A training's ``inference.json`` (what ``automed select`` chose for it) is read through ``train.meta.read_choice``
by predict (a selection folder as the model) and by every load of the model: a damaged one is refused naming the
file, the rule, the value and the fix, where it had crashed with a bare KeyError or pydantic ValidationError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from automed.errors import ArtifactError
from automed.train.meta import InferenceChoice, InferenceSettings, applied_choice, read_choice
from automed.workdir import WorkDir
from automed.workflow.predict import model_dir

FIX = "run automed select again (it writes inference.json anew)"


@pytest.mark.parametrize(
    ("text", "rule", "found"),
    [
        ('{"selection": "/p/S", "infer', "inference.json must be readable JSON", "line 1"),
        ('{"inference": {}}', "inference.json's selection: Field required", "{'inference': {}} (dict)"),
        ('{"selection": 3, "inference": {}}', "inference.json's selection: Input should be a valid string",
         "3 (int)"),
    ],
)  # fmt: skip
def test_a_damaged_choice_is_refused_by_predict_and_every_model_load(
    tmp_path: Path, text: str, rule: str, found: str
) -> None:
    wd = tmp_path / "W"
    wd.mkdir()
    WorkDir(wd).choice.write_text(text)
    (tmp_path / "S").mkdir()
    chosen = {"candidate": "3d_fullres", "members": [str(wd)]}
    WorkDir(tmp_path / "S").selection.write_text(json.dumps({"chosen": chosen}))
    for read in (lambda: model_dir(tmp_path / "S"), lambda: applied_choice(WorkDir(wd))):
        with pytest.raises(ArtifactError) as exc:
            read()
        p = exc.value.problems[0]
        assert (
            (p.file, p.fix) == (str(WorkDir(wd).choice), FIX) and p.rule.startswith(rule) and found in p.value
        )
    assert WorkDir(wd).choice.read_text() == text


def test_a_choice_as_select_writes_it_is_read(tmp_path: Path) -> None:
    choice = InferenceChoice(selection="/p/S", inference=InferenceSettings(), relative="../S")
    choice.save(tmp_path / "inference.json")
    assert read_choice(tmp_path / "inference.json") == choice
