"""``kill -9`` in the middle of ``automed export``, ``automed package`` and ``automed select`` (real processes): the
earlier result survives intact, the model work dir is unchanged, and the next run cleans up what the killed one
left. (Training and sweeps: tests/test_units_train.py and tests/test_sweep_ray.py.)"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _tree(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(str(p.relative_to(root)).startswith(s) for s in skip)
    }


def _automed(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "automed.cli", "-q", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def _kill_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float = 300) -> None:
    """SIGKILL ``proc`` as soon as ``ready()``; fails if it ended first (the kill point was never reached)."""
    end = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the command ended before the kill point"
        assert time.monotonic() < end, "the kill point never came"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="module")
def done(small_training: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A trained work dir with an export, a cube and a selection: the earlier results a killed run must keep. The
    session's small training (tests/conftest.py), copied whole: the export and the selection write in its work dir
    (the export's link, the chosen inference settings), which other tests read as trained."""
    from automed import api

    root = tmp_path_factory.mktemp("kill")
    shutil.copytree(small_training["root"], root, dirs_exist_ok=True)
    api.export(root / "W", root / "E")  # both runtimes: a cube's images run OpenVINO (CPU) and ONNX (CUDA)
    api.package(root / "W", root / "C", export_dir=root / "E")
    api.select([root / "W"], root / "S")
    return {"root": root, "W": root / "W", "E": root / "E", "C": root / "C", "S": root / "S"}


def test_killed_export_keeps_the_earlier_export(done: dict[str, Path]) -> None:
    root, e = done["root"], done["E"]
    before, work = _tree(e), _tree(done["W"], skip=(".automed.lock",))
    proc = _automed("export", done["W"], "-o", e, "--format", "onnx")
    # mid-build: the new export's first network is written, its report not yet
    _kill_when(
        proc, lambda: any((t / "networks" / "onnx" / "fold_0.onnx").is_file() for t in root.glob(".E.tmp-*"))
    )
    assert _tree(e) == before and _tree(done["W"], skip=(".automed.lock",)) == work
    assert list(root.glob(".E.tmp-*"))  # the killed run's half-built folder, beside the output
    from automed import api

    api.export(done["W"], e, formats="onnx")  # the next run replaces the export and removes the leftover
    assert not list(root.glob(".E.*")) and json.loads((e / "export.json").read_text())["parity"]


def test_killed_package_keeps_the_earlier_cube(done: dict[str, Path], tmp_path: Path) -> None:
    before = _tree(done["C"])
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    # `package` without --export exports first, into a temporary folder, where the work dir's own export does not
    # hide case IDs as now asked (--keep-case-ids here): kill while that export runs
    proc = _automed(
        "package", done["W"], "--mlcube", done["C"], "--keep-case-ids", env={"TMPDIR": str(scratch)}
    )
    _kill_when(proc, lambda: any(scratch.glob("automed-export-*/.bundle.tmp-*/networks/onnx/fold_0.onnx")))
    assert _tree(done["C"]) == before
    assert (done["C"] / "mlcube" / "mlcube.yaml").is_file()


def test_killed_select_keeps_the_earlier_selection(done: dict[str, Path]) -> None:
    s, w = done["S"], done["W"]
    before_sel = (s / "selection.json").read_bytes()
    model = (w / "model.json").read_bytes()
    choice = json.loads((w / "inference.json").read_text())
    t0 = time.monotonic()
    full = subprocess.run(
        [sys.executable, "-m", "automed.cli", "select", w, "-o", s],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert full.returncode == 0, full.stderr
    took = time.monotonic() - t0
    # its output is no terminal: each stage in plain lines as it starts and ends (it was silent for minutes)
    for stage in (
        "scoring 1 candidate(s) on 4 CV cases",
        "class bias: reading",
        "class bias: searching offsets",
        "largest components",
        "inference timing",
    ):
        ends = [line for line in full.stdout.splitlines() if line.startswith(stage) and " done in " in line]
        assert len(ends) == 1, full.stdout
    for fraction in (0.3, 0.6, 0.9):  # kill at several moments of a run as long as the one just timed
        proc = _automed("select", w, "-o", s)
        time.sleep(took * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        sel = json.loads((s / "selection.json").read_text())  # complete JSON: the earlier or a whole new one
        assert sel["chosen"]["members"] and set(sel) == set(json.loads(before_sel))
        assert (w / "model.json").read_bytes() == model  # select never writes the model metadata
        now = json.loads((w / "inference.json").read_text())
        assert set(now) == set(choice) and now["inference"]["folds"]
