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
