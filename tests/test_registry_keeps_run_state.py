"""Registering a finished training again (``automed select`` does) leaves its MLflow run as it was: MLflow's
fluent run had reopened it, ended it FINISHED at that moment (a 19-minute training showed 31) and FAILED when the
command was stopped or the upload failed, although the training had finished."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from automed.model_store import register_ensemble
from automed.tracking import Tracker


def _finished_run(tmp_path: Path) -> tuple[Tracker, str, int]:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "x")
    run = tracker.start_run("train")
    end = int(time.time() * 1000) - 600_000  # ended ten minutes ago
    tracker.client.set_terminated(run, "FINISHED", end)
    return tracker, run, end


def _bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.json").write_text("{}")
    return bundle


@pytest.mark.slow
@pytest.mark.parametrize("stopped", [False, True])
def test_a_finished_training_registered_again_keeps_its_status_and_end_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stopped: bool
) -> None:
    """Registered again, or stopped midway (SIGTERM or Ctrl-C during the upload: it had ended FAILED)."""
    import mlflow

    tracker, run, end = _finished_run(tmp_path)
    if stopped:

        def stop(*a: object, **k: object) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(mlflow, "register_model", stop)
    try:
        registered = register_ensemble(tracker, run, _bundle(tmp_path), "automed-x", 0.5, 1, [1.0, 1.0, 1.0])
        assert not stopped and registered["version"] == "1"
    except KeyboardInterrupt:
        assert stopped
    info = tracker.client.get_run(run).info
    assert (info.status, info.end_time) == ("FINISHED", end)


@pytest.mark.slow
def test_a_version_goes_to_the_trackers_registry_whatever_another_tracker_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed training's tracker has the work dir's recorded registry; a fold's tracker of the same process,
    made without it, pointed MLflow's fluent calls at the tracking store's registry, where register_model then
    put the version while the tags and aliases went to the recorded one."""
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    store, shared = f"sqlite:///{tmp_path / 'mlflow.db'}", f"sqlite:///{tmp_path / 'shared.db'}"
    tracker = Tracker(store, "x", registry=shared)
    run = tracker.start_run("train")
    Tracker(store, "x")  # a fold's, without the recorded registry
    registered = register_ensemble(tracker, run, _bundle(tmp_path), "automed-x", 0.5, 1, [1.0, 1.0, 1.0])
    assert registered["version"] == "1" and registered["champion"] == "1"
    theirs = MlflowClient(tracking_uri=store, registry_uri=shared)
    assert theirs.get_model_version_by_alias("automed-x", "champion").tags["cv_score"] == "0.500000"
    assert MlflowClient(tracking_uri=store, registry_uri=store).search_registered_models() == []
