"""``MLFLOW_REGISTRY_URI`` set by the user (a registry apart from the tracking store) is where automed registers
and looks models up; without it the tracking store holds the registry."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import mlflow
import mlflow.tracking
import pytest

import automed.tracking
from automed.model_store import download_model
from automed.tracking import EXPERIMENT_KIND, MODEL_TRAINING, Tracker, registry_uri, resolve_uri


class _Client:
    made: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, **kw: Any) -> None:
        _Client.made.append(kw)

    def get_experiment_by_name(self, name: str) -> Any:
        return SimpleNamespace(experiment_id="1", tags={EXPERIMENT_KIND: MODEL_TRAINING})

    def search_registered_models(self, max_results: int) -> list[Any]:  # (a registry of its own is opened)
        return []


SET: list[str] = []  # what automed gave mlflow.set_registry_uri


@pytest.fixture()
def registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    monkeypatch.setattr(mlflow.tracking, "MlflowClient", _Client)
    monkeypatch.setattr(mlflow, "set_registry_uri", SET.append)  # mlflow's own setting is left alone
    # no server at the http:// stores these tests name: the probe before a request is not what they judge
    monkeypatch.setattr(automed.tracking, "still_answers", lambda *a, **kw: None)
    _Client.made.clear()
    SET.clear()
    return uri


def test_the_tracker_registers_in_the_users_registry(registry: str, tmp_path: Path) -> None:
    Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "x")
    assert _Client.made[-1]["registry_uri"] == registry and [registry] == SET


def test_a_models_uri_is_looked_up_in_the_users_registry(
    registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    def download(artifact_uri: str, dst_path: str) -> str:
        seen.append(SET[-1])  # the registry in force when the model is fetched
        (Path(dst_path) / "model.json").write_text("{}")
        return dst_path

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", download)
    dest = tmp_path / "d"
    dest.mkdir()
    download_model("models:/m@champion", dest, "http://127.0.0.1:9")  # (a server: no SQLite store to make)
    assert seen == [registry]


def test_a_store_opened_earlier_in_the_process_does_not_become_the_users_choice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow copies the URIs it is given into MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI; a second store of the same
    process (a second training from Python) must not read them as the user's."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setattr(mlflow.tracking, "MlflowClient", _Client)
    monkeypatch.chdir(tmp_path)
    first = f"sqlite:///{tmp_path / 'first' / 'mlflow.db'}"
    Tracker(first, "x")
    assert mlflow.get_tracking_uri() == first and mlflow.get_registry_uri() == first  # MLflow's own: set
    assert resolve_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"  # the default store, not the first one's
    second = f"sqlite:///{tmp_path / 'second' / 'mlflow.db'}"
    assert registry_uri(second) == second


def test_an_export_attaches_to_the_version_in_the_users_registry(
    registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`automed export models:/...` found the version in the tracking store, not in MLFLOW_REGISTRY_URI's."""
    from automed.export.mlflow_attach import attach_export

    class StopError(Exception):
        pass

    def version(client: Any, name: str, version: str) -> Any:
        raise StopError  # the client is made; what follows needs a real registry

    monkeypatch.setattr(automed.tracking, "model_version", version)
    with pytest.raises(StopError):
        attach_export(Path("unused"), {}, "card", "models:/m@champion", "http://127.0.0.1:9")
    assert _Client.made[-1]["registry_uri"] == registry


