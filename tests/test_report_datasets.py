"""``automed report`` pairs runs by case ID: runs of two datasets that both number their cases ``case_000``, ...
are refused (their fingerprints hold other images under those IDs); runs of one dataset compare, whatever their
splits, and so do runs of a dataset grown by new cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from automed import api
from automed.errors import ArtifactError
from automed.testing.fingerprints import synthetic_fingerprint


def _run(tmp_path: Path, name: str, dataset: str, n_cases: int, shape: tuple[int, int, int]) -> Path:
    """A work dir as far as the report reads it: its dataset's fingerprint and a CV table over its cases."""
    wd = tmp_path / name
    wd.joinpath("cv").mkdir(parents=True)
    fp = synthetic_fingerprint((1.0, 1.0, 1.0), shape, n_cases=n_cases)
    fp.model_copy(update={"dataset_name": dataset}).with_hash().save(wd / "fingerprint.json")
    dice = np.random.default_rng(len(name) + n_cases).uniform(0.5, 0.9, n_cases)
    ids = [c.case_id for c in fp.cases]
    pd.DataFrame({"case": ids, "label": "1", "name": "large", "dice": dice, "hd95": 1.0}).to_csv(
        wd / "cv" / "metrics.csv", index=False
    )
    return wd


def test_runs_of_two_datasets_sharing_case_ids_are_refused(tmp_path: Path) -> None:
    w1, w2 = _run(tmp_path, "W1", "A", 3, (20, 30, 30)), _run(tmp_path, "W2", "B", 3, (24, 30, 30))
    with pytest.raises(ArtifactError, match="of one dataset") as err:
        api.report([w1, w2], tmp_path / "R", log_to_mlflow=False)
    text = str(err.value)
    assert "W2/fingerprint.json" in text and "case_000" in text and "'A'" in text and "'B'" in text
    assert "report each dataset's runs separately" in text and not (tmp_path / "R").exists()


def test_runs_of_one_dataset_or_of_it_grown_still_compare(tmp_path: Path) -> None:
    w1, w3 = _run(tmp_path, "W1", "A", 3, (20, 30, 30)), _run(tmp_path, "W3", "A", 3, (20, 30, 30))
    grown = _run(tmp_path, "W4", "A", 4, (20, 30, 30))  # its first three cases are W1's images
    res = api.report([w1, w3, grown], tmp_path / "R", log_to_mlflow=False)
    assert {(t["run_a"], t["run_b"]) for t in res.tests} == {("W1", "W3"), ("W1", "W4"), ("W3", "W4")}
    assert {t["n_cases"] for t in res.tests} == {3}


def test_classification_trainings_of_two_datasets_are_refused_too(tmp_path: Path) -> None:
    """Image-level runs are paired by case ID as well (McNemar, Wilcoxon): the same check, before any table."""
    runs = [_run(tmp_path, n, n, 3, shape) for n, shape in (("C1", (1, 64, 64)), ("C2", (1, 80, 64)))]
    for wd in runs:
        (wd / "model.json").write_text(
            '{"task": "classification"}'
        )  # what tells the report an image-level run
    with pytest.raises(ArtifactError, match="of one dataset"):
        api.report(runs, tmp_path / "R", log_to_mlflow=False)
