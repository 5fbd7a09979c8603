"""``model.json`` is read through ``train.meta.read_meta`` (select reads every training's before anything else,
so its own later read of the folds gets a checked one), and a damaged one (no object, values of
other types) is refused naming the file, the rule, the value and the fix, where select, predict and export had
crashed with a bare TypeError, AttributeError or pydantic ValidationError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from automed.errors import ArtifactError
from automed.train.meta import read_meta
from automed.workdir import WorkDir
from automed.workflow.select import select


def _workdir(tmp_path: Path, model: str) -> Path:
    wd = tmp_path / "W"
    wd.mkdir()
    WorkDir(wd).train_config.write_text(json.dumps({"dataset": "D", "config": {}}))
    WorkDir(wd).model.write_text(model)
    return wd


@pytest.mark.parametrize(("model", "found"), [("[]", "[] (list)"), ('"W"', "'W' (str)")])
def test_select_refuses_a_model_json_that_is_no_object(tmp_path: Path, model: str, found: str) -> None:
    wd = _workdir(tmp_path, model)
    with pytest.raises(ArtifactError) as exc:
        select([wd], tmp_path / "S", show_progress=False)
    assert not (tmp_path / "S").exists()
    (p,) = exc.value.problems
    assert (p.file, p.rule, p.value, p.fix) == (
        str(WorkDir(wd).model), "model.json must be a JSON object", found, "re-run the training",
    )  # fmt: skip


def test_a_model_json_with_values_of_other_types_names_each(tmp_path: Path) -> None:
    path = WorkDir(_workdir(tmp_path, json.dumps({"schema_version": 2, "folds": "0,1"}))).model
    with pytest.raises(ArtifactError, match=r"model.json in .* is damaged") as exc:
        read_meta(path)
    problems = {p.rule.split(":")[0]: p for p in exc.value.problems}
    assert problems["model.json's folds"].value == "'0,1' (str)"
    assert {"model.json's dataset", "model.json's config", "model.json's labels"} <= set(problems)
    assert all(p.file == str(path) and p.fix.startswith("re-run the training") for p in problems.values())
