"""``automed train --ray-address``: folds as Ray tasks on a 2-node loopback cluster (both nodes used), and a driver
killed mid-training then resumed without retraining the folds it had finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from automed import api
from automed.testing.synthetic import make_dataset
from tests.conftest import kill_group

pytestmark = pytest.mark.slow


@pytest.fixture()
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Two raylets on 127.0.0.1 with 2 CPUs each."""
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # (an earlier test's ray.init may have set RAY_AUTH_MODE in this process: the cluster and the driver run
    # without token authentication, whose warnings the test counts)
    for var in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    c.add_node(num_cpus=2)
    c.wait_for_nodes()
    try:
        yield str(c.address)
    finally:
        c.shutdown()


def _fold_workers() -> list[str]:
    """Ray worker processes running a fold task (process title ``ray::_run_task``) that have not exited."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text, cmd = stat.read_text(), (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if b"ray::_run_task" in cmd and text[text.rfind(")") + 2] not in "ZX":
            out.append(stat.parent.name)
    return out


def _fold_runs(uri: str) -> list[dict[str, str]]:
    """The fold runs' tags, once every run of the experiment has ended FINISHED (no RUNNING one left by the kill)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("Synthetic")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    assert {r.info.run_name: r.info.status for r in runs if r.info.status != "FINISHED"} == {}
    return [r.data.tags for r in runs if "fold" in r.data.tags]


@pytest.mark.timeout(1800)  # its first run, the kill and the resume (pyproject's 900 s: one phase)
def test_folds_on_a_cluster_survive_a_killed_driver(
    cluster: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    """Also: the cluster warnings are said once (the node check and the folds each connected, each said them), and
    the driver shows each fold's epochs and its end (the folds' own output stays on their nodes: nothing was shown)."""
    ds = make_dataset(tmp_path / "data", n_cases=6, shape=(12, 24, 24), seed=9)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("epochs: 4\niterations_per_epoch: 3\nval_iterations: 1\nnum_workers: 0\n")
    wd, uri = tmp_path / "W", f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "automed.cli", "-q", "train", str(ds), "-o", str(wd), "--folds", "3",
           "--config", str(cfg), "--ray-address", cluster, "--trial-resources", "cpu=2", "--tracking-uri", uri,
           "--workers", "0"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    request.addfinalizer(lambda: kill_group(proc.pid))  # a failed test leaves no driver running
    folds = wd / "train" / "3d_fullres"
    end = (
        time.monotonic() + 900
    )  # a hang guard under the test's timeout: beside other tests a fold took 300 s
    while not list(folds.glob("fold_*/validation_metrics.json")):  # one fold finished: kill the driver now
        assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.monotonic() < end, "no fold finished in time"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    end = time.monotonic() + 60
    while _fold_workers():  # Ray kills the dead driver's tasks; wait until none writes any more
        assert time.monotonic() < end, f"fold tasks still running: {_fold_workers()}"
        time.sleep(0.1)
    finished = {p.parent.name: (p.parent / "checkpoint_final.pt").stat().st_mtime_ns
                for p in folds.glob("fold_*/validation_metrics.json")}  # fmt: skip
    assert 1 <= len(finished) < 3 and not (wd / "model.json").exists()
    said = (tmp_path / "first.log").read_text()
    for warning in (
        "without RAY_AUTH_MODE=token: a cluster with token",
        "let this driver in without a token",
    ):
        assert said.count(warning) == 1, said[-3000:]

    left = {f"fold_{k}" for k in range(3)} - set(finished)  # the folds the resume trains (or only validates)
    before = {n: len(json.loads(p.read_text())["history"]) if (p := folds / n / "progress.json").is_file() else 0
              for n in left}  # fmt: skip

    capsys.readouterr()
    res = api.train(None, wd, resume=True, ray_address=cluster, show_progress=True)
    shown = capsys.readouterr().out
    assert "  epoch 4/4  it 12/12  " in shown, shown[-3000:]  # the fold that waited for a node trained here
    for name, done in before.items():
        label = f"3d_fullres {name.replace('_', ' ')}"
        assert f"{label}  finished: 4 epochs, validation dice_fg_mean " in shown, shown[-3000:]
        if done < 4:  # its epochs from its checkpoint on, the earlier ones not again
            assert f"{label}  epoch 4/4  it 12/12" in shown and f"{label}  epoch {done + 1}/4" in shown
            assert done == 0 or f"{label}  epoch {done}/4" not in shown
    for name in finished:  # kept, not trained again: nothing shown for them
        assert f"3d_fullres {name.replace('_', ' ')}  " not in shown
    assert sorted(res.fold_epochs) == [0, 1, 2] and res.model.folds == [0, 1, 2]
    for name, mtime in finished.items():  # finished folds were not trained again
        assert (folds / name / "checkpoint_final.pt").stat().st_mtime_ns == mtime
    runs = _fold_runs(uri)
    assert sorted(t["fold"] for t in runs) == ["0", "1", "2"]
    nodes = {t.get("ray.node") for t in runs}
    assert len(nodes) == 2 and None not in nodes, runs  # each node trained (one 2-CPU fold per node at once)
