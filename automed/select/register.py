"""Registration, in one module: the model bundle of a training (plan, model metadata with the inference settings in
force, the fold weights it predicts with), the bundle of a pair that selection chose (one folder per member, their
averaging and the pair's postprocessing), and their registration as versions of the dataset's registered model
(``candidate``, and ``champion`` when the CV score is at least the current champion's). Registry state (name,
version, champion) is kept in the work dir's ``tracking.json``, never in ``model.json``."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from automed.artifacts import atomic_directory, read_json, tree_hash, write_json_atomic
from automed.errors import ArtifactError
from automed.model_store import REGISTERING, register_ensemble
from automed.plan.schema import Plan
from automed.preprocess.previous_stage import check_first_stage
from automed.privacy import Redactor
from automed.records import TRACKING_VERSION, fits, read_tracking, shown, stamped
from automed.registry_model import ENSEMBLE_FILE, PREVIOUS, write_channel_names
from automed.select.names import candidate_names
from automed.tracking import Tracker
from automed.train.meta import ModelMeta, load_model
from automed.train.state import load_checkpoint, save_checkpoint
from automed.workdir import MODEL_BUNDLE, WorkDir, fold_name, relative_place

log = logging.getLogger("automed")
BUNDLE_DIR = MODEL_BUNDLE
BUNDLE_TAG = "bundle_sha256"  # model version tag (and registry entry key): the registered bundle's tree_hash


def model_name_for(plan: Plan) -> str:
    """``automed-<dataset>`` for segmentation, ``automed-<dataset>-<classification|regression>`` for an image-level
    task: models of one dataset for different tasks (``--task``) never share a name, so never a champion rule that
    would compare a Dice with an AUC or an R²."""
    clean = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in plan.dataset_name).strip("_")
    task = f"-{plan.target.kind}" if plan.target is not None else ""
    return f"automed-{clean or 'model'}{task}"


CONTRACT_TAG = "automed_contract"  # registered model tag: what its versions take and give (one per name)


def contract(plan: Plan) -> dict[str, Any]:
    """What a model takes and gives: versions of one registered model are compared (champion) and swapped for one
    another (``@champion``), so they must agree on it."""
    t = plan.target
    outputs: Any = dict(sorted(plan.labels.items())) if t is None else "value"
    if t is not None and t.kind == "classification":
        outputs = list(t.class_names)
    images = f"{plan.image_dimension}D"
    return {"task": plan.task_type if t is None else t.kind, "images": images, "channels": plan.n_channels,
            "outputs": outputs}  # fmt: skip


def registry_name(plan: Plan, client: Any) -> str:
    """:func:`model_name_for`, unless that name holds models of another contract (another dataset under the same
    name, e.g. two ``dataset.csv``): then the name with a digest of this contract, and a warning."""
    from mlflow.exceptions import MlflowException

    name = model_name_for(plan)
    wanted = json.dumps(contract(plan), sort_keys=True)
    for candidate in (name, f"{name}-{hashlib.sha256(wanted.encode()).hexdigest()[:8]}"):
        try:
            held = client.get_registered_model(candidate).tags.get(CONTRACT_TAG)
        except MlflowException:  # not registered yet
            return candidate
        if held is None or held == wanted:  # (a name registered before the tag existed is taken as it is)
            if candidate != name:
                log.warning(
                    "registered model %s holds models of another dataset or task (%s); this one is registered "
                    "as %s",
                    name,
                    client.get_registered_model(name).tags.get(CONTRACT_TAG),
                    candidate,
                )
            return candidate
    return candidate  # the digest's name cannot hold another contract (a digest collision is not expected)


def write_model_bundle(workdir: Path, meta: ModelMeta, dest: Path | None = None) -> Path:
    """``dest`` (default ``WORKDIR/model_bundle/``), replaced atomically: plan.json, model.json (``meta``, with
    the inference settings in force), channels.json (the dataset's channel names: a prediction CSV's columns are
    checked against them) and the final weights of the folds the model predicts with."""
    wd = WorkDir(workdir)
    dest = dest or wd.bundle
    with atomic_directory(dest) as tmp:
        shutil.copy(wd.plan, tmp / "plan.json")
        write_channel_names(wd.root, tmp)
        for f in meta.predict_folds:  # the folds selection kept, else all
            state = load_checkpoint(wd.fold(meta.configuration, f) / "checkpoint_final.pt")
            save_checkpoint(tmp / f"{fold_name(f)}.pt", {"model": state["model"]})
        meta.save(WorkDir(tmp).model)
        if wd.previous_link.is_file():  # a cascade carries its first stage (raw: no postprocessing)
            prev = check_first_stage(wd.root)  # the model the cascade was trained on, unchanged
            first = load_model(prev)  # the folds the cascade predicts with, as in its training and validation
            folds = first.first_stage_folds(meta.predict_folds)
            raw = first.inference.model_copy(update={"postprocessing": [], "folds": folds})
            write_model_bundle(prev, first.model_copy(update={"inference": raw}), tmp / PREVIOUS)
    return dest


def cv_cases(workdir: Path) -> int | None:
    """How many cases a training's CV score was measured on (the cases of its ``cv/metrics.csv``); ``None`` where
    it has no readable table (an all-data model: its CV is its ``--cv`` work dir's)."""
    import pandas as pd

    table = WorkDir(workdir).cv_metrics
    try:
        cases = pd.read_csv(table, usecols=["case"], dtype=str)["case"]
    except (OSError, ValueError):  # missing, empty or without the column: not recorded
        return None
    return int(cases.nunique())


def _register(
    bundle: Path,
    plan: Plan,
    score: float,
    tracker: Tracker,
    run_id: str,
    previous: dict[str, Any] | None,
    cases: int | None,
) -> dict[str, Any]:
    """Register ``bundle`` as a version of the dataset's model (MLflow pyfunc) on ``run_id``, unless ``previous``
    (the entry remembered for it) is a version of the same bundle, byte for byte, registered with the same score:
    then that version stands."""
    digest = tree_hash(bundle)
    same = _unchanged(tracker, previous, digest, score)
    if same is not None:
        return same
    name = registry_name(plan, tracker.client)
    _drop_unfinished(tracker.client, name, run_id)
    _say_other_data(tracker.client, name, plan)
    registered = register_ensemble(
        tracker,
        run_id,
        bundle,
        name,
        score,
        plan.n_channels,
        plan.original_median_spacing,
        output_columns(plan),
        cases,
    )
    tracker.client.set_model_version_tag(registered["name"], registered["version"], BUNDLE_TAG, digest)
    tracker.client.set_model_version_tag(
        registered["name"], registered["version"], DATA_TAG, plan.fingerprint_hash
    )
    tracker.client.set_registered_model_tag(name, CONTRACT_TAG, json.dumps(contract(plan), sort_keys=True))
    tracker.client.delete_model_version_tag(
        registered["name"], registered["version"], REGISTERING
    )  # complete
    return {**registered, BUNDLE_TAG: digest}


# model version tag: the fingerprint of the data it was trained on (no case text)
DATA_TAG = "dataset_fingerprint"


def _say_other_data(client: Any, name: str, plan: Plan) -> None:
    """A warning when ``name`` holds versions trained on other data: two datasets of one name and one contract
    (two ``dataset.csv`` of 1-channel 3D volumes and a value) shared a model, and its champion compared their
    scores as alike and served one's model for the other's images (values in the other's units), without a word."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:  # no such model yet
        return
    other = sorted(
        int(v.version) for v in versions if (v.tags or {}).get(DATA_TAG) not in (None, plan.fingerprint_hash)
    )
    if other:
        log.warning("registered model %s holds version(s) %s trained on other data (another dataset of the same "
                    "name, or this one changed since): its champion compares their CV scores with this one's as "
                    "alike; if it is another dataset, give it a name of its own (its CSV file's, or dataset.json's "
                    "name)", name, ", ".join(map(str, other)))  # fmt: skip


def _drop_unfinished(client: Any, name: str, run_id: str) -> None:
    """A version of this run's model that a stopped registration left marked unfinished (:data:`REGISTERING`, set
    with the version and removed last): the registration that follows replaces it (a resumed training had left two
    versions of one model)."""
    from mlflow.exceptions import MlflowException

    try:
        found = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    except MlflowException:  # no such model yet
        return
    for v in found:
        if REGISTERING in (v.tags or {}):
            log.warning("registry: %s version %s, left unfinished by a stopped registration of this run, is "
                        "replaced by the new version", name, v.version)  # fmt: skip
            client.delete_model_version(name, v.version)


def _unchanged(
    tracker: Tracker, previous: dict[str, Any] | None, digest: str, score: float
) -> dict[str, Any] | None:
    """``previous`` with the registry's current champion when its version still exists, holds ``digest`` and was
    registered with ``score`` (an ``automed select`` re-run that changed nothing registers no new version; one that
    scores the same bundle higher, e.g. after postprocessing, registers it again so the champion rule sees it);
    else ``None``."""
    if not previous or previous.get(BUNDLE_TAG) != digest:
        return None
    from mlflow.exceptions import MlflowException

    client = tracker.client
    try:
        version = client.get_model_version(previous["name"], previous["version"])
        champion = client.get_model_version_by_alias(previous["name"], "champion").version
    except MlflowException:  # deleted, or no champion any more: register again
        return None
    if version.tags.get(BUNDLE_TAG) != digest or version.tags.get("cv_score") != f"{score:.6f}":
        return None
    if not _has_files(
        client, version
    ):  # its files deleted from the store: registered anew, not kept as it is
        return None
    return {**previous, "champion": str(champion)}


def _has_files(client: Any, version: Any) -> bool:
    """Whether the store still holds a registered version's files (a version MLflow logged without a model id
    cannot be asked: taken as whole)."""
    from mlflow.exceptions import MlflowException

    model_id = getattr(version, "model_id", None)
    if not model_id:
        return True
    try:
        return bool(client.list_logged_model_artifacts(model_id))
    except (MlflowException, OSError):
        return False


def output_columns(plan: Plan) -> list[tuple[str, str]] | None:
    """The table an image-level model's pyfunc returns (``None``: a segmentation model returns label maps)."""
    t = plan.target
    if t is None:
        return None
    if t.kind == "regression":
        return [("prediction", "double")]
    return [("prediction", "string")] + [(f"probability_{n}", "double") for n in t.class_names]


