"""The MLflow model registry: a bundle logged and registered as a pyfunc with automed's aliases (``candidate``,
``champion``), and a registered model downloaded again for ``automed predict models:/...``."""

from __future__ import annotations

import contextlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automed.artifacts import write_json_atomic
from automed.records import read_pair
from automed.tracking import (
    Tracker,
    bounded,
    bounded_client,
    registry_uri,
    resolve_uri,
    set_mlflow_uris,
    store_lock,
)
from automed.workdir import ENSEMBLE, MODEL, without_local_places

log = logging.getLogger(__name__)


def _requirements() -> list[str]:
    """The registered model's pip requirements: the automed package's own (it goes with the model as code)."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        return [r for r in requires("automed") or [] if "extra ==" not in r]
    except PackageNotFoundError:  # run from a source tree without installing it
        return ["torch", "numpy", "scipy", "SimpleITK", "pandas", "pydantic", "PyYAML", "mlflow", "torchio",
                "scikit-learn", "matplotlib"]  # fmt: skip


REGISTERING = "automed.registering"
CV_CASES = "cv_cases"  # model version tag: how many cases its CV score was measured on  # model version tag: the registration that made it has not finished


def register_ensemble(
    tracker: Tracker,
    run_id: str,
    bundle: Path,
    name: str,
    score: float,
    n_channels: int,
    median_spacing: list[float],
    columns: list[tuple[str, str]] | None = None,
    cases: int | None = None,
) -> dict[str, Any]:
    """Log ``bundle`` as an MLflow pyfunc on ``run_id``, register it as ``name`` and maintain the aliases. The
    model is logged from code (``automed/registry_entry.py`` names :class:`automed.registry_model.EnsembleModel`):
    no pickle; the automed package goes with it (``code/automed``), so a clean environment with the pip
    requirements loads it (``mlflow.pyfunc.load_model``, ``mlflow models serve``).

    The new version always becomes ``candidate``; it becomes ``champion`` when there is none yet or its CV score
    (the task's: foreground Dice, AUC, R²) is at least the champion's (tag ``cv_score``), or it is a later state
    of the champion's own training (one MLflow run) whose CV covers more cases (tag ``cv_cases``: ``cases``, the
    cases the score was measured on; ``--fold 0`` then ``--fold 1`` into one work dir). ``columns`` (name, MLflow
    type): the table an image-level model returns; ``None``: label maps.
    """
    tracker.check_store()
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    outputs = (
        Schema([TensorSpec(np.dtype(np.int64), (-1, -1, -1, -1))])
        if columns is None
        else Schema([ColSpec(kind, col) for col, kind in columns])
    )
    sig = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, n_channels, -1, -1, -1))]),
        outputs=outputs,
        params=ParamSchema(
            [
                ParamSpec(f"spacing_{a}", "double", float(s))
                for a, s in zip("zyx", median_spacing, strict=True)
            ]
        ),
    )

    # a finished training's run (automed select registers it again) keeps its status and end time: the fluent run
    # below ends it FINISHED now, or FAILED when stopped or failed mid-upload
    ended = _ended(tracker, run_id)
    try:
        return _log_and_register(tracker, bundle, name, sig, score, run_id, cases)
    finally:
        if ended is not None:
            with contextlib.suppress(Exception), bounded(tracker.uri):
                tracker.client.set_terminated(run_id, ended[0], ended[1])


def _ended(tracker: Any, run_id: str) -> tuple[str, int | None] | None:
    """The run's status and end time when it has ended, else (or unreadable) ``None``."""
    try:
        with bounded(tracker.uri):
            info = tracker.client.get_run(run_id).info
    except Exception:
        return None
    return None if info.status == "RUNNING" else (str(info.status), info.end_time)


