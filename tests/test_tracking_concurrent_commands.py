"""Commands started at the same moment on one fresh SQLite store (two trainings of different datasets, and one of
the same dataset): each opens the store and its experiment; none crashes in MLflow's table migrations.

The commands are fresh interpreters (as real commands are), released together by a file: children forked from
pytest's process, which holds threads of earlier tests, could deadlock on a lock a thread held at the fork (CI saw
one child never answer)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

_OPEN = """
import sys, time
from pathlib import Path
import mlflow  # imported before the start signal: the commands then open the store together
from automed.tracking import Tracker
uri, experiment, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
Path(sys.argv[4]).touch()
while not go.exists():
    time.sleep(0.01)
try:
    print("ID", Tracker(uri, experiment).experiment_id)
except Exception as exc:
    print("ERROR", f"{type(exc).__name__}: {exc}"[:300])
"""


@pytest.mark.slow
def test_three_commands_open_one_fresh_store_at_once(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(3)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN, uri, e, str(go), str(r)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for e, r in zip(("a", "b", "a"), ready, strict=True)
    ]
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready) and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    got = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        lines = [ln for ln in out.splitlines() if ln.startswith(("ID ", "ERROR "))]
        assert p.returncode == 0 and lines, (p.returncode, out[-2000:], err[-2000:])
        got.append(lines[-1])
    ids = [g.split(" ", 1)[1] for g in got]
    assert all(g.startswith("ID ") and i.isdigit() for g, i in zip(got, ids, strict=True)), got
    assert ids[0] == ids[2] and ids[0] != ids[1]  # one experiment "a" for both of its commands
