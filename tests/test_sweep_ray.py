"""``automed sweep`` with Ray Tune: a 2-node loopback cluster with 4 concurrent trials, MLflow contents, and a
driver killed mid-sweep then resumed (automed's own local cluster, the grid and the Optuna engine:
test_sweep_ray_local.py, a module of its own so that a test worker runs it beside these). Tiny synthetic data and tiny epochs: these check orchestration, not accuracy."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from automed import api
from automed.testing.synthetic import make_dataset
from tests.conftest import kill_group

pytestmark = pytest.mark.slow

SPACE = {
    "schema_version": 1,
    "name": "tiny",
    "fixed": {"epochs": 3, "iterations_per_epoch": 3, "val_iterations": 1, "num_workers": 0},
    "parameters": {
        "optimizer": {"type": "categorical", "choices": ["auto", "sgd", "adamw"], "default": "auto"},
        "lr_sgd": {
            "type": "float",
            "target": "learning_rate",
            "low": 0.003,
            "high": 0.03,
            "log": True,
            "when": {"optimizer": "sgd"},
        },
        "lr_adamw": {
            "type": "float",
            "target": "learning_rate",
            "low": 0.0003,
            "high": 0.003,
            "log": True,
            "when": {"optimizer": "adamw"},
        },
        "batch_size_scale": {"type": "float", "low": 0.5, "high": 2.0},
    },
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sweep")
    ds = make_dataset(root / "ds", n_cases=6, shape=(12, 24, 24), seed=3)
    space = root / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE, sort_keys=False))
    return ds, space


def _runs(uri: str, experiment: str) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    return list(client.search_runs([exp.experiment_id], max_results=1000))


def _check_mlflow(uri: str, wd: Path, n_folds: int) -> dict[str, Any]:
    """Every trial folder has exactly one trial run under the sweep (a duplicate trial, which trains nothing, none),
    every trained fold exactly one fold run under its trial, all ended; nothing is duplicated or left RUNNING."""
    runs = _runs(uri, "Synthetic")
    by_id = {r.info.run_id: r for r in runs}
    sweeps = [r for r in runs if r.info.run_name.startswith("sweep-")]
    assert len(sweeps) == 1
    sweep = sweeps[0]
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == sweep.info.run_id]
    keys = sorted(
        p.name
        for p in (wd / "trials").iterdir()
        if not json.loads((p / "trial.json").read_text()).get("duplicate_of")
    )
    assert sorted(r.data.tags["automed_key"] for r in trials) == keys
    for t in trials:
        folds = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == t.info.run_id]
        names = [r.info.run_name for r in folds]
        assert len(names) == len(set(names)), names
        result = wd / "trials" / t.data.tags["automed_key"] / "result.json"
        done = json.loads(result.read_text())["folds"] if result.is_file() else {}
        assert {f"trial-{t.data.tags['automed_key']}-fold{k}" for k in done} <= set(names)
        for f in folds:
            assert "pseudo_dice" in f.data.metrics and "train_loss" in f.data.metrics
        if len(done) == n_folds:
            assert "cv_dice_fg_mean" in t.data.metrics
    assert all(r.info.status in ("FINISHED", "FAILED") for r in runs), [
        (r.info.run_name, r.info.status) for r in runs
    ]
    assert sweep.info.status == "FINISHED" and "best_cv_dice_fg_mean" in sweep.data.metrics
    assert all(by_id for _ in [0])
    return {"sweep": sweep, "trials": trials}


def test_two_node_cluster(data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two raylets on 127.0.0.1, 2 CPUs each, 1 CPU per trial: 4 trials at once, spread over both nodes."""
    import ray
    from ray.cluster_utils import Cluster

    ds, space = data
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep both nodes on loopback
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "resources": {"head": 1}, "include_dashboard": False},
    )
    cluster.add_node(num_cpus=2, resources={"worker": 1})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    try:
        cluster.wait_for_nodes()
        from automed.errors import ConfigError
        from automed.search.ray_engine import RayEngine

        engine = RayEngine(cluster.address, {"cpu": 1.0, "gpu": 0.0}, show_progress=False)
        with pytest.raises(ConfigError) as e:  # every node is probed; each one that cannot read says so
            engine.check_nodes([str(tmp_path / "missing")], str(tmp_path))
        assert len(e.value.problems) == 2 and all("cannot read" in p.value for p in e.value.problems)
        assert e.value.problems[0].file.startswith("node ")
        res = api.sweep(
            ds, tmp_path / "W", space=space, trials=4, folds=2, promote=1, ray_address=cluster.address,
            trial_resources="cpu=1", tracking_uri=uri, workers=1, show_progress=False,
        )  # fmt: skip
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()
        cluster.shutdown()
    wd = res.workdir
    table = res.table
    assert len(table) == 4
    ran_on = {n for v in table["node"] if v for n in v.split(",")}  # each trial: the nodes its folds ran on
    assert len(nodes) == 2 and ran_on == nodes  # the folds of the trials ran on both nodes
    assert json.loads((wd / "sweep.json").read_text())["concurrency"] == 4
    assert res.best is not None and (wd / "best_config.yaml").is_file()
    cfg = yaml.safe_load((wd / "best_config.yaml").read_text())
    from automed.train.config import TrainConfig

    assert TrainConfig.model_validate(cfg).epochs == 3  # loadable by `automed train --config`
    assert res.default is not None and res.default["folds_done"] == 2  # the default always gets full CV
    _check_mlflow(uri, wd, 2)


