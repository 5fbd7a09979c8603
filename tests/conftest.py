from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from automed.plan.schema import NetworkPlan

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared(*parts: str) -> Path:
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not found: {p}")
    return p


@pytest.fixture(autouse=True)
def _torch_threads_restored() -> Iterator[None]:
    """A sweep trial sets torch's thread count for its process (its worker's share); tests that run trials in this
    process must not leave later in-process trainings another count (other float sums: other weights)."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    yield
    torch = sys.modules.get("torch")
    if torch is not None and before is not None and torch.get_num_threads() != before:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _mlflow_uri_variables_restored() -> Iterator[None]:
    """A test that reads a store with ``mlflow.set_tracking_uri`` / ``set_registry_uri`` has MLflow copy the URI into
    ``MLFLOW_TRACKING_URI`` / ``MLFLOW_REGISTRY_URI``, which automed reads as the user's choice: every later test
    of the session registered its models into that one registry (name clashes, other tests' versions)."""
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    before = {name: os.environ.get(name) for name in names}
    yield
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:  # MLflow's own settings too: a client made without a registry URI reads them
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def hippocampus() -> Path:
    return shared("msd_hippocampus_dev")


@pytest.fixture()
def tiny_msd(tmp_path: Path) -> Path:
    from automed.testing.synthetic import make_dataset

    return make_dataset(tmp_path / "ds", n_cases=4, shape=(12, 16, 14), seed=1)


@contextlib.contextmanager
def automed_ui(store: str, log: Path) -> Iterator[int]:
    """``automed ui`` serving ``store`` on a free loopback port (yielded once /health answers); its output goes to
    ``log``; stopped (its whole process group) on exit."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "automed.cli", "ui", "--tracking-uri", store, "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            end = time.time() + 90
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                assert time.time() < end, "the MLflow UI did not answer on /health"
                time.sleep(0.5)
            yield port
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def two_series_folder(dest: Path) -> Path:
    """A folder holding two DICOM series (Study1 and Study2 of the shared hippocampus crops)."""
    src = shared("dicom", "hippo_crop_series")
    dest.mkdir(parents=True)
    for study in ("Study1", "Study2"):
        for f in (src / study).glob("*.dcm"):
            shutil.copy(f, dest / f"{study}_{f.name}")
    return dest


# a tiny memory target makes 40^3 images need 3d_lowres (the full-resolution patch covers < 25 % of them)
CASCADE_PRESET = (
    "schema_version: 1\nname: cascade-test\nextends: cpu\nconfigurations: [3d_fullres, 3d_lowres]\n"
)
CASCADE_PRESET += "memory:\n  target_gb: 0.02\n"
CASCADE_CONFIG = "epochs: 2\niterations_per_epoch: 3\nval_iterations: 1\nnum_workers: 0\n"


def cascade_options(root: Path) -> dict[str, object]:
    """``root/preset.yaml`` (a cascade planned for 40^3 images) and ``root/cfg.yaml`` (a short training), and the
    options both stages of a cascade test train with."""
    (root / "preset.yaml").write_text(CASCADE_PRESET)
    (root / "cfg.yaml").write_text(CASCADE_CONFIG)
    return {
        "config": root / "cfg.yaml",
        "folds": 2,
        "preset": str(root / "preset.yaml"),
        "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
        "workers": 0,
        "show_progress": False,
    }


def tiny_unet_plan(dim: int = 3) -> NetworkPlan:
    """A two-stage U-Net of 4 and 8 features, 3 classes, one input channel (``dim`` 2 or 3)."""
    from automed.plan.schema import NetworkPlan

    return NetworkPlan(
        architecture="unet",
        dimension=2 if dim == 2 else 3,
        in_channels=1,
        n_classes=3,
        n_stages=2,
        features_per_stage=[4, 8],
        kernel_sizes=[[3] * dim] * 2,
        strides=[[1] * dim, [2] * dim],
        convs_per_stage=1,
        convs_per_stage_decoder=1,
    )
