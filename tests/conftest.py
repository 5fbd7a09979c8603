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
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from automed.errors import AutomedError
    from automed.plan.schema import NetworkPlan, Plan

if os.environ.get("PYTEST_XDIST_WORKER"):
    # make test's workers (pytest-xdist; three on CI's two cores): one torch thread each, also in the processes they
    # start (with torch's default, two workers' OpenMP threads on two cores spent 60 % more CPU time, no faster)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
# the Ray nodes the tests start themselves (ray.cluster_utils, `ray start`): their workers at the tests' priority, as
# automed's own cluster runs them (Ray's default nice 15 left a trial a few percent of the CPU beside the other
# workers: a 44 s Ray sweep took 405 s in the full suite)
os.environ.setdefault("RAY_worker_niceness", "0")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared(*parts: str) -> Path:
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not found: {p}")
    return p


# the modules whose tests take longest (Ray clusters, killed drivers): handed out first, so that they start at once
# (xdist gives a worker a second module at the start when its first has two tests or fewer)
_FIRST = ("test_sweep_ray", "test_train_ray", "test_sweep_ray_local", "test_train_e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``make test`` runs the tests on three workers (pytest-xdist, ``--dist loadfile``): a module's tests stay on one
    worker, so its module-scoped fixtures (a trained model, a prepared dataset) are built once, not on each.
    (Not ``--dist loadgroup``: xdist 3.8 groups by renaming node IDs through an attribute pytest 9.2 no longer reads,
    so its groups never applied and every test went to any worker, a module's fixtures built on each.)
    The modules come longest first (those of ``_FIRST``, then by their number of slow tests; each keeps its own
    order): xdist hands modules out in this order (``make test`` passes ``--no-loadscope-reorder``: by default it
    orders them by their number of tests, which put the Ray clusters' modules near the end)."""
    module_of = {
        item.nodeid: item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py") for item in items
    }
    slow: dict[str, int] = {}
    for item in items:
        slow[module_of[item.nodeid]] = slow.get(module_of[item.nodeid], 0) + bool(
            item.get_closest_marker("slow")
        )

    def rank(item: pytest.Item) -> tuple[int, int, str]:
        module = module_of[item.nodeid]
        return (_FIRST.index(module) if module in _FIRST else len(_FIRST), -slow[module], module)

    items.sort(key=rank)


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


_MLFLOW_TEMPLATE: list[Path] = []  # the session's migrated store, built on the first new SQLite store


@pytest.fixture(autouse=True)
def _mlflow_tables_from_a_template(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A new SQLite MLflow store opened in this process gets its tables copied (SQLite's backup) from one store
    that MLflow's own migrations built once per session: those migrations took about a second per store (1.07 s
    measured), and many tests train into a store of their own. Installed once mlflow's store module is imported;
    a store that is not an empty SQLite file, and every process a test starts, is migrated by MLflow as always
    (tests/test_mlflow_store_template.py checks the copy equals a migrated store)."""
    utils = sys.modules.get("mlflow.store.db.utils")
    if utils is None or getattr(utils._initialize_tables, "from_template", False):
        return
    import sqlite3

    import mlflow.store.model_registry.sqlalchemy_store as registry_store

    migrate = utils._initialize_tables

    def initialize(engine: Any) -> None:
        db = engine.url.database
        if engine.url.get_backend_name() != "sqlite" or not db or db == ":memory:":
            return migrate(engine)
        if not utils._is_empty_database(engine):  # a store partly built (another process): MLflow finishes it
            return migrate(engine)
        if not _MLFLOW_TEMPLATE:
            template = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
            built = utils.create_sqlalchemy_engine_with_retry(f"sqlite:///{template}")
            migrate(built)
            built.dispose()
            _MLFLOW_TEMPLATE.append(template)
        with (
            contextlib.closing(sqlite3.connect(_MLFLOW_TEMPLATE[0])) as src,
            contextlib.closing(sqlite3.connect(db)) as dst,
        ):
            src.backup(dst)
        return None

    initialize.from_template = True  # type: ignore[attr-defined]
    initialize.migrate = migrate  # type: ignore[attr-defined]
    utils._initialize_tables = initialize
    registry_store._initialize_tables = initialize  # imported by name there


@pytest.fixture(scope="session")
def hippocampus() -> Path:
    return shared("msd_hippocampus_dev")


@pytest.fixture(scope="session")
def small_training(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One two-fold training of 4 synthetic cases (12x24x24, one epoch of 2 iterations), registered in its own
    store: ``root`` holds ``data`` (``ds``), ``W`` and ``mlflow.db``. Trained once per session (two modules trained
    it each, about 12 s apiece) for the tests that only read it (tests/test_output_safety.py); a test that writes
    in ``W`` (an export's link, a selection's choice) works on a copy of ``root`` (tests/test_kill_outputs.py).
    A copy's ``tracking.json`` still names this store, where its export and selection register: a test that reads
    the store trains its own."""
    from automed import api
    from automed.testing.synthetic import make_dataset

    root = tmp_path_factory.mktemp("small_training")
    ds = make_dataset(root / "data", n_cases=4, shape=(12, 24, 24), seed=4)
    cfg = root / "cfg.yaml"
    cfg.write_text("epochs: 1\niterations_per_epoch: 2\nval_iterations: 1\nnum_workers: 0\n")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    api.train(ds, root / "W", config=cfg, folds=2, tracking_uri=uri, workers=0, show_progress=False)
    return {"root": root, "ds": ds, "W": root / "W"}


@pytest.fixture()
def tiny_msd(tmp_path: Path) -> Path:
    from automed.testing.synthetic import make_dataset

    return make_dataset(tmp_path / "ds", n_cases=4, shape=(12, 16, 14), seed=1)


def wait_for_ui(port: int, proc: subprocess.Popen[Any], seconds: float = 120) -> None:
    """Until the MLflow UI on ``port`` answers /health (``proc``: the automed ui serving it, still running)."""
    end = time.time() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        assert time.time() < end and proc.poll() is None, "the MLflow UI did not answer on /health"
        time.sleep(0.5)


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
            wait_for_ui(port, proc)
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


def kill_group(pgid: int) -> None:
    """SIGKILL a process group a test started (``start_new_session=True``), if anything of it is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


NOT_JSON = "{not json"


def refused_naming(exc: pytest.ExceptionInfo[AutomedError], path: Path, *words: str) -> None:
    """A refusal of a damaged state file names the file, the rule's ``words``, and says what to do."""
    text = str(exc.value)
    assert str(path) in text and "Fix:" in text, text
    for word in words:
        assert word in text, text


def cascade_pair(root: Path) -> tuple[Path, Path, Plan]:
    """``root/LOW``, a finished cascade first stage (3d_lowres: model.json, every case validated as a 4^3 label map),
    and ``root/CASC``, a cascade work dir: one plan (512^3 images: a cascade is planned) and one two-fold split."""
    import json

    import numpy as np
    import SimpleITK as sitk

    from automed.plan.planner import make_plan
    from automed.plan.preset import load_preset
    from automed.testing.fingerprints import synthetic_fingerprint
    from automed.train.config import TrainConfig
    from automed.train.meta import ModelMeta, resolve_training
    from automed.workdir import WorkDir

    plan = make_plan(synthetic_fingerprint((1.0, 1.0, 1.0), (512,) * 3), load_preset("default"))
    assert "3d_cascade_fullres" in plan.configurations
    splits = {"n_folds": 2, "folds": [{"train": ["b"], "val": ["a"]}, {"train": ["a"], "val": ["b"]}]}
    low, casc = root / "LOW", root / "CASC"
    for wd in (low, casc):
        wd.mkdir(parents=True)
        plan.save(wd / "plan.json")
        (wd / "splits.json").write_text(json.dumps(splits))
    cfg = TrainConfig(configuration="3d_lowres")
    ModelMeta(
        dataset=plan.dataset_name, configuration="3d_lowres", folds=[0, 1], config=cfg,
        resolved=resolve_training(plan, cfg), plan_hash=plan.hash, labels=plan.labels, cv_score=0.4,
    ).save(low / "model.json")  # fmt: skip
    for k, cid in enumerate(("a", "b")):
        val = WorkDir(low).fold("3d_lowres", k) / "validation"
        val.mkdir(parents=True)
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.uint8)), str(val / f"{cid}.nii.gz"))
    return low, casc, plan


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


@pytest.fixture()
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, dict[str, Any]]]:
    """What matplotlib's ``imshow`` is given while the test runs, a call at a time: (the array as numpy, the keyword
    arguments); the pictures are still drawn."""
    import numpy as np
    from matplotlib.axes import Axes

    shown: list[tuple[Any, dict[str, Any]]] = []
    imshow = Axes.imshow

    def capture(self: Axes, x: Any, *args: Any, **kwargs: Any) -> Any:
        shown.append((np.asarray(x), kwargs))
        return imshow(self, x, *args, **kwargs)

    monkeypatch.setattr(Axes, "imshow", capture)
    return shown