def _remember(workdir: Path, registered: dict[str, Any]) -> None:
    track = WorkDir(workdir).tracking
    saved = read_tracking(track) if track.is_file() else {}
    write_json_atomic(track, stamped({**saved, "registered": registered}, TRACKING_VERSION))


def registered_version(workdir: Path) -> dict[str, Any] | None:
    """The registry entry of a training work dir or of a selection folder's pair (``None``: not registered)."""
    wd = WorkDir(workdir)
    for f, read, fix in (
        (wd.tracking, read_tracking, _TRACKING_FIX),
        (wd.selection, _read_selection, _SELECT_FIX),
    ):
        if f.is_file():
            reg = read(f).get("registered")
            if reg and not fits(dict[str, Any], reg):
                rule = f"{f.name}'s registered must be the registry entry (an object)"
                raise ArtifactError.single(f, rule, shown(reg), fix)
            if reg:
                return dict(reg)
    return None


_TRACKING_FIX = "put back the tracking.json automed wrote (a backup), or delete its registered entry"
_SELECT_FIX = "run automed select again into this folder (-o), or put back the selection.json it wrote"


def _read_selection(path: Path) -> dict[str, Any]:
    """A selection folder's ``selection.json``, an object (refused naming the file, the rule, the value and the fix
    otherwise: it had crashed registration with a bare JSONDecodeError or AttributeError)."""
    data = read_json(path, what="selection.json", damaged_fix=_SELECT_FIX)
    if not fits(dict[str, Any], data):
        raise ArtifactError.single(path, "selection.json must be a JSON object", shown(data), _SELECT_FIX)
    result: dict[str, Any] = data
    return result


