"""MLflow tracking: the only module that imports mlflow.

Store: embedded by default, ``sqlite:///<project root>/mlflow.db`` for runs and the model registry with artifacts in
``<project root>/mlruns/<experiment>``, the project root being the current directory (this repository's top level
when run from it). ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` choose another store (e.g. a server). The driver
creates the database and experiment before any worker logs, and a lock beside a SQLite store lets one process at a
time create or migrate it (several at once crash in its migrations). Runs nest through the ``mlflow.parentRunId``
tag, so processes can add children. Metrics go in one ``log_batch`` call per epoch (per-call logging is slow).

Everything a :class:`Tracker` sends (params, tags, artifacts and their names, dataset sources, registered bundles)
passes through its :class:`~automed.privacy.Redactor`: case IDs become pseudonyms and local folders placeholders.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from automed.errors import AutomedError
from automed.privacy import Redactor, no_redaction
from automed.tracking_probe import bounded_requests
from automed.tracking_uri import DB_NAME as DB_NAME
from automed.tracking_uri import Down, check_writable, found_down, still_answers
from automed.tracking_uri import check_tracking_uri as check_tracking_uri
from automed.tracking_uri import registry_uri as registry_uri
from automed.tracking_uri import resolve_uri as resolve_uri
from automed.tracking_uri import set_mlflow_uris as set_mlflow_uris

log = logging.getLogger(__name__)

ARTIFACTS_DIR = "mlruns"
MAX_PARAM_LEN = 6000


def safe_key(name: str) -> str:
    """A name made safe for MLflow metric keys (letters, digits, _ - . / and spaces)."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", name)


def git_commit() -> str:
    """The commit of the automed checkout that runs (``unknown`` outside a git checkout)."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


MODEL_URI = "models:/"


def split_model_uri(model_uri: str) -> tuple[str, str]:
    """``(name, ref)`` of ``models:/NAME@ALIAS`` (ref ``@ALIAS``) or ``models:/NAME/VERSION`` (ref ``VERSION``)."""
    ref = model_uri[len(MODEL_URI) :]
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return name, "@" + alias
    name, _, version = ref.partition("/")
    return name, version


def model_version(client: Any, name: str, ref: str) -> Any:
    """The registered version ``ref`` (``@ALIAS`` or a version number) of model ``name``."""
    if ref.startswith("@"):
        return client.get_model_version_by_alias(name, ref[1:])
    return client.get_model_version(name, ref)


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """For a SQLite store, one process at a time opens it (MLflow builds or migrates its tables then) and makes its
    experiment, or moves a registered model's champion: two commands started together on a fresh store had crashed
    in the migrations ("table ... already exists", "duplicate column name"), and two of one dataset on the
    experiment's name. The lock is a flock on ``.<db name>.lock`` beside the database, whose folder is made first
    (the store would make it: the first command on a new store had gone without the lock); a folder where it cannot
    be made (read-only) goes without it."""
    from automed.workdir import flocked

    with contextlib.ExitStack() as stack:
        if uri.startswith("sqlite:///") and ":memory:" not in uri:
            db = Path(uri[len("sqlite:///") :].split("?", 1)[0])
            locked = False
            with contextlib.suppress(OSError):
                db.parent.mkdir(parents=True, exist_ok=True)
                stack.enter_context(flocked(db.with_name(f".{db.name}.lock")))
                locked = True
            if locked and not db.exists():
                _build_store(db)
        yield


def _build_store(db: Path) -> None:
    """A new SQLite store's tables are built (MLflow's migrations) in a file beside it, moved into place when
    complete: a command killed while MLflow migrated a new store (a second or more of dozens of migrations) left a
    half-built database that every later command on that store refused ("table ... already exists")."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    for killed in db.parent.glob(
        f".{db.name}.new-*"
    ):  # an earlier build's (under the store's lock: no other)
        killed.unlink(missing_ok=True)
    new = db.with_name(
        f".{db.name}.new-{uuid.uuid4().hex[:12]}"
    )  # (MLflow keeps an engine per URI: a new one)
    # the Default experiment's artifacts beside the store's own (MLflow's default, ./mlruns, recorded the folder
    # the first command ran in: a dataset's, named after a study or patient)
    store = SqlAlchemyStore(f"sqlite:///{new}", str(db.parent / ARTIFACTS_DIR))  # type: ignore[no-untyped-call]
    store.engine.dispose()
    new.replace(db)


