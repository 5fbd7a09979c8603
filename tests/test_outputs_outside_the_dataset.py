"""``automed export W -o DATASET/exp``, ``automed package W --mlcube DATASET/cube`` and ``automed report W -o
DATASET/rep`` wrote into the dataset W was trained on (``train_config.json``'s ``dataset``): a folder-per-class
dataset then read the output as another class and ``automed verify`` refused the dataset from then on ("found an
automed export output"). Predict, explain and train refused outputs inside the folders they read; export, package
and report now refuse one inside the dataset of a training they read (a report: of every work dir it reads, a
selection's candidates too), before any work. A dataset moved since training is no reason to refuse anything."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from automed import api
from automed.errors import ArtifactError
from tests.test_output_containment import _class_folders, _tree


def _workdir(folder: Path, dataset: Path) -> Path:
    """A training work dir as far as export, package and report read it before they claim their output: its
    ``train_config.json`` names the dataset (the refusal comes before the model is read)."""
    folder.mkdir()
    (folder / "train_config.json").write_text(json.dumps({"schema_version": 1, "dataset": str(dataset)}))
    return folder


def _refused(call: Callable[[Path], object], ds: Path, *outs: Path) -> None:
    for out in outs:
        with pytest.raises(ArtifactError, match="must lie outside the dataset of a training it reads") as err:
            call(out)
        text = str(err.value)
        assert (
            text.startswith(f"1 problem found:\n  - {out}: ") and f"inside the dataset {ds.resolve()}" in text
        )
        assert "Fix: choose an output folder outside the dataset (e.g. a new folder beside it)" in text


def test_export_package_and_report_never_write_inside_the_trainings_dataset(tmp_path: Path) -> None:
    ds = _class_folders(tmp_path / "DS")
    wd = _workdir(tmp_path / "W", ds)
    selection = tmp_path / "S"  # a report of a selection reads its candidate trainings
    selection.mkdir()
    candidate = {"candidate": "W", "members": [str(wd)], "score": 0.5}
    (selection / "selection.json").write_text(json.dumps({"chosen": candidate, "candidates": [candidate]}))
    before = _tree(ds)
    calls = {
        "export": lambda out: api.export(wd, out),
        "package": lambda out: api.package(wd, out),
        "report": lambda out: api.report([wd], out, log_to_mlflow=False),
        "report of a selection": lambda out: api.report([selection], out, log_to_mlflow=False),
    }
    for call in calls.values():
        _refused(call, ds, ds / "exp", ds / "benign" / "exp")
    assert _tree(ds) == before  # nothing written there
    api.verify(ds, workers=0, show_progress=False)  # the dataset is as it was


def test_a_moved_or_damaged_record_of_the_dataset_refuses_nothing(tmp_path: Path) -> None:
    """The check reads where the dataset was recorded: a dataset moved since training (nothing there to protect), a
    folder that is no work dir or a damaged record (its own command names it) leave the output to the other rules;
    a CSV dataset protects the CSV, not the folder beside it (work dirs and outputs may sit there)."""
    from automed.artifacts import claim_output
    from automed.workflow.predict_output import training_datasets

    ds = _class_folders(tmp_path / "DS")
    wd = _workdir(tmp_path / "W", ds)
    assert training_datasets([wd, wd, tmp_path / "not-a-workdir"]) == [ds]
    ds.rename(tmp_path / "moved")
    assert training_datasets([wd]) == []
    (wd / "train_config.json").write_text("{not json")
    assert training_datasets([wd]) == []
    table = tmp_path / "csvdata" / "cases.csv"
    table.parent.mkdir()
    table.write_text("SubjectID,Channel_0,ValueToPredict\n")
    (wd / "train_config.json").write_text(json.dumps({"schema_version": 1, "dataset": str(table)}))
    assert training_datasets([wd]) == [table]
    out = table.parent / "exp"
    assert claim_output(out, "export", datasets=training_datasets([wd])) == out.resolve()
    with pytest.raises(ArtifactError, match="must not be, or hold"):
        claim_output(table.parent, "export", datasets=[table])


@pytest.mark.slow
def test_a_real_training_refuses_outputs_inside_its_dataset(small_training: dict[str, Path]) -> None:
    """The session's small training (tests/conftest.py; an MSD dataset folder), read, never written."""
    wd, ds = small_training["W"], small_training["ds"]
    before = _tree(small_training["root"])
    _refused(lambda out: api.export(wd, out, overwrite=True), ds, ds / "exp", ds / "imagesTr" / "exp")
    _refused(lambda out: api.package(wd, out, overwrite=True), ds, ds / "cube")
    _refused(lambda out: api.report([wd], out, log_to_mlflow=False), ds, ds / "rep")
    assert _tree(small_training["root"]) == before