def register_training(
    workdir: Path, tracker: Tracker, run_id: str, score: float, cases: int | None = None
) -> dict[str, Any]:
    """Write the training's bundle (its model metadata with ``automed select``'s choice applied) and register it on
    ``run_id``; the entry is remembered in ``tracking.json``. ``cases``: how many cases ``score`` was measured on
    (default: its own CV's)."""
    previous = registered_version(workdir)
    bundle = write_model_bundle(workdir, load_model(workdir))
    cases = cv_cases(workdir) if cases is None else cases
    registered = _register(bundle, Plan.load(WorkDir(workdir).plan), score, tracker, run_id, previous, cases)
    _remember(workdir, registered)
    return registered


def reregister(workdir: Path, score: float, redactor: Redactor) -> dict[str, Any]:
    """Register ``workdir``'s model again with the inference settings now in force (after ``automed select``)."""
    track = read_tracking(WorkDir(workdir).tracking)
    tracker = Tracker(track["uri"], track["experiment"], redactor, track.get("registry") or None)
    return register_training(workdir, tracker, track["parent_run_id"], score)


def write_ensemble_bundle(
    workdirs: list[Path], dest: Path, postprocessing: list[dict[str, Any]], score: float
) -> Path:
    """``dest/``: ``ensemble.json`` and ``member_<i>/`` (plan.json, model.json, fold weights) per training. Each
    member's training is named by its folder's name and found again by its place relative to ``dest`` (never its
    absolute path: the bundle is registered and exported; the relative place is removed before it leaves)."""
    with atomic_directory(dest) as tmp:
        members = []
        for i, (wd, name) in enumerate(zip(workdirs, candidate_names(workdirs), strict=True)):
            meta = load_model(wd)
            # members give probabilities; the pair's own postprocessing (decided on the averaged CV) applies after
            inference = meta.inference.model_copy(update={"postprocessing": []})
            write_model_bundle(wd, meta.model_copy(update={"inference": inference}), tmp / f"member_{i}")
            members.append(
                {
                    "folder": f"member_{i}",
                    "name": name,
                    "relative": relative_place(wd, dest),
                    "configuration": meta.configuration,
                    "cv_score": meta.cv_score,
                }
            )
        write_json_atomic(
            tmp / ENSEMBLE_FILE,
            {
                "schema_version": 1,
                "members": members,
                "combine": "mean of probabilities",
                "postprocessing": postprocessing,
                "cv_score": score,
            },
        )
    return dest