def _log_and_register(
    tracker: Any, bundle: Path, name: str, sig: Any, score: float, run_id: str, cases: int | None
) -> dict[str, Any]:
    """The bundle logged as a pyfunc model on ``run_id`` and registered (the champion's alias moved by the rule of
    :func:`register_ensemble`)."""
    import tempfile
    import warnings

    import mlflow

    from automed.tracking_uri import set_mlflow_uris

    # the fluent calls below (log_model, register_model) go to this tracker's stores: another Tracker of the process
    # (a fold's, made without the work dir's recorded registry) had pointed them at the tracking store's registry
    set_mlflow_uris(tracker.uri, tracker.registry)
    # MLflow's fluent calls bounded too: a server gone mid-upload costs seconds, not MLflow's minutes of retries
    with (
        bounded(tracker.uri),
        mlflow.start_run(run_id=run_id),
        warnings.catch_warnings(),
        tempfile.TemporaryDirectory(prefix="automed-bundle-") as tmp,
    ):
        # no input example on purpose: it would run a full prediction at logging time. The bundle goes redacted,
        # from a neutral temp path (the MLmodel file records where it came from), and the source tag does not name
        # the local script; the package is copied without its byte-code caches.
        warnings.simplefilter("ignore")
        logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
        shipped = tracker.redactor.tree(bundle, Path(tmp) / "model_bundle")
        if (
            shipped / ENSEMBLE
        ).is_file():  # a pair's members' places relative to the bundle name local folders
            pair = without_local_places(read_pair(shipped / ENSEMBLE))
            write_json_atomic(shipped / ENSEMBLE, pair)
        package = Path(__file__).resolve().parent
        code = shutil.copytree(
            package, Path(tmp) / "code" / "automed", ignore=shutil.ignore_patterns("__pycache__")
        )
        entry = shutil.copy(package / "registry_entry.py", tmp)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(entry),
            artifacts={"bundle": str(shipped)},
            code_paths=[str(code)],
            signature=sig,
            pip_requirements=_requirements(),
            # MLflow adds the login as mlflow.user (runs say "unknown": automed creates them without it)
            tags={"mlflow.source.name": "automed", "mlflow.source.type": "LOCAL", "mlflow.user": "unknown"},
        )
        _without_temp_folder(tracker.client, info.model_id, Path(tmp))
        # the registry's lock, not the tracking store's: two registrations at once (from different tracking stores
        # into one registry too) each compare with the champion the other left
        with store_lock(tracker.registry):
            # marked until automed's registration is complete (select.register removes the mark): a stopped one
            # leaves a version its next registration knows to replace
            version = str(mlflow.register_model(info.model_uri, name, tags={REGISTERING: "true"}).version)
            client = tracker.client
            client.set_model_version_tag(name, version, "cv_score", f"{score:.6f}")
            if cases is not None:
                client.set_model_version_tag(name, version, CV_CASES, str(cases))
            client.set_registered_model_alias(name, "candidate", version)
            champion_version = _crown(client, name, Measured(version, run_id, score, cases))
    return {
        "name": name,
        "version": version,
        "champion": champion_version,
        "uri": f"models:/{name}/{version}",
    }


@dataclass(frozen=True)
class Measured:
    """A registered version and its CV evidence: the run that trained it, its score and how many cases the score
    was measured on (``None``: not recorded)."""

    version: str
    run_id: str
    score: float
    cases: int | None


def _held(champion: Any) -> Measured:
    """The champion version's evidence, from its tags (``cv_fg_dice``: written by automed before ``cv_score``)."""
    tags = champion.tags
    cases = tags.get(CV_CASES)
    return Measured(
        str(champion.version),
        str(champion.run_id),
        float(tags.get("cv_score", tags.get("cv_fg_dice", "-1"))),
        int(cases) if cases is not None and cases.isdigit() else None,
    )


