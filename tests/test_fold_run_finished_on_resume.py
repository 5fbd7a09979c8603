"""A fold whose work was done and logged (validation_metrics.json is written last) but whose process was stopped
before it ended its MLflow run - a killed driver of a Ray cluster's folds left it RUNNING, a stop in that moment
ended it KILLED with the others - is kept by ``--resume`` and its run ended FINISHED: no fold run was left RUNNING
under a finished training (tests/test_train_ray.py's killed driver saw it on a loaded machine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from automed import api
from automed.records import read_tracking
from automed.testing.synthetic import make_dataset
from automed.workdir import WorkDir


@pytest.mark.slow
@pytest.mark.parametrize("left", ["RUNNING", "KILLED"])
def test_a_finished_folds_open_run_is_ended_by_the_resume(tmp_path: Path, left: str) -> None:
    from mlflow.tracking import MlflowClient

    ds = make_dataset(tmp_path / "data", n_cases=4, shape=(12, 16, 14), seed=1)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("epochs: 1\niterations_per_epoch: 2\nval_iterations: 1\nnum_workers: 0\n")
    uri, wd = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "W"
    api.train(ds, wd, config=cfg, folds=2, tracking_uri=uri, workers=0, show_progress=False)
    # as a stop leaves it: fold 0 done and logged but its run not ended, fold 1 not validated, no model
    runs = read_tracking(WorkDir(wd).tracking)["fold_runs"]
    client = MlflowClient(tracking_uri=uri)
    client.update_run(runs["0"], status=left)
    (wd / "train" / "3d_fullres" / "fold_1" / "validation_metrics.json").unlink()
    (wd / "model.json").unlink()
    res = api.train(None, wd, resume=True, show_progress=False)
    assert sorted(res.fold_epochs) == [0, 1]
    exp = client.get_experiment_by_name("Synthetic")
    assert exp is not None
    statuses = {r.info.run_name: r.info.status for r in client.search_runs([exp.experiment_id])}
    assert statuses and set(statuses.values()) == {"FINISHED"}, statuses


def test_ending_a_finished_folds_run_is_best_effort(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A run the user deleted is left as it is (set_terminated on it had crashed the resume), a store that fails
    now is warned about, and the training goes on."""
    from automed.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path / 'm.db'}", "x")
    kept, deleted = tracker.start_run("kept"), tracker.start_run("deleted")
    tracker.client.delete_run(deleted)
    tracker.mark_finished(kept)
    tracker.mark_finished(deleted)
    assert tracker.client.get_run(kept).info.status == "FINISHED"
    assert tracker.client.get_run(deleted).info.lifecycle_stage == "deleted"

    def down(run_id: str) -> None:
        raise ConnectionError("the store went away")

    tracker.client.get_run = down  # type: ignore[method-assign]
    tracker.mark_finished(kept)
    assert "could not be ended FINISHED: the store went away" in caplog.text