def _live_group_members(pgid: int) -> list[str]:
    """Processes of process group ``pgid`` that have not exited (zombies do not count), as "pid name"."""
    proc = Path("/proc")
    if not proc.is_dir():  # no procfs: ask the kernel whether anything of the group is left
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [f"group {pgid}"]
    out = []
    for stat in proc.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # exited meanwhile
            continue
        fields = text[text.rfind(")") + 2 :].split()  # after "pid (name) ": state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            out.append(f"{stat.parent.name} {text[text.find('(') + 1 : text.rfind(')')]}")
    return out


def _wait_group_exited(pgid: int, timeout: float) -> None:
    """Wait until every process of a killed process group (the driver and the Ray processes it started) is gone."""
    deadline = time.monotonic() + timeout
    while left := _live_group_members(pgid):
        assert time.monotonic() < deadline, f"still running {timeout:.0f} s after SIGKILL: {left}"
        time.sleep(0.05)


def _screened(result: Path) -> bool:
    try:
        return "0" in json.loads(result.read_text())["folds"]
    except (OSError, ValueError, KeyError):
        return False


def start_sweep(
    ds: Path, wd: Path, space: Path, uri: str, trials: int, log: Path, request: pytest.FixtureRequest
) -> subprocess.Popen[bytes]:
    """``automed sweep`` (Ray engine, its own local cluster; 2 folds, 1 promoted) as a process group of its own,
    output to ``log``, stopped when the test ends. The killed driver cannot remove its Ray folder: a base of the
    test's own, removed at the end (a Ray process outside the driver's group may still create folders in it for a
    moment); short: Ray's sockets' paths are limited to 107 bytes."""
    ray_tmp = tempfile.mkdtemp(prefix="r", dir=tempfile.gettempdir())
    request.addfinalizer(lambda: shutil.rmtree(ray_tmp, ignore_errors=True))  # also when the test fails
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": ray_tmp}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "automed.cli", "sweep", str(ds), "-o", str(wd), "--space", str(space),
           "--trials", str(trials), "--folds", "2", "--promote", "1", "--tracking-uri", uri, "--workers", "1",
           "--scheduler", "none"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )
    request.addfinalizer(lambda: kill_group(proc.pid))  # a failed test leaves no driver running
    return proc


@pytest.mark.timeout(1800)  # its first run, the kill and the resume (pyproject's 900 s: one phase)
def test_resume_after_killed_driver(
    data: tuple[Path, Path], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    ds, space = data
    wd = tmp_path / "W"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = start_sweep(ds, wd, space, uri, 4, tmp_path / "first.log", request)
    deadline = time.time() + 900  # a hang guard under the test's timeout (two cores shared with other tests)
    finished: dict[str, float] = {}
    while time.time() < deadline and proc.poll() is None:
        results = list((wd / "trials").glob("*/result.json")) if (wd / "trials").is_dir() else []
        done = [p for p in results if _screened(p)]
        if len(done) >= 2:
            finished = {p.parent.name: p.stat().st_mtime_ns for p in done}
            break
        time.sleep(0.2)
    assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    assert finished, "no trial finished in time"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
    proc.wait()
    _wait_group_exited(proc.pid, 60)  # nothing of the first run writes or serves while the resume starts
    snapshot = {k: (wd / "trials" / k / "result.json").read_text() for k in finished}
    ckpts = {
        k: (wd / "trials" / k / "train" / "3d_fullres" / "fold_0" / "checkpoint_final.pt").stat().st_mtime_ns
        for k in finished
    }
    assert not json.loads((wd / "sweep.json").read_text())["stages"].get("done")

    res = api.sweep(None, wd, resume=True, show_progress=False)
    assert json.loads((wd / "sweep.json").read_text())["stages"]["done"]
    assert len(res.table) == 4
    for (
        key,
        text,
    ) in snapshot.items():  # finished trials were not re-run (their screening result is untouched)
        before = json.loads(text)["folds"]["0"]
        after = json.loads((wd / "trials" / key / "result.json").read_text())["folds"]["0"]
        assert after == before
        ck = wd / "trials" / key / "train" / "3d_fullres" / "fold_0" / "checkpoint_final.pt"
        assert ck.stat().st_mtime_ns == ckpts[key]  # fold 0 was not trained again
    assert (wd / "best_config.yaml").is_file()
    _check_mlflow(uri, wd, 2)