def _artifact_root(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :]).parent / ARTIFACTS_DIR
    return None


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts as ``a.b.c`` keys with string values (lists kept as their JSON-like text)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(v)[:MAX_PARAM_LEN]
    return out


# MLflow 3's UI opens an experiment on its GenAI view (traces) unless the experiment says it holds model training
EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
# artifact up/download progress bars: noise in automed's console (it shows its own progress)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@contextlib.contextmanager
def _asked_again(uri: str) -> Iterator[None]:
    """MLflow's requests inside it bounded (:func:`~automed.tracking_probe.bounded_requests`); a failure asks the
    tracking server again by HTTP (:func:`~automed.tracking_uri.still_answers`) for the clear error if it is down,
    else it is MLflow's own. automed's own errors pass as they are (the server found down by a call inside it,
    already the clear error: not asked twice)."""
    with bounded_requests():
        try:
            yield
        except AutomedError:
            raise
        except Exception:
            still_answers(uri, recheck=True, http=True)
            raise


@contextlib.contextmanager
def bounded(uri: str) -> Iterator[None]:
    """MLflow's fluent calls made inside it (``mlflow.start_run``, ``pyfunc.log_model``, ``register_model``,
    ``artifacts.download_artifacts``) bounded as a :class:`Bounded` client's, for the store ``uri``: an HTTP probe
    first (a server down, or one that takes connections and never answers, is the clear error in seconds), then
    requests that retry for seconds, not MLflow's minutes, and a failure that asks the server again. A local store
    (SQLite, files) is never probed."""
    still_answers(uri, http=True)
    with _asked_again(uri):
        yield


def bounded_client(uri: str) -> Bounded:
    """An ``MlflowClient`` of the store ``uri`` and its registry (:func:`registry_uri`) whose every call is bounded
    (:class:`Bounded`), after an HTTP probe of the server (as :func:`bounded`): what automed's commands use outside
    a :class:`Tracker` (a report's ``runs:/``, a registered model's version, an export attached to it). A bare
    ``MlflowClient`` to a server that had gone waited on MLflow's retries (7, with backoff: 247 s for one request
    to a closed port; 120 s per try to a server that takes connections and never answers)."""
    from mlflow.tracking import MlflowClient

    still_answers(uri, http=True)
    return Bounded(MlflowClient(tracking_uri=uri, registry_uri=registry_uri(uri)), uri)


class Bounded:
    """An ``MlflowClient`` whose every call is bounded (:func:`~automed.tracking_probe.bounded_requests`: MLflow's
    retries of a request to a server take seconds, not minutes) and, when it fails, asks the tracking server again by
    HTTP (:func:`~automed.tracking_uri.still_answers`): a server that died since the last probe, or a gateway that
    answers 503, is the clear "the tracking server answers" error (found down: the next calls fail at once), and any
    other failure (a run not found, a bad request) is MLflow's own. ``Tracker.client`` is one, so the calls that
    other modules make through it are bounded too; :func:`bounded_client` makes one outside a Tracker."""

    def __init__(self, client: Any, uri: str) -> None:
        self._client, self._uri = client, uri

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_client", "_uri"):  # (copy, pickle: not the client's)
            raise AttributeError(name)
        found = getattr(self._client, name)
        if not callable(found):
            return found

        def call(*args: Any, **kwargs: Any) -> Any:
            with _asked_again(self._uri):
                return found(*args, **kwargs)

        return call