def test_a_review_logged_to_a_registered_models_run_looks_in_the_users_registry(
    registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import automed.workflow.review_log as review_log

    def version(client: Any, name: str, version: str) -> Any:
        return SimpleNamespace(run_id="")  # no run: refused after the lookup

    monkeypatch.setattr(review_log, "model_version", version)
    with pytest.raises(Exception, match="names no run"):
        review_log.training_run("models:/m@champion", "http://127.0.0.1:9")
    assert _Client.made[-1]["registry_uri"] == registry


def test_a_registry_server_that_does_not_answer_is_refused_before_any_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A registry server that was down failed the command only at registration, after the whole training."""
    import socket

    from automed import api
    from automed.errors import ConfigError
    from automed.testing.synthetic import make_dataset
    from automed.tracking_uri import check_tracking_uri

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"http://127.0.0.1:{port}")
    ds = make_dataset(tmp_path / "ds", n_cases=4, shape=(8, 16, 16), seed=1)
    with pytest.raises(ConfigError) as err:
        api.train(ds, tmp_path / "W", epochs=1, folds=2, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                  show_progress=False)  # fmt: skip
    problem = err.value.problems[0]
    assert problem.file == "MLFLOW_REGISTRY_URI" and f"127.0.0.1:{port}" in problem.value
    assert "unset MLFLOW_REGISTRY_URI" in problem.fix
    assert (
        not (tmp_path / "W").exists() and not (tmp_path / "mlflow.db").exists()
    )  # nothing planned or tracked
    # `automed ui` serves the tracking store: the registry is not its own
    check_tracking_uri(None, registry=False)

    def past_the_checks(device: object) -> None:
        raise RuntimeError("past the store checks")

    monkeypatch.setattr("automed.workflow.train.usable_device", past_the_checks)
    with pytest.raises(RuntimeError, match="past the store checks"):  # a training that registers nothing
        api.train(ds, tmp_path / "W", epochs=1, folds=2, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                  register=False, show_progress=False)  # fmt: skip
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "sqlit:///r.db")
    with pytest.raises(ConfigError) as err:
        check_tracking_uri(None, resume=True)  # a resume registers too
    assert err.value.problems[0].file == "MLFLOW_REGISTRY_URI" and "sqlite" in str(err.value)


def test_a_registration_stopped_before_its_bundle_tag_is_replaced_not_doubled(tmp_path: Path) -> None:
    """A training stopped (SIGTERM too) between MLflow's register_model and the bundle tag left version 1 without tags,
    and its resume registered version 2: two versions of one model on one run."""
    from mlflow.tracking import MlflowClient

    from automed.model_store import REGISTERING
    from automed.select.register import BUNDLE_TAG, _drop_unfinished

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    run = client.create_run(client.create_experiment("e")).info.run_id
    other = client.create_run(client.get_experiment_by_name("e").experiment_id).info.run_id
    client.create_registered_model("automed-x")
    done = client.create_model_version("automed-x", "file:///b", run_id=run, tags={BUNDLE_TAG: "abc"})
    old = client.create_model_version(
        "automed-x", "file:///b", run_id=run
    )  # an earlier automed's: no tags, kept
    stopped = client.create_model_version("automed-x", "file:///b", run_id=run, tags={REGISTERING: "true"})
    foreign = client.create_model_version("automed-x", "file:///b", run_id=other, tags={REGISTERING: "true"})
    _drop_unfinished(client, "automed-x", run)
    left = {v.version for v in client.search_model_versions("name='automed-x'")}
    assert left == {done.version, old.version, foreign.version} and stopped.version not in left
    _drop_unfinished(client, "automed-y", run)  # no such model: nothing to do


def test_a_work_dirs_recorded_registry_is_used_without_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A training registered in MLFLOW_REGISTRY_URI's registry; a later `automed select` (or --resume) without the
    variable registered into the tracking store's own registry, and the shared one's champion missed it."""
    import json

    from automed.privacy import no_redaction
    from automed.select import register

    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    store, shared = f"sqlite:///{tmp_path / 'mlflow.db'}", f"sqlite:///{tmp_path / 'reg' / 'registry.db'}"
    assert registry_uri(store) == store and registry_uri(store, shared) == shared
    monkeypatch.setenv(
        "MLFLOW_REGISTRY_URI", f"sqlite:///{tmp_path / 'other.db'}"
    )  # set now: the user's choice
    assert registry_uri(store, shared) == f"sqlite:///{tmp_path / 'other.db'}"
    monkeypatch.delenv("MLFLOW_REGISTRY_URI")
    wd = tmp_path / "W"
    wd.mkdir()
    (wd / "tracking.json").write_text(json.dumps({"schema_version": 1, "uri": store, "experiment": "x",
                                                  "parent_run_id": "r", "registry": shared}))  # fmt: skip
    made: list[tuple[Any, ...]] = []

    def tracker(*args: Any) -> Any:
        made.append(args)
        raise RuntimeError("stop here")

    monkeypatch.setattr(register, "Tracker", tracker)
    with pytest.raises(RuntimeError, match="stop here"):
        register.reregister(wd, 0.5, no_redaction())
    assert made[0][0] == store and made[0][3] == shared
