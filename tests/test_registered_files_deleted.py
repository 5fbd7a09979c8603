"""A registered version whose files were deleted from the store: ``automed predict models:/...`` says so and what to
do, and registering the same bundle again makes a new version instead of keeping the empty one."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlflow
import pytest

from automed.errors import ArtifactError
from automed.model_store import download_model
from automed.select.register import BUNDLE_TAG, _unchanged


class _Registry:
    """Stands for MlflowClient: version 3 of ``m`` (champion) with the bundle digest ``d`` and score 0.5."""

    def __init__(self, files: list[str]) -> None:
        self.files = files

    def get_model_version(self, name: str, version: str) -> Any:
        return SimpleNamespace(tags={BUNDLE_TAG: "d", "cv_score": "0.500000"}, model_id="m-1")

    def get_model_version_by_alias(self, name: str, alias: str) -> Any:
        return SimpleNamespace(version="3")

    def list_logged_model_artifacts(self, model_id: str) -> list[str]:
        return self.files


def test_a_version_that_lost_its_files_is_registered_again() -> None:
    previous = {"name": "m", "version": "3", BUNDLE_TAG: "d"}
    whole = SimpleNamespace(client=_Registry(["MLmodel", "artifacts"]))
    assert _unchanged(whole, previous, "d", 0.5) == {**previous, "champion": "3"}  # type: ignore[arg-type]
    emptied = SimpleNamespace(client=_Registry([]))
    assert _unchanged(emptied, previous, "d", 0.5) is None  # type: ignore[arg-type]


def test_predicting_with_a_version_that_lost_its_files_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", lambda artifact_uri, dst_path: dst_path)
    monkeypatch.setattr("automed.model_store._registered_summary", lambda client: "m (aliases @champion)")
    monkeypatch.setattr("automed.tracking.still_answers", lambda *a, **kw: None)  # (no server at 127.0.0.1:9)
    dest = tmp_path / "d"
    dest.mkdir()
    with pytest.raises(ArtifactError) as err:
        download_model(
            "models:/m@champion", dest, "http://127.0.0.1:9"
        )  # (a server: no SQLite store to make)
    text = str(err.value)
    assert "found no files at all (deleted from the store's artifacts?)" in text
    assert "registered here: m (aliases @champion)" in text and "automed select WORKDIR" in text
