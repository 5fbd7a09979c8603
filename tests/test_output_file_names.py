"""An output named like a file (``predict -o preds.csv``, ``metrics -o scores.json``, ``explain -o map.png``,
nnU-Net's habit ``-o seg.nii.gz``) became a folder of that name with the files inside; ``report -o rep.html`` was
refused already. Every output folder now is: automed's outputs are folders."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from automed import api
from automed.artifacts import claim_output
from automed.errors import ArtifactError


@pytest.mark.parametrize(("name", "fix"), [("preds.csv", "preds"), ("seg.nii.gz", "seg"), ("map.PNG", "map")])
def test_an_output_named_like_a_file_is_refused_naming_a_folder(tmp_path: Path, name: str, fix: str) -> None:
    with pytest.raises(ArtifactError, match=rf"{name}: an output \(predictions\) is a folder.*-o .*/{fix}\b"):
        claim_output(tmp_path / name, "predictions")
    assert not (tmp_path / name).exists()
    (tmp_path / "old.csv").mkdir()  # a folder of that name made before: it is a folder, taken as one
    assert claim_output(tmp_path / "old.csv", "predictions") == (tmp_path / "old.csv").resolve()


def test_metrics_refuses_it_before_scoring(tmp_path: Path) -> None:
    table = tmp_path / "scored.csv"
    pd.DataFrame({"SubjectID": ["a", "b"], "Target": ["x", "y"], "Prediction": ["x", "x"]}).to_csv(
        table, index=False
    )
    with pytest.raises(ArtifactError, match="is a folder"):
        api.metrics(table, tmp_path / "scores.json")
    assert not (tmp_path / "scores.json").exists()


@pytest.mark.parametrize("name", ["seg.mha", "seg.nrrd", "out.tif", "preds.xlsx", "model.onnx", "seg.dcm"])
def test_every_image_ending_automed_reads_and_table_endings_are_file_names(tmp_path: Path, name: str) -> None:
    """The first list missed endings automed itself reads (``.mha``, grand-challenge's, ``.nrrd``, ``.tif``) and lost
    ``.xlsx`` when it moved: those still became folders."""
    from automed.runtime.io import SUFFIXES

    with pytest.raises(ArtifactError, match=r"or create the folder first \(mkdir .*\) to keep that name"):
        claim_output(tmp_path / name, "predictions")
    from automed.runtime.folders import FILE_SUFFIXES

    assert set(SUFFIXES) <= set(FILE_SUFFIXES)


def test_an_output_named_only_an_ending_gets_a_folder_name_not_a_crash(tmp_path: Path) -> None:
    """``-o .json`` crashed building its own fix (``ValueError: Invalid name ''``)."""
    with pytest.raises(ArtifactError, match=r"-o .*/results, or create"):
        claim_output(tmp_path / ".json", "metrics")
