"""Export's parity case comes from the training's dataset: a dataset moved since is said as such, with the ways on
(review: it was "the dataset path must exist; found missing. Fix: check the path")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from automed.data.dataset import load_dataset
from automed.data.splits import write_splits
from automed.errors import ArtifactError
from automed.export.export import first_validation_case
from automed.records import TRAIN_CONFIG_VERSION
from automed.testing.synthetic import make_dataset


def test_a_moved_dataset_is_named_with_the_case_option_and_resume(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", n_cases=4, shape=(8, 8, 8))
    wd = tmp_path / "W"
    wd.mkdir()
    write_splits(load_dataset(data), wd / "splits.json", 2)
    record = {"schema_version": TRAIN_CONFIG_VERSION, "dataset": str(data), "config": {}, "options": {}}
    (wd / "train_config.json").write_text(json.dumps(record))
    cid, _, _ = first_validation_case(wd) or ("", None, None)
    assert cid.startswith("case_")  # where the dataset is, its case is read
    shutil.move(data, tmp_path / "moved")
    with pytest.raises(ArtifactError) as exc:
        first_validation_case(wd)
    text = str(exc.value)
    assert f"{data} missing (moved or deleted since the training)" in text
    assert "--case IMAGE" in text and f"automed train NEW_PLACE --resume {wd}" in text
