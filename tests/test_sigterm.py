"""SIGTERM (SLURM, ``timeout``, ``docker stop``) ends an ``automed`` command as Ctrl-C does: ``finally`` blocks and
``atexit`` run, MLflow runs end as KILLED, exit status 143; a process forked from the command still dies at once,
and a second SIGTERM during the clean-up ends it at once. Each case runs the CLI in a subprocess and signals it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# a test verb added to the real app: it marks where it got to in the folder argv[1], then waits (or exits as Ray's
# SIGTERM handler does); the rest is automed.cli.main as the console script runs it
_WAITING_VERB = textwrap.dedent(
    """
    import atexit, multiprocessing, sys, time
    from pathlib import Path
    from automed import cli

    marks = Path(sys.argv[1])
    how = sys.argv[2]
    atexit.register(lambda: (marks / "atexit").touch())

    @cli.app.command("test-wait")
    def wait() -> None:
        if how == "ray":
            try:
                sys.exit(15)  # what ray.init's handler does on SIGTERM
            finally:
                (marks / "finally").touch()
        child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
        child.start()
        try:
            (marks / "started").touch()
            time.sleep(60)
        finally:
            child.join(20)
            (marks / "child").write_text(str(child.exitcode))
            child.kill()
            if how == "slow-cleanup":
                time.sleep(30)
            (marks / "finally").touch()

    sys.argv = ["automed", "test-wait"]
    cli.main()
    """
)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _wait_for(path: Path, proc: subprocess.Popen[str], seconds: float = 120) -> None:
    end = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"ended before {path.name}: {proc.communicate()}")
        assert time.monotonic() < end, f"{path.name} never appeared"
        time.sleep(0.05)


def _start(marks: Path, how: str) -> subprocess.Popen[str]:
    marks.mkdir()
    return subprocess.Popen(
        [sys.executable, "-c", _WAITING_VERB, str(marks), how],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as under `timeout` or SLURM
    )


def test_sigterm_cleans_up_as_ctrl_c_and_exits_143(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    proc = _start(marks, "wait")
    _wait_for(marks / "started", proc)
    os.killpg(proc.pid, signal.SIGTERM)  # the whole group, as `timeout` and SLURM send it
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    assert (marks / "finally").is_file() and (marks / "atexit").is_file()
    # the forked child died of the signal itself (it did not raise in automed's handler)
    assert (marks / "child").read_text() == str(-signal.SIGTERM)


def test_a_sigterm_python_drops_in_a_fork_hook_still_stops_the_training_loop(tmp_path: Path) -> None:
    """SIGTERM arriving while a DataLoader forked its worker (every epoch) raised inside an at-fork hook, where Python
    prints "Exception ignored" and goes on: a resumed training ran to its end, registered a version and exited 0
    (review finding, 3 of 3 runs). The handler records the stop too, and the training loop checks it each step."""
    script = tmp_path / "fork.py"
    script.write_text(
        textwrap.dedent("""
        import os, signal
        from automed.cli._common import handle_sigterm, state
        from automed.runtime import stop
        handle_sigterm()
        os.register_at_fork(after_in_parent=lambda: os.kill(os.getpid(), signal.SIGTERM) or sum(range(1000)))
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        print("went on", flush=True)
        try:
            stop.check()  # what FoldTrainer.train_epoch does after each step
        except KeyboardInterrupt:
            print("stopped, terminated:", state["terminated"])
    """)
    )
    r = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert "Exception ignored" in r.stderr  # Python dropped the handler's exception, as in the review
    assert r.stdout.splitlines() == ["went on", "stopped, terminated: True"], r.stdout + r.stderr


def test_a_second_sigterm_during_the_clean_up_ends_the_command_at_once(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    proc = _start(marks, "slow-cleanup")
    _wait_for(marks / "started", proc)
    os.killpg(proc.pid, signal.SIGTERM)
    _wait_for(marks / "child", proc, 30)  # the clean-up now sleeps
    os.kill(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=20)
    assert proc.returncode == -signal.SIGTERM and not (marks / "finally").exists()


def test_rays_sigterm_exit_reads_as_sigterm(tmp_path: Path) -> None:
    """ray.init replaces the handler with one that calls sys.exit(15): the command still reports SIGTERM."""
    marks = tmp_path / "marks"
    proc = _start(marks, "ray")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "terminated (SIGTERM)" in err
    assert (marks / "finally").is_file()


def _statuses(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as c:
        return dict(c.execute("select name, status from runs").fetchall())


@pytest.mark.slow
def test_a_training_terminated_in_its_first_fold_ends_its_runs_and_resumes(tmp_path: Path) -> None:
    from automed.testing.synthetic import make_dataset

    ds = make_dataset(tmp_path / "ds", n_cases=4, shape=(12, 16, 14), seed=1)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("epochs: 2\niterations_per_epoch: 6\nval_iterations: 1\nnum_workers: 0\n")
    wd, db = tmp_path / "W", tmp_path / "ml.db"
    common = ["--config", str(cfg), "--workers", "0", "--tracking-uri", f"sqlite:///{db}", "--no-register"]
    cli = [sys.executable, "-m", "automed.cli", "-q", "train"]
    proc = subprocess.Popen(
        [*cli, str(ds), "-o", str(wd), "--folds", "2", *common],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    fold0 = wd / "train" / "3d_fullres" / "fold_0"
    _wait_for(fold0, proc, 300)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM)" in err
    runs = _statuses(db)
    assert runs["train-3d_fullres"] == "KILLED" and runs["3d_fullres-fold0"] == "KILLED"
    assert runs["3d_fullres-fold1"] == "KILLED"  # created up front, never started: it stayed RUNNING
    assert not (fold0 / "validation_metrics.json").exists()  # fold 0 was cut short
    before = (wd / "train_config.json").read_text()
    done = subprocess.run(
        [*cli, "--resume", str(wd), "--workers", "0"], env=_env(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((wd / "model.json").read_text())["folds"] == [0, 1]
    assert json.loads((wd / "train_config.json").read_text())["config"] == json.loads(before)["config"]
    runs = _statuses(db)
    assert runs["train-3d_fullres"] == "FINISHED" and runs["3d_fullres-fold0"] == "FINISHED"
    assert runs["3d_fullres-fold1"] == "FINISHED"


@pytest.mark.slow
def test_a_sweep_terminated_mid_trials_ends_every_run(tmp_path: Path) -> None:
    """The optuna engine's trials run in pool processes that die of the signal without ending their MLflow runs:
    the sweep's clean-up ends every run under it (they stayed RUNNING)."""
    from automed.testing.synthetic import make_dataset

    ds = make_dataset(tmp_path / "ds", n_cases=4, shape=(12, 16, 14), seed=1)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("epochs: 2\niterations_per_epoch: 40\nval_iterations: 1\nnum_workers: 0\n")
    db, out = tmp_path / "ml.db", tmp_path / "S"
    proc = subprocess.Popen(
        [sys.executable, "-m", "automed.cli", "-q", "sweep", str(ds), "-o", str(out), "--space",
         str(ROOT / "search_spaces" / "quick.yaml"), "--config", str(cfg), "--trials", "2", "--folds", "2",
         "--engine", "optuna", "--tracking-uri", f"sqlite:///{db}"],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    end = time.monotonic() + 300
    while not list(out.glob("trials/*/train/*/fold_0")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "no trial started"
        time.sleep(0.1)
    time.sleep(2)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    runs = _statuses(db)
    assert len(runs) >= 3 and "RUNNING" not in runs.values(), runs


_POOL_VERB = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from automed import cli
    from automed.parallel import process_pool

    @cli.app.command("test-pool")
    def pool_verb() -> None:
        with process_pool(1, "spawn") as pool:
            running = pool.submit(time.sleep, 60)  # a fold, or a worker's trials
            time.sleep(1)
            Path(mark).touch()
            running.result()

    mark = sys.argv[1]
    sys.argv = ["automed", "test-pool"]
    cli.main()
    """
)


def test_sigterm_to_the_command_alone_stops_its_worker_pool(tmp_path: Path) -> None:
    """``kill PID`` (or a container's PID 1) signals the command only, not its pool's workers: leaving the pool
    waited for the running task (a whole fold) before the command could end; now it stops the workers."""
    mark = tmp_path / "started"
    proc = subprocess.Popen(
        [sys.executable, "-c", _POOL_VERB, str(mark)],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    _wait_for(mark, proc, 120)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # the main process only
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert time.monotonic() - t0 < 20  # not the 60 s task


def test_a_stopped_trainings_runs_end_and_reopen_as_it_resumes(tmp_path: Path) -> None:
    """Stopping ends every open run under the parent (at any depth); a resume sets the runs it continues RUNNING
    again (they showed KILLED while they trained, until they ended FINISHED)."""
    from automed.privacy import Redactor
    from automed.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path / 'm.db'}", "x", Redactor.build(b"k" * 32, [], {}))
    parent = tracker.start_run("train")
    fold = tracker.start_run("fold0", parent=parent)
    nested = tracker.start_run("maps", parent=fold)
    ended = tracker.start_run("trial", parent=parent)
    under_ended = tracker.start_run("trial-fold0", parent=ended)  # a worker died: its trial had ended
    tracker.end_run(ended, "FINISHED")
    other = tracker.start_run("another training")  # not this command's
    tracker.end_open_runs_under(parent, "KILLED")
    tracker.end_run(parent, "KILLED")
    status = {r: tracker.client.get_run(r).info.status for r in (parent, fold, nested, under_ended)}
    assert set(status.values()) == {"KILLED"}
    assert tracker.client.get_run(other).info.status == "RUNNING"
    tracker.reopen(parent)
    tracker.reopen(fold)
    assert tracker.client.get_run(parent).info.status == "RUNNING"
    assert tracker.client.get_run(fold).info.status == "RUNNING"