def write_choice_bundle(res: dict[str, Any], out: Path, score: float) -> Path | None:
    """``OUT/model_bundle`` when selection (``res``, written to ``out``) chose a pair, so that ``automed predict``,
    ``export`` and ``package`` take the selection folder; ``None`` for a single training (its work dir is the model)."""
    members = [Path(m) for m in res["chosen"]["members"]]
    if len(members) < 2:
        return None
    return write_ensemble_bundle(members, out / BUNDLE_DIR, res["postprocessing"], score)


def register_members(
    workdirs: list[Path],
    out: Path,
    postprocessing: list[dict[str, Any]],
    score: float,
    tracker: Tracker,
    run_id: str,
) -> dict[str, Any]:
    """Write ``OUT/model_bundle`` for ``workdirs`` and register it on ``run_id`` (unless OUT's earlier selection
    registered the same bundle); the registry entry."""
    previous = registered_version(out)
    bundle = write_ensemble_bundle(workdirs, out / BUNDLE_DIR, postprocessing, score)
    counts = [cv_cases(wd) for wd in workdirs]  # the pair is scored on the cases its members share
    cases = None if None in counts else min(c for c in counts if c is not None)
    return _register(bundle, Plan.load(WorkDir(workdirs[0]).plan), score, tracker, run_id, previous, cases)
