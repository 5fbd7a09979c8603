"""A registered model names no local folder: MLflow records the folder it was logged from in its MLmodel file, and
that folder is under TMPDIR, which on many machines names the user (``/scratch/<user>/``, ``~/tmp``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from automed.model_store import register_ensemble
from automed.tracking import Tracker


@pytest.mark.slow
def test_the_registered_mlmodel_names_no_temp_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    private = tmp_path / "scratch" / "jones"
    private.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(private))  # TMPDIR=/…/scratch/jones
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.json").write_text("{}")
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "x")
    registered = register_ensemble(
        tracker, tracker.start_run("train"), bundle, "automed-x", 0.5, 1, [1.0, 1.0, 1.0]
    )
    assert registered["version"] == "1" and registered["champion"] == "1"
    mlmodel = Path(
        mlflow.artifacts.download_artifacts(f"{registered['uri']}/MLmodel", dst_path=str(tmp_path / "d"))
    )
    text = mlmodel.read_text()
    assert "jones" not in text and "uri: <tmp>/model_bundle" in text
    assert sorted(p.name for p in private.iterdir()) == []  # and nothing is left there