class Tracker:
    """A thin wrapper over ``MlflowClient`` for one experiment; every value it sends is redacted."""

    def __init__(
        self, uri: str, experiment: str, redactor: Redactor | None = None, registry: str | None = None
    ) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.redactor = redactor or no_redaction()
        self.check_store()
        # the model registry's store: MLFLOW_REGISTRY_URI, else ``registry`` (the one a work dir registered in),
        # else the tracking store
        self.registry = registry_uri(uri, registry)
        check_writable(uri)
        set_mlflow_uris(uri, self.registry)
        with store_lock(uri):
            self.client = Bounded(MlflowClient(tracking_uri=uri, registry_uri=self.registry), uri)
            self.experiment_id = self._experiment_id(experiment)
        if self.registry != uri and self.registry.startswith("sqlite:///"):
            check_writable(self.registry, "MLFLOW_REGISTRY_URI")
            with store_lock(
                self.registry
            ):  # a registry of its own is opened (built, migrated) under its own lock
                self.client.search_registered_models(max_results=1)
        self.experiment = experiment

    def _experiment_id(self, experiment: str) -> str:
        """The id of ``experiment``, made if absent (by this process or, at the same moment, by another one)."""
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            root = _artifact_root(self.uri)
            location = str(root / experiment) if root is not None else None
            try:
                return str(
                    self.client.create_experiment(
                        experiment, artifact_location=location, tags={EXPERIMENT_KIND: MODEL_TRAINING}
                    )
                )
            except MlflowException:  # another command made it first (a server: no lock covers it)
                exp = self.client.get_experiment_by_name(experiment)
                if exp is None:
                    raise
        if exp.tags.get(EXPERIMENT_KIND) is None:  # made before automed set it
            self.client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
        return str(exp.experiment_id)

    def check_store(self, recheck: bool = False) -> None:
        """A clear error in seconds when the tracking server stopped answering
        (:func:`~automed.tracking_uri.still_answers`: a probe, unless one found it answering a moment ago);
        ``recheck``: ask it now, even if it was found down or answering a moment ago (a retry)."""
        still_answers(self.uri, recheck)

    def found_down(self) -> Down | None:
        """How this process last found the tracking server down (None: it answers, or was never asked)."""
        return found_down(self.uri)

    def start_run(self, name: str, *, parent: str | None = None, tags: dict[str, str] | None = None) -> str:
        self.check_store()
        # as set_tags redacts them, except the key find_run looks the run up by
        t = {
            k: v if k == "automed_key" else str(self.redactor.value(str(v))) for k, v in (tags or {}).items()
        }
        t["mlflow.runName"] = name
        if parent:
            t["mlflow.parentRunId"] = parent
        run = self.client.create_run(self.experiment_id, tags=t, run_name=name)
        return str(run.info.run_id)

    def find_run(self, key: str, parent: str | None = None) -> Any:
        """The run tagged ``automed_key=key`` under ``parent``, or None."""
        self.check_store()
        filt = f"tags.automed_key = '{key}'"
        if parent:
            filt += f" and tags.`mlflow.parentRunId` = '{parent}'"
        found = self.client.search_runs([self.experiment_id], filter_string=filt, max_results=1)
        return found[0] if found else None

    def find_or_start_run(
        self, name: str, key: str, *, parent: str | None = None, tags: dict[str, str] | None = None
    ) -> tuple[str, bool]:
        """The run tagged ``automed_key=key`` under ``parent`` (reopened if it had ended), else a new one.

        Restored or retried work (a resumed sweep, a trial restarted on another node) logs into the run it started
        instead of duplicating it. Returns ``(run_id, created)``."""
        run = self.find_run(key, parent)
        if run is not None:
            if run.info.status != "RUNNING":
                self.client.update_run(run.info.run_id, status="RUNNING")
            return str(run.info.run_id), False
        return self.start_run(name, parent=parent, tags={**(tags or {}), "automed_key": key}), True

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        self.check_store()
        from mlflow.entities import Param

        flat = flatten(self.redactor.value(params))
        items = [Param(k, v) for k, v in sorted(flat.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float | None], step: int | None = None) -> None:
        self.check_store()
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        # undefined metrics (None, NaN: e.g. a label absent from a case) are omitted, never logged as NaN
        items = [
            Metric(k, float(v), ts, step or 0)
            for k, v in metrics.items()
            if v is not None and math.isfinite(v)
        ]
        if items:
            self.client.log_batch(run_id, metrics=items)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.check_store()
        from mlflow.entities import RunTag

        r = self.redactor
        self.client.log_batch(run_id, tags=[RunTag(k, str(r.value(str(v)))) for k, v in tags.items()])

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        """Log a redacted copy of ``path`` (a file or a folder) under its redacted name."""
        self.check_store()
        import tempfile

        with tempfile.TemporaryDirectory(prefix="automed-artifact-") as tmp:
            dest = Path(tmp) / self.redactor.name(path.name)
            if path.is_dir():
                self.redactor.tree(path, dest)
            else:
                self.redactor.copy(path, dest)
            self.client.log_artifact(run_id, str(dest), artifact_path)

    def log_figure(self, run_id: str, figure: Any, name: str) -> None:
        self.check_store()
        self.client.log_figure(run_id, figure, "/".join(self.redactor.name(p) for p in name.split("/")))

    def log_dataset(self, run_id: str, name: str, digest: str, source: str) -> None:
        self.check_store()
        import warnings

        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "can be interpreted in multiple ways": a local path either way
            src = resolve_dataset_source(self.redactor.path_text(source))
        ds = MetaDataset(src, name=name, digest=digest)  # type: ignore[abstract]
        self.client.log_inputs(
            run_id,
            datasets=[
                DatasetInput(ds._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", "training")])
            ],
        )

    def tag_version(self, name: str, version: str, tags: dict[str, str]) -> None:
        """Tags on a registered model version (redacted like everything else)."""
        self.check_store()
        for k, v in tags.items():
            self.client.set_model_version_tag(name, version, k, str(self.redactor.value(str(v))))

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.check_store()
        self.client.set_terminated(run_id, status)

    def reopen(self, run_id: str) -> None:
        """A run that ended (a stopped command's) set RUNNING again, as the work it tracks resumes."""
        self.check_store()
        if self.client.get_run(run_id).info.status != "RUNNING":
            self.client.update_run(run_id, status="RUNNING")

    def mark_finished(self, run_id: str) -> None:
        """End ``run_id`` as FINISHED where it is not: its work was done and logged, but its process died before it
        ended the run (left RUNNING), or was stopped in that moment (ended KILLED with the others). Best effort: a
        run the user deleted, or a store that fails now, is warned about; the training goes on."""
        self.check_store()
        try:
            run = self.client.get_run(run_id)
            if run.info.status != "FINISHED" and run.info.lifecycle_stage != "deleted":
                self.client.set_terminated(run_id, "FINISHED")
        except Exception as exc:  # MLflow raises many types (a deleted run, a store that went away)
            log.warning("the finished fold's MLflow run %s could not be ended FINISHED: %s", run_id, exc)

    def end_open_runs_under(self, parent: str, status: str) -> None:
        """End ``parent``'s runs still open at any depth (folds created up front but never started, or left by a
        process that died, under a trial that ended or not) as ``status``: a stopped command leaves no run RUNNING in
        the UI. A ``--resume`` reopens the ones it continues (:meth:`reopen`)."""
        self.check_store()
        filt = "attributes.status = 'RUNNING'"
        open_runs = self.client.search_runs([self.experiment_id], filter_string=filt, max_results=5000)
        parent_of = {r.info.run_id: r.data.tags.get("mlflow.parentRunId") for r in open_runs}
        for run_id in parent_of:
            up, hops = parent_of[run_id], 0
            while up and up != parent and hops < 16:  # through ended runs too, one lookup each
                up = (
                    parent_of[up]
                    if up in parent_of
                    else self.client.get_run(up).data.tags.get("mlflow.parentRunId")
                )
                hops += 1
            if up == parent:
                self.client.set_terminated(run_id, status)
