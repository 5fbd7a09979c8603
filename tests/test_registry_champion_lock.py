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


def _free(lock: Path) -> bool:
    """Whether another process would get ``lock`` now."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fh, fcntl.LOCK_UN)
            return True
        except BlockingIOError:
            return False


class _Registry:
    """Stands for MlflowClient: no champion yet; notes whether the store's lock was free when it was asked."""

    def __init__(self, lock: Path) -> None:
        self.lock = lock
        self.free_when_read: list[bool] = []
        self.aliases: dict[str, str] = {}

    def get_model_version_by_alias(self, name: str, alias: str) -> Any:
        self.free_when_read.append(_free(self.lock))
        raise MlflowException("Registered model alias champion not found.")

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self.aliases[alias] = version

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        pass


@pytest.mark.parametrize(
    ("tracking", "registry"),
    [
        ("sqlite:///{tmp}/mlflow.db", "sqlite:///{tmp}/mlflow.db"),  # one store for runs and models
        ("sqlite:///{tmp}/runs/mlflow.db", "sqlite:///{tmp}/shared/registry.db"),  # a registry of its own
        ("http://127.0.0.1:9", "sqlite:///{tmp}/shared/registry.db"),  # runs on a server
    ],
)
def test_the_champion_is_read_and_moved_under_the_registrys_lock(
    tracking: str, registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = registry.format(tmp=tmp_path)
    lock = Path(registry[len("sqlite:///") :]).with_name(f".{Path(registry).name}.lock")
    free_when_registered: list[bool] = []
    monkeypatch.setattr(mlflow, "start_run", lambda run_id: contextlib.nullcontext())
    monkeypatch.setattr("automed.tracking.still_answers", lambda *a, **kw: None)  # (no server at 127.0.0.1:9)
    logged = SimpleNamespace(model_id="m-1", model_uri="models:/m-1")
    monkeypatch.setattr(mlflow.pyfunc, "log_model", lambda **kw: logged)
    monkeypatch.setattr(model_store, "_without_temp_folder", lambda client, model_id, tmp: None)
    monkeypatch.setattr(
        mlflow,
        "register_model",
        lambda uri, name, **kw: (free_when_registered.append(_free(lock)), SimpleNamespace(version="1"))[1],
    )
    client = _Registry(lock)
    tracker = SimpleNamespace(
        uri=tracking.format(tmp=tmp_path),
        registry=registry,
        client=client,
        redactor=no_redaction(),
        check_store=lambda: None,
    )
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.json").write_text("{}")
    got = model_store.register_ensemble(tracker, "run", bundle, "m", 0.5, 1, [1.0, 1.0, 1.0])  # type: ignore[arg-type]
    assert got["champion"] == "1" and client.aliases == {"candidate": "1", "champion": "1"}
    assert client.free_when_read == [False] and free_when_registered == [False]


def test_a_stores_lock_is_taken_before_its_folder_exists(tmp_path: Path) -> None:
    from automed.tracking import store_lock

    with store_lock(f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"):
        assert not _free(tmp_path / "new" / ".mlflow.db.lock")


def test_a_registry_of_its_own_is_opened_under_its_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.tracking

    from automed import tracking

    lock = tmp_path / "shared" / ".registry.db.lock"
    opened: list[bool] = []

    class _Client:
        def __init__(self, tracking_uri: str, registry_uri: str) -> None:
            assert registry_uri == f"sqlite:///{tmp_path / 'shared' / 'registry.db'}"

        def get_experiment_by_name(self, name: str) -> Any:
            return SimpleNamespace(
                experiment_id="1", tags={tracking.EXPERIMENT_KIND: tracking.MODEL_TRAINING}
            )

        def search_registered_models(self, max_results: int) -> list[Any]:
            opened.append(_free(lock))  # MLflow builds (migrates) a new store on its first request
            return []

    monkeypatch.setattr(mlflow.tracking, "MlflowClient", _Client)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{tmp_path / 'shared' / 'registry.db'}")
    tracking.Tracker(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}", "x")
    assert opened == [False]
