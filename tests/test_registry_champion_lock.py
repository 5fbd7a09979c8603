"""Two registrations of one model at once on a SQLite store: each reads the champion and moves it while holding the
store's lock, so the second compares with the champion the first left (not the one before it) and a worse model
is never crowned over a better one registered a moment earlier."""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlflow
import mlflow.pyfunc
import pytest
from mlflow.exceptions import MlflowException

from automed import model_store
from automed.privacy import no_redaction


class _Registry:
    """Stands for MlflowClient: no champion yet; notes whether the store's lock was free when it was asked."""

    def __init__(self, lock: Path) -> None:
        self.lock = lock
        self.free_when_read: list[bool] = []
        self.aliases: dict[str, str] = {}

    def get_model_version_by_alias(self, name: str, alias: str) -> Any:
        with self.lock.open("a") as fh:  # what another process's attempt at the lock would find
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fh, fcntl.LOCK_UN)
                self.free_when_read.append(True)
            except BlockingIOError:
                self.free_when_read.append(False)
        raise MlflowException("Registered model alias champion not found.")

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self.aliases[alias] = version

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        pass


def test_the_champion_is_read_and_moved_under_the_stores_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mlflow, "start_run", lambda run_id: contextlib.nullcontext())
    logged = SimpleNamespace(model_id="m-1", model_uri="models:/m-1")
    monkeypatch.setattr(mlflow.pyfunc, "log_model", lambda **kw: logged)
    monkeypatch.setattr(model_store, "_without_temp_folder", lambda client, model_id, tmp: None)
    monkeypatch.setattr(mlflow, "register_model", lambda uri, name: SimpleNamespace(version="1"))
    client = _Registry(tmp_path / ".mlflow.db.lock")
    tracker = SimpleNamespace(
        uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        client=client,
        redactor=no_redaction(),
        check_store=lambda: None,
    )
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.json").write_text("{}")
    got = model_store.register_ensemble(tracker, "run", bundle, "m", 0.5, 1, [1.0, 1.0, 1.0])  # type: ignore[arg-type]
    assert got["champion"] == "1" and client.aliases == {"candidate": "1", "champion": "1"}
    assert client.free_when_read == [False]
