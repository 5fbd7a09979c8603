"""Commands started at the same moment on one fresh SQLite store (two trainings of different datasets, and one of
the same dataset): each opens the store and its experiment; none crashes in MLflow's table migrations."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest


def _open(uri: str, experiment: str, barrier: Any, results: Any) -> None:
    from automed.tracking import Tracker

    barrier.wait()
    try:
        results.put((experiment, Tracker(uri, experiment).experiment_id))
    except Exception as exc:
        results.put((experiment, f"{type(exc).__name__}: {exc}"[:300]))


@pytest.mark.slow
def test_three_commands_open_one_fresh_store_at_once(tmp_path: Path) -> None:
    import mlflow  # noqa: F401  (imported before the fork: the children start at the barrier together)

    ctx = multiprocessing.get_context("fork")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_open, args=(uri, e, barrier, results)) for e in ("a", "b", "a")]
    for p in procs:
        p.start()
    got = sorted(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    assert all(v.isdigit() for _, v in got), got
    assert got[0] == got[1] and got[0][1] != got[2][1]  # one experiment "a" for both of its commands
