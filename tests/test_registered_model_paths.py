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


@pytest.mark.slow
def test_the_store_names_neither_the_login_nor_the_folder_it_was_made_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow tags every logged model with the login (``mlflow.user``, also sent to a remote server), and a new
    SQLite store's Default experiment took the artifact root ``./mlruns`` of the folder the first command ran in
    (a dataset's folder, named after a patient or study). Runs already said ``user_id`` unknown."""
    import getpass
    import sqlite3

    monkeypatch.setenv("USER", "DrMueller")
    monkeypatch.setenv("LOGNAME", "DrMueller")
    monkeypatch.setattr(getpass, "getuser", lambda: "DrMueller")
    here = tmp_path / "Study_SMITH"
    here.mkdir()
    monkeypatch.chdir(here)
    store = tmp_path / "store" / "mlflow.db"
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.json").write_text("{}")
    tracker = Tracker(f"sqlite:///{store}", "x")
    register_ensemble(tracker, tracker.start_run("train"), bundle, "automed-x", 0.5, 1, [1.0, 1.0, 1.0])
    with sqlite3.connect(store) as db:
        tables = [t for (t,) in db.execute("select name from sqlite_master where type = 'table'")]
        text = " ".join(str(row) for t in tables for row in db.execute(f"select * from {t}"))
    assert "logged_model_tags" in tables and "mlflow.user" in text  # the tag is there, without the login
    assert "DrMueller" not in text and "Study_SMITH" not in text
    assert not (here / "mlruns").exists()
