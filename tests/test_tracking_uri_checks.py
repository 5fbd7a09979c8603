"""Tracking URIs that could only fail after planning and preprocessing (or hold nothing after the command) are
refused before any work, with the form to write; ``MLFLOW_TRACKING_URI`` is checked as ``--tracking-uri`` is."""

from __future__ import annotations

from pathlib import Path

import pytest

from automed import api
from automed.errors import ConfigError
from automed.testing.synthetic import make_dataset
from automed.tracking import Tracker, check_tracking_uri, resolve_uri


@pytest.mark.parametrize(
    ("uri", "fix"),
    [
        ("sqlite://mlflow.db", "write sqlite:///mlflow.db"),
        ("sqlite:/tmp/x.db", "sqlite:////tmp/x.db (absolute)"),
        ("sqlite://", "name a file"),
        ("sqlite:///:memory:", "name a file"),
    ],
)
def test_a_sqlite_url_out_of_form_or_in_memory_is_refused(uri: str, fix: str) -> None:
    with pytest.raises(ConfigError, match="--tracking-uri") as err:
        check_tracking_uri(uri)
    assert fix in str(err.value)


def test_a_folder_store_is_refused_unless_mlflow_is_told_to_take_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    for uri in ("mlruns", "file:///srv/mlruns"):
        with pytest.raises(ConfigError, match="MLFLOW_ALLOW_FILE_STORE=true") as err:
            check_tracking_uri(uri)
        assert "sqlite:///mlflow.db" in str(err.value)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    check_tracking_uri("mlruns")


def test_a_typo_in_mlflow_tracking_uri_is_refused_before_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_dataset(tmp_path / "d", n_cases=2, shape=(8, 8, 8))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlit:///x.db")
    with pytest.raises(ConfigError, match=r"MLFLOW_TRACKING_URI: a tracking URI names an MLflow store"):
        api.train(data, tmp_path / "W", show_progress=False)
    assert not (tmp_path / "W").exists()


def test_a_store_in_a_read_only_folder_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from automed import tracking_uri

    shelf = tmp_path / "shelf"  # (a read-only mount: root passes chmod, so access() says so here)
    shelf.mkdir()
    access = os.access
    monkeypatch.setattr(tracking_uri.os, "access", lambda p, mode: Path(p) != shelf and access(p, mode))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(shelf)
    with pytest.raises(
        ConfigError, match=r"--tracking-uri: a SQLite store .*can be written.*shelf \(read-only\)"
    ):
        Tracker(resolve_uri(), "x")  # the default store, in the current folder
    with pytest.raises(ConfigError, match=r"--tracking-uri: a SQLite store and its folder can be written"):
        check_tracking_uri(f"sqlite:///{shelf / 'new' / 'mlflow.db'}")  # the folder it would make is in shelf
    check_tracking_uri(f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}")


@pytest.mark.parametrize("name", ["databricks", "databricks-uc", "uc"])
def test_the_bare_store_names_mlflow_takes_are_not_folder_stores(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    check_tracking_uri(name)  # Databricks' usual --tracking-uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", name)
    check_tracking_uri(None)


def test_a_resume_does_not_check_mlflow_tracking_uri_it_will_not_use(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for v in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # the shell's server, down
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_URI: the tracking server answers"):
        check_tracking_uri(None)
    check_tracking_uri(None, resume=True)  # the work dir's own store is what a resume opens
    from automed import api
    from automed.errors import ArtifactError

    with pytest.raises(ArtifactError):  # train --resume reaches the work dir (missing here), not the variable
        api.train(None, tmp_path / "W", resume=True, show_progress=False)
