"""A sweep stopped or left with nothing to run ends as it should (found in review): Ctrl-C on the Ray engine stops
the sweep (Tune's own handler had ended the stage quietly and the sweep went on), a stage of no units runs nothing
(a Tune grid of none had crashed), and a stop during the report and selection ends the sweep's MLflow run."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from automed.search.context import SweepContext
from automed.testing.synthetic import make_dataset
from tests.test_sweep_ray import start_sweep


@pytest.mark.slow  # imports Ray (8 s): make test-fast stays under 3 minutes
def test_the_ray_engine_runs_no_tuner_for_no_units(tmp_path: Path) -> None:
    """Nothing to promote (--promote 0 without a default trial, every screened trial failed or stopped): the Ray
    engine's promotion had built a Tune grid of no points and failed with "IndexError: pop from empty list"."""
    from automed.search.ray_engine import RayEngine

    ctx = SweepContext(str(tmp_path), "ds", {}, {}, {}, 2, "sqlite:///x.db", "e", "r")
    engine = RayEngine(None, {"cpu": 1.0, "gpu": 0.0}, None, False)
    assert engine.evaluate(lambda *a: {}, ctx, [], 1, 0, False) == []
    assert not (tmp_path / "ray").exists()  # no Tuner, no cluster


SPACE = {
    "schema_version": 1,
    "name": "tiny",
    "fixed": {"epochs": 30, "iterations_per_epoch": 3, "val_iterations": 1, "num_workers": 0},
    "parameters": {"learning_rate": {"type": "float", "low": 0.001, "high": 0.01, "log": True}},
}


def _sweep_status(uri: str) -> list[tuple[str, str]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("Synthetic")
    assert exp is not None
    return sorted((r.info.run_name, r.info.status) for r in client.search_runs([exp.experiment_id]))


def test_a_sweep_stopped_during_its_report_ends_its_run_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C (or an error) in the report and selection, which run long on real data, left the sweep's MLflow run
    RUNNING for good."""
    import automed.workflow.sweep as sweep_mod
    from automed import api

    ds = make_dataset(tmp_path / "ds", n_cases=4, shape=(8, 12, 12), seed=1)

    def stopped(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(
        sweep_mod, "stage_search", lambda *a, **k: []
    )  # no training: the report is what stops
    monkeypatch.setattr(sweep_mod, "_finish", stopped)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(KeyboardInterrupt):
        api.sweep(ds, tmp_path / "W", space=_space(tmp_path), trials=2, folds=2, engine="optuna",
                  tracking_uri=uri, show_progress=False)  # fmt: skip
    (name, status), *_ = _sweep_status(uri)
    assert name.startswith("sweep-") and status == "KILLED"


def _space(folder: Path) -> Path:
    space = folder / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE, sort_keys=False))
    return space


@pytest.mark.slow
def test_ctrl_c_stops_a_ray_sweep(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Ctrl-C (SIGINT to the foreground process group) during the Ray engine's search: Tune's own handler ended the
    search quietly, the sweep marked it done and went on to promote (trials not yet started were lost for a
    resume). Now it stops as the Optuna engine's does: exit 130, the search not done, the sweep's run KILLED."""
    ds = make_dataset(tmp_path / "ds", n_cases=4, shape=(8, 12, 12), seed=1)
    space = _space(tmp_path)
    wd, uri = tmp_path / "W", f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = start_sweep(ds, wd, space, uri, 3, tmp_path / "sweep.log", request)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:  # a trial's fold is training
        if list(wd.glob("trials/*/train/*/fold_0/progress.json")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, (tmp_path / "sweep.log").read_text()[-3000:]
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    assert proc.wait(timeout=300) == 130, (tmp_path / "sweep.log").read_text()[-3000:]
    stages = json.loads((wd / "sweep.json").read_text())["stages"]
    assert not stages.get("search") and not stages.get("done"), stages
    statuses = dict(_sweep_status(uri))
    assert [s for n, s in statuses.items() if n.startswith("sweep-")] == ["KILLED"], statuses
    assert "RUNNING" not in statuses.values(), statuses
