"""Connecting to an existing Ray cluster (``--ray-address``, ``RAY_ADDRESS``): a refused connection (Ray 2.60's
token authentication, a wrong address) is a ConfigError naming the address, the rule and the fix. ``ray.init`` is
replaced: no cluster is started."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from automed.errors import ConfigError

ray = pytest.importorskip("ray")


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RAY_AIR_NEW_OUTPUT", "0")  # RayEngine sets these: restored after the test
    monkeypatch.setenv("RAY_DEDUP_LOGS", "0")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    # ray.init is replaced below: no head to reach (an address nothing answers at: test_ray_address_check.py)
    monkeypatch.setattr("automed.search.ray_connect.check_reachable", lambda address: None)
    monkeypatch.setattr("automed.search.ray_connect._WARNED", set())  # each test's connections say them anew


def _refuse(exc: BaseException) -> Any:
    def init(*args: Any, **kwargs: Any) -> None:
        raise exc

    return init


def test_a_refused_training_connection_says_to_set_token_authentication(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from automed.workflow.fold_runs import run_jobs_on_ray

    monkeypatch.setattr(
        ray, "init", _refuse(ConnectionError("Failed to connect to Ray cluster at 10.0.0.7:6379"))
    )
    with caplog.at_level(logging.WARNING, logger="automed"), pytest.raises(ConfigError) as err:
        run_jobs_on_ray(
            [], "10.0.0.7:6379", {"cpu": 1.0, "gpu": 0.0}, None, ["/d", "/w"]
        )  # automed train's path
    (problem,) = err.value.problems
    assert str(err.value).startswith("cannot connect to the Ray cluster at 10.0.0.7:6379:\n")
    assert problem.file == "--ray-address" and problem.value.startswith(
        "10.0.0.7:6379 (ConnectionError: Failed"
    )
    assert (
        "Ray 2.60 cluster started with `ray start`" in problem.rule and "token authentication" in problem.rule
    )
    assert "RAY_AUTH_MODE=token" in problem.fix and "RAY_AUTH_TOKEN_PATH" in problem.fix
    assert "RAY_AUTH_TOKEN=" in problem.fix and "check the address" in problem.fix
    assert isinstance(err.value.__cause__, ConnectionError)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "10.0.0.7:6379 without RAY_AUTH_MODE=token: a cluster with token authentication refuses" in warning
    assert "if the cluster was started without" not in warning


def test_with_token_mode_set_the_fix_is_the_clusters_own_token(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from ray.exceptions import AuthenticationError

    from automed.search.ray_engine import RayEngine

    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")
    missing = AuthenticationError("Token authentication is enabled but no authentication token was found")
    monkeypatch.setattr(ray, "init", _refuse(missing))
    with caplog.at_level(logging.WARNING, logger="automed"), pytest.raises(ConfigError) as err:
        RayEngine(None, {"cpu": 1.0}, show_progress=False)
    (problem,) = err.value.problems
    assert problem.file == "RAY_ADDRESS" and problem.value.startswith("head:6379 (AuthenticationError: Token")
    assert "the cluster's own token" in problem.fix and "`ray get-auth-token`" in problem.fix
    assert caplog.records == []  # token mode: nothing to warn about before connecting


def test_a_cluster_that_lets_a_driver_in_without_a_token_is_named_open(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from automed.search.ray_connect import connect

    calls: list[str | None] = []
    monkeypatch.setattr(ray, "init", lambda address=None, **kw: calls.append(address))
    with caplog.at_level(logging.WARNING, logger="automed"):
        connect("10.0.0.7:6379")
    assert calls == ["10.0.0.7:6379"]
    assert (
        "let this driver in without a token: it runs without token authentication"
        in caplog.records[-1].getMessage()
    )
    caplog.clear()
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    with caplog.at_level(logging.WARNING, logger="automed"):
        connect("10.0.0.7:6379")
    assert caplog.records == []


def test_a_second_connection_to_a_cluster_does_not_warn_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """automed train connects for its node check, again for its folds (and its screening): each said both warnings."""
    from automed.search.ray_connect import connect

    monkeypatch.setattr(ray, "init", lambda address=None, **kw: None)
    with caplog.at_level(logging.WARNING, logger="automed"):
        for _ in range(3):
            connect("10.0.0.7:6379")
        connect("10.0.0.8:6379")  # another cluster is warned about
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 4 and len(set(said)) == 4, said
    assert sum("10.0.0.7:6379 without RAY_AUTH_MODE=token" in m for m in said) == 1
    assert sum("10.0.0.7:6379 let this driver in without a token" in m for m in said) == 1


def test_a_killed_drivers_private_ray_folder_is_removed_by_the_next_one(tmp_path: Path) -> None:
    """A kill -9 leaves automed's Ray session folder (logs naming the sweep's paths): the next local engine removes
    this user's folders whose driver is gone, and no other."""
    import subprocess
    import sys

    from automed.search.ray_session import driver_id, remove_stale

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    here = driver_id().rsplit(" ", 1)[0]
    names = ("dead", "alive", "unknown", "elsewhere")
    dead, alive, unknown, elsewhere = (tmp_path / f"automed-ray-{n}" for n in names)
    for folder in (dead, alive, unknown, elsewhere):
        (folder / "r" / "logs").mkdir(parents=True)
    (dead / "driver.pid").write_text(f"{here} {gone.stdout.strip()}")
    (alive / "driver.pid").write_text(driver_id())
    (elsewhere / "driver.pid").write_text(
        f"otherhost pid:[1] {gone.stdout.strip()}"
    )  # its pid means nothing here
    remove_stale(str(tmp_path))
    assert not dead.exists() and alive.is_dir() and unknown.is_dir() and elsewhere.is_dir()


