"""Fixes that sent the user the wrong way: images given as the model were to be trained into ("run `automed train
DATASET -o IMAGES` first"), a folder given as a YAML file was "missing", and preprocess before plan said "run the
stage that writes plan.json" without naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from automed import api
from automed.config import read_yaml
from automed.errors import ArtifactError, ConfigError
from automed.testing.synthetic import make_dataset


def _said(exc: pytest.ExceptionInfo[Exception]) -> str:
    return " ".join(str(exc.value).split())


def test_images_given_as_the_model_are_named_as_images(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "d", n_cases=2, shape=(8, 8, 8))
    with pytest.raises(ArtifactError) as exc:
        api.predict(ds / "imagesTr", ds, tmp_path / "out")
    said = _said(exc)
    assert (
        "a model is a training work dir, a selection folder or models:/NAME@ALIAS; found a folder of images"
        in said
    )
    assert "images go after -i" in said and "automed train DATASET -o" not in said
    assert not (tmp_path / "out").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError) as exc:
        api.predict(tmp_path / "empty", ds / "imagesTr", tmp_path / "out")
    assert "found a folder automed did not write" in _said(exc)


def test_a_folder_given_as_a_yaml_file_is_named_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        read_yaml(tmp_path, "the search-space file")
    assert (
        "the search-space file must be a YAML file; found a folder. Fix: pass the YAML file itself"
        in _said(exc)
    )


def test_preprocess_before_plan_names_the_command_to_run(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "d", n_cases=2, shape=(8, 8, 8))
    with pytest.raises(ArtifactError) as exc:
        api.preprocess(ds, tmp_path / "W")
    assert (
        "plan.json must exist; found no such file. Fix: run `automed plan DATASET -o WORKDIR` first"
        in _said(exc)
    )