def _crown(client: Any, name: str, new: Measured) -> str:
    """Make ``new`` the champion when there is none, when its CV score is at least the champion's (tag kept to 6
    digits), or when it is a later state of the champion's own training whose CV covers more cases (its folds
    trained one command at a time: the scores of 3 and of 6 cases do not compare, and the model of two folds
    holds the one of one); the champion's version. Scores of different trainings measured on different numbers of
    cases are still compared, with a warning saying so."""
    from mlflow.exceptions import MlflowException

    champion = None
    try:
        champion = client.get_model_version_by_alias(name, "champion")
    except MlflowException as exc:  # only "no champion yet": a store that fails must not crown a worse model
        if "not found" not in str(exc).lower():
            raise
    if champion is None:
        client.set_registered_model_alias(name, "champion", new.version)
        return new.version
    held = _held(champion)
    wider = new.cases is not None and held.cases is not None and new.cases > held.cases
    if held.run_id == new.run_id and wider:
        client.set_registered_model_alias(name, "champion", new.version)
        return new.version
    crowned = new.score >= held.score - 1e-6
    if new.cases is not None and held.cases is not None and new.cases != held.cases:
        log.warning(
            "%s version %s (CV %.4f on %d cases) %s champion version %s (CV %.4f on %d cases): the two scores "
            "were measured on different cases; to choose on the same cases, compare the trainings with automed "
            "select (or set the alias by hand: MlflowClient().set_registered_model_alias)",
            name, new.version, new.score, new.cases, "replaces" if crowned else "is not", held.version,
            held.score, held.cases,
        )  # fmt: skip
    if crowned:
        client.set_registered_model_alias(name, "champion", new.version)
        return new.version
    return held.version


def _without_temp_folder(client: Any, model_id: str, tmp: Path) -> None:
    """The logged model's MLmodel file with the temp folder it was logged from as ``<tmp>``: MLflow records the
    bundle's and the entry's absolute paths there (loading uses only their names), and a TMPDIR such as
    ``/scratch/<user>/`` or ``/home/<user>/tmp`` named a person in every registered model sent to the store."""
    import os
    import tempfile

    import mlflow

    location = client.get_logged_model(model_id).artifact_location
    with tempfile.TemporaryDirectory(prefix="automed-mlmodel-") as d:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/MLmodel", dst_path=d))
        text = local.read_text()
        fixed = text.replace(os.path.realpath(tmp), "<tmp>").replace(str(tmp), "<tmp>")
        if fixed != text:
            local.write_text(fixed)
            client.log_model_artifact(model_id, str(local))


def download_model(uri: str, dest: Path, tracking_uri: str | None = None) -> Path:
    """Download a registered model (``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``); return its bundle folder."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from automed.errors import ArtifactError

    resolved = resolve_uri(tracking_uri)
    if resolved.startswith("sqlite:///") and not Path(resolved[len("sqlite:///") :]).is_file():
        raise ArtifactError.single(  # never create an empty store where none was
            uri,
            "a models:/ URI is looked up in an MLflow store",
            f"no store at {resolved}",
            "pass --tracking-uri of the store the model was registered in (or run from its folder)",
        )
    set_mlflow_uris(resolved, registry_uri(resolved))
    registry = bounded_client(resolved)  # a server gone: the clear error in seconds, not MLflow's minutes
    try:
        with bounded(resolved):
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest)))
    except MlflowException as exc:
        raise ArtifactError.single(
            uri, "a models:/ URI names a registered model and an @alias or /version of it",
            str(exc).splitlines()[0][:200], "registered here: " + _registered_summary(registry),
        ) from exc  # fmt: skip
    hits = sorted(local.rglob(ENSEMBLE)) or sorted(local.rglob(MODEL))
    if not hits:
        found = "no files at all (deleted from the store's artifacts?)" if not any(local.rglob("*")) else (
            "files without model.json (not an automed model)")  # fmt: skip
        raise ArtifactError.single(
            uri, "a registered automed model holds its bundle (model.json and the fold weights) in the store", found,
            f"use another version or alias (registered here: {_registered_summary(registry)}), or register the "
            "training again: `automed select WORKDIR -o OUT` registers a new version when the registered one lost "
            "its files",
        )  # fmt: skip
    return hits[0].parent


def _registered_summary(client: Any) -> str:
    """The registered models of a store with their aliases and versions, for an error's fix (at most 10)."""
    from mlflow.exceptions import MlflowException

    try:
        models = client.search_registered_models(max_results=10)
    except MlflowException:
        return "(the store cannot be read)"
    parts = [
        f"{m.name} (aliases {', '.join('@' + a for a in sorted(getattr(m, 'aliases', {}) or {})) or 'none'}; "
        f"latest version {max((int(v.version) for v in m.latest_versions or []), default='-')})"
        for m in models
    ]
    return "; ".join(parts) or "none (register one with `automed train`)"