@pytest.mark.slow
def test_automeds_own_ray_cluster_keeps_its_session_files_in_a_private_folder() -> None:
    """Ray opens its session folder to everyone (0777); it lies inside automed's 0700 folder, removed at close. In
    a process of its own: Ray keeps its session folder in process-wide state, which later tests' clusters would
    inherit once the folder is gone."""
    import shutil
    import subprocess
    import sys
    import tempfile

    base = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths are limited to 107 bytes
    probe = (
        "import stat; from pathlib import Path; from automed.search.ray_engine import RayEngine\n"
        "e = RayEngine(None, {'cpu': 1}, None, False); own = Path(str(e.own_temp))\n"
        "ok = stat.S_IMODE(own.stat().st_mode) == 0o700 and (own / 'r').is_dir()\n"
        "e.close(); print(ok, own.exists())\n"
    )
    try:
        env = {**__import__("os").environ, "RAY_TMPDIR": base}
        out = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip().splitlines()[-1] == "True False"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_trial_the_scheduler_stopped_is_pruned_for_tpe_not_complete(tmp_path: Path) -> None:
    """Ray's OptunaSearch told a trial ASHA stopped as COMPLETE with its last per-epoch EMA; TPE gets it as PRUNED
    (as the optuna engine does), and a validated trial's fold score as COMPLETE."""
    import optuna
    from ray import tune

    from automed.search.ray_tune_hooks import TruthfulSearch

    search = TruthfulSearch(str(tmp_path), space={"x": tune.choice([1, 2, 3])}, metric="score", mode="max")
    search.suggest("a")
    search.suggest("b")
    search.on_trial_complete("a", {"epoch": 2.0, "score": 0.3})  # stopped at a rung: no "validated"
    search.on_trial_complete("b", {"epoch": 9.0, "score": 0.8, "validated": 1.0})
    states = [t.state for t in search._ot_study.trials]
    assert states == [optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE]


def test_the_node_probe_refuses_a_sweep_dir_without_file_locks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The work-dir locks and the trials' config claims are flocks: a node whose mount of the sweep dir cannot lock
    (NFS without lock support answers ENOLCK) would train one config twice unseen; the probe names it."""
    import errno
    import fcntl

    from automed.search.ray_engine import _probe

    assert _probe([str(tmp_path)], str(tmp_path))["problems"] == []

    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    (problem,) = _probe([str(tmp_path)], str(tmp_path))["problems"]
    assert problem == f"cannot lock files in {tmp_path} (No locks available): mount it with lock support"
    assert not list(tmp_path.glob(".node-probe-*"))  # the probe's file is gone
