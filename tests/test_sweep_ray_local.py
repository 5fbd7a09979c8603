"""``automed sweep`` on automed's own local Ray cluster: a grid with a failing trial, the Optuna engine, and bad engine
or resources refused (the 2-node cluster and the killed driver: test_sweep_ray.py). Tiny synthetic data and tiny
epochs: these check orchestration, not accuracy."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import yaml

from automed import api
from tests.test_sweep_ray import _check_mlflow, _runs, data

pytestmark = pytest.mark.slow
__all__ = ["data"]  # the module's fixture (the dataset and space the tests share)


def test_bad_engine_and_resources_fail_fast(data: tuple[Path, Path], tmp_path: Path) -> None:
    from automed.errors import ConfigError

    ds, space = data
    with pytest.raises(ConfigError) as e:
        api.sweep(ds, tmp_path / "W", space=space, engine="rey", show_progress=False)
    assert "Did you mean 'ray'?" in str(e.value)
    with pytest.raises(ConfigError) as e:
        api.sweep(ds, tmp_path / "W", space=space, trial_resources="cpu=0,gpu=0.5", show_progress=False)
    assert "--trial-resources" in str(e.value)
    assert not (tmp_path / "W").exists()


def test_grid_sweep_survives_a_failing_trial(
    data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A grid with one config whose patch does not fit the network: that trial fails (after one retry), the others
    finish, and the failure is visible in the table and in MLflow."""
    ds, _ = data
    plan = api.plan_dataset(ds, tmp_path / "P", preset="cpu", run_preprocess=False, show_progress=False).plan
    good = plan.configurations["3d_fullres"].patch_size
    strategy = tmp_path / "grid.yaml"
    strategy.write_text(
        yaml.safe_dump(
            {
                "patch_size": [good, [15, 15, 15]],
                "learning_rate": [0.01],
                "epochs": [2],
                "iterations_per_epoch": [2],
            }
        )
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # Ray's base folder for this test alone (another Ray on the machine, a benchmark say, leaves nothing in it);
    # short, as Ray's socket paths are limited to 107 bytes
    ray_tmp = Path(tempfile.mkdtemp(prefix="r", dir=tempfile.gettempdir()))
    monkeypatch.setenv("RAY_TMPDIR", str(ray_tmp))
    res = api.sweep(
        ds, tmp_path / "W", grid=strategy, folds=2, tracking_uri=uri, workers=1, show_progress=False
    )
    # automed's own Ray cluster kept its session files (logs naming paths) in a private folder under the base,
    # removed at the end: nothing is left there (Ray's own default, <base>/ray/session_*, would be)
    assert not any(ray_tmp.iterdir())
    ray_tmp.rmdir()
    table = res.table.set_index("trial")
    assert list(table.index) == ["g000", "g001"]
    assert table.loc["g000", "folds_done"] == 2 and table.loc["g001", "folds_done"] == 0
    by_key: dict[str, set[str]] = {}
    for o in res.outcomes:  # one outcome per (trial, fold) unit
        by_key.setdefault(o.key, set()).add(o.status)
    assert by_key == {"g000": {"complete"}, "g001": {"error"}}
    assert "divisible" in next(o.error for o in res.outcomes if o.key == "g001")
    assert res.best is not None and res.best["trial"] == "g000"
    runs = _runs(uri, "Synthetic")
    failed = [r for r in runs if r.data.tags.get("automed_key") == "g001"]
    assert len(failed) == 1 and failed[0].info.status == "FAILED"


def test_optuna_engine_same_objective_and_tracking(data: tuple[Path, Path], tmp_path: Path) -> None:
    """`--engine optuna`: local processes on a journal file, pruning instead of ASHA, same trial folders and runs."""
    ds, space = data
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = api.sweep(
        ds, tmp_path / "W", space=space, trials=4, folds=2, promote=1, engine="optuna", tracking_uri=uri,
        workers=1, show_progress=False,
    )  # fmt: skip
    wd = res.workdir
    assert (wd / "optuna" / "journal.log").is_file()
    assert len(res.table) == 4 and res.default is not None and res.default["folds_done"] == 2
    assert {o.key for o in res.outcomes} == set(res.table["trial"])
    assert all(o.status != "error" for o in res.outcomes), res.outcomes
    _check_mlflow(uri, wd, 2)
    # the fully cross-validated trials were compared (with their pairs) and postprocessing decided
    sel = json.loads((wd / "selection" / "selection.json").read_text())
    full = set(res.table[res.table["folds_done"] == 2]["trial"])
    assert {Path(m).name for row in sel["candidates"] for m in row["members"]} == full
    assert len(sel["candidates"]) == len(full) + len(full) * (len(full) - 1) // 2


@pytest.mark.parametrize("asked", [None, "5"])
def test_own_cluster_runs_trials_at_the_commands_priority(
    asked: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray starts its workers at nice 15: beside any other busy process a trial got a few percent of the CPU (a
    budgeted trial trained a fraction of its iterations). automed's own cluster runs them at the driver's priority,
    or as the user asked Ray (RAY_worker_niceness: that much nicer than the driver)."""
    import os

    import ray

    from automed.search.ray_engine import RayEngine

    assert not ray.is_initialized()  # (else no cluster would start here, and nothing would be checked)
    if asked is None:  # the tests' own setting (conftest) is not what counts
        monkeypatch.delenv("RAY_worker_niceness", raising=False)
    else:
        monkeypatch.setenv("RAY_worker_niceness", asked)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    engine = RayEngine(None, {"cpu": 1.0, "gpu": 0.0}, show_progress=False)
    try:
        assert engine.run_tasks(os.nice, [0]) == [min(os.nice(0) + int(asked or 0), 19)]
    finally:
        engine.close()
