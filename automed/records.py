"""The work dir's plain JSON records, those without a pydantic schema of their own: ``train_config.json`` (dataset,
training config, options), ``tracking.json`` (MLflow store, runs, registry entry), each fold's ``progress.json``
(schedule, optimizer, per-epoch history) and ``cv/summary.json`` (the cross-validation summary).

Each is written with its ``schema_version`` (:func:`stamped`) and read through :func:`read_record`, which refuses
another version (a newer automed's) naming the file, the version found and the fix. A record written before these
carried a version has no ``schema_version``: it is version 1, so the work dirs of earlier automed versions keep
working (resume, select, export, report). Only the reading is checked: whether a stage is skipped or resumed never
compares whole records, so the added key makes no earlier work dir look changed."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from automed.artifacts import check_schema_version, read_json
from automed.errors import ArtifactError, Problem

log = logging.getLogger(__name__)

TRAIN_CONFIG_VERSION = 1
TRACKING_VERSION = 1
PROGRESS_VERSION = 1
CV_SUMMARY_VERSION = 1
UNVERSIONED = 1  # the version of a record written before it carried ``schema_version``

PROGRESS = "progress.json"  # in each fold's folder


@cache
def _adapter(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def fits(kind: Any, value: Any) -> bool:
    """Whether ``value`` (read from JSON) is of type ``kind`` strictly: "2" is no number, true no count (a whole
    number is a number)."""
    try:
        _adapter(kind).validate_python(value, strict=True)
    except ValidationError:
        return False
    return True


def key_problems(
    path: Path, data: dict[str, Any], keys: tuple[tuple[str, Any, str], ...], fix: str, *, needed_by: str = ""
) -> list[Problem]:
    """Each of ``keys`` (its name, its type checked by :func:`fits`, what it is in words) that the record ``path``
    read as ``data`` lacks or holds of another type, as a problem naming the file, the rule, the value and ``fix``
    (``needed_by``: why a missing one matters, said after the rule)."""
    return [
        Problem(str(path), f"{path.name} must hold {key} ({what}){needed_by}", "none", fix)
        if key not in data
        else Problem(str(path), f"{path.name}'s {key} must be {what}", shown(data[key]), fix)
        for key, kind, what in keys
        if key not in data or not fits(kind, data[key])
    ]


def read_keyed(
    path: Path, keys: tuple[tuple[str, Any, str], ...], fix: str, *, needed_by: str = ""
) -> dict[str, Any]:
    """The JSON object at ``path`` holding each of ``keys`` (:func:`key_problems`); refused naming the file, each
    rule, the value and ``fix`` when it is missing, not JSON, not an object, or lacks one of them."""
    data = read_json(path, what=path.name, damaged_fix=fix)
    if not fits(dict[str, Any], data):
        raise ArtifactError.single(path, f"{path.name} must be a JSON object", shown(data), fix)
    problems = key_problems(path, data, keys, fix, needed_by=needed_by)
    if problems:
        raise ArtifactError(problems)
    result: dict[str, Any] = data
    return result


def shown(value: Any) -> str:
    """``value`` as an error shows what was found: its repr (cut at 80 characters) and its type."""
    text = repr(value)
    return f"{text if len(text) <= 80 else text[:77] + '...'} ({type(value).__name__})"


def read_recomputable(
    path: Path, problem: Callable[[Any], tuple[str, str] | None], then: str, *, level: int = logging.WARNING
) -> Any:
    """A record that can be recomputed: its content, or None when there is none or (logged at ``level``, naming the
    file, the rule, the value and ``then``: what follows) when it is damaged; ``problem`` judges content that is
    JSON at all and returns the rule it breaks with the value that breaks it (None: none)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # not JSON (UnicodeDecodeError included)
        wrong: tuple[str, str] | None = (f"{path.name} must be a readable JSON file", str(exc)[:120])
    else:
        wrong = problem(data)
    if wrong is None:
        return data
    log.log(level, "%s: %s, found %s; %s", path, *wrong, then)
    return None


def stamped(record: dict[str, Any], version: int) -> dict[str, Any]:
    """``record`` as written: ``schema_version`` first, then its keys."""
    return {"schema_version": version, **{k: v for k, v in record.items() if k != "schema_version"}}


def read_record(path: Path, version: int) -> dict[str, Any]:
    """The JSON object at ``path``, of schema ``version`` (none recorded: :data:`UNVERSIONED`); an
    :class:`ArtifactError` when it is missing, not JSON, not an object, or of another version."""
    data = read_json(path, what=path.name)
    if not isinstance(data, dict):
        raise ArtifactError.single(
            path, f"{path.name} must be a JSON object", type(data).__name__, "delete it and re-run the stage"
        )
    check_schema_version(path, data, version, what=path.name, missing=UNVERSIONED)
    return data


def read_train_config(path: Path) -> dict[str, Any]:
    """A work dir's ``train_config.json``."""
    return read_record(path, TRAIN_CONFIG_VERSION)


def read_tracking(path: Path) -> dict[str, Any]:
    """A work dir's ``tracking.json``."""
    return read_record(path, TRACKING_VERSION)


def read_progress(path: Path) -> dict[str, Any]:
    """A fold's ``progress.json``."""
    return read_record(path, PROGRESS_VERSION)


def read_cv_summary(path: Path) -> dict[str, Any]:
    """A work dir's ``cv/summary.json``."""
    return read_record(path, CV_SUMMARY_VERSION)


def read_chosen(path: Path) -> dict[str, Any]:
    """What a ``selection.json`` chose (its ``chosen``): an object whose ``members`` lists the chosen work dirs
    (text) and whose ``relative`` (where written) lists their places relative to the selection folder (text or
    null, one per member). A damaged one is refused naming the file, the rule, the value and the fix (it had
    crashed predict and its review log with a bare JSONDecodeError, KeyError or TypeError)."""
    data = read_json(path, what="selection.json", damaged_fix=_SELECT_AGAIN)
    chosen: Any = data.get("chosen") if isinstance(data, dict) else data
    if not (fits(dict[str, Any], chosen) and fits(list[str], chosen.get("members"))):
        rule = "selection.json must hold chosen: an object whose members lists the chosen work dirs"
        raise ArtifactError.single(path, rule, shown(chosen), _SELECT_AGAIN)
    relative = chosen.get("relative")
    if relative is not None and not (
        fits(list[str | None], relative) and len(relative) == len(chosen["members"])
    ):
        rule = "selection.json's chosen relative must list each member's relative place (text or null)"
        raise ArtifactError.single(path, rule, shown(relative), _SELECT_AGAIN)
    result: dict[str, Any] = chosen
    return result


def read_bundle_meta(folder: Path) -> dict[str, Any]:
    """An export folder's ``preprocess.json`` (what its ``predict.py`` runs): an object whose ``files`` maps each
    network format to its files. A missing or damaged one is refused naming the file, the rule, the value and the
    fix (it had crashed package, export reuse and exported prediction with a bare error)."""
    path = folder / "preprocess.json"
    fix = f"export the model again into {folder} (automed export MODEL -o {folder} --overwrite)"
    if not path.is_file():
        raise ArtifactError.single(
            folder, "an export folder holds the preprocess.json automed export wrote", "none", fix
        )
    data = read_json(path, what="preprocess.json", damaged_fix=fix)
    if not (fits(dict[str, Any], data) and fits(dict[str, Any], data.get("files"))):
        files = data.get("files") if isinstance(data, dict) else data
        rule = "preprocess.json must be an object whose files maps each network format to its files"
        raise ArtifactError.single(path, rule, shown(files), fix)
    result: dict[str, Any] = data
    return result


PAIR_VERSION = 1


def read_pair(path: Path) -> dict[str, Any]:
    """A pair bundle's ``ensemble.json`` (``automed select`` writes it when it chooses two trainings): an object
    whose ``members`` lists at least one object naming its ``folder`` beside the file (one plain name: never a
    path out of the bundle), with ``relative`` and ``workdir`` (where written) text or null, and ``postprocessing``
    (where written) a list. A damaged one is refused naming the file, the rule, the value and the fix (it had
    crashed predict, export, package and the registry's model with a bare JSONDecodeError, KeyError or
    TypeError)."""
    data = read_json(path, what="ensemble.json", damaged_fix=_PAIR_AGAIN)
    if not fits(dict[str, Any], data):
        raise ArtifactError.single(path, "ensemble.json must be a JSON object", shown(data), _PAIR_AGAIN)
    check_schema_version(path, data, PAIR_VERSION, what="ensemble.json", missing=UNVERSIONED)
    members = data.get("members")
    rule = "ensemble.json's members list each member's folder (a name beside the file), relative and workdir text"
    if not (fits(list[dict[str, Any]], members) and members):
        raise ArtifactError.single(path, rule, shown(members), _PAIR_AGAIN)
    for m in members:
        folder = m.get("folder")
        plain = fits(str, folder) and folder not in ("", ".", "..") and Path(folder).name == folder
        if not (plain and fits(str | None, m.get("relative")) and fits(str | None, m.get("workdir"))):
            raise ArtifactError.single(path, rule, shown(m), _PAIR_AGAIN)
    if not fits(list[Any], data.get("postprocessing", [])):
        rule = "ensemble.json's postprocessing is a list of steps"
        raise ArtifactError.single(path, rule, shown(data["postprocessing"]), _PAIR_AGAIN)
    result: dict[str, Any] = data
    return result


_SELECT_AGAIN = "run automed select again into this folder (-o), or put back the selection.json it wrote"
_PAIR_AGAIN = (
    "run automed select again into its selection folder (-o), or put back the ensemble.json it wrote"
)


MINING = "mining.json"  # automed patch-miner's record, beside its patches.csv
_MINE_FIX = (
    "pass --mpp with the resolution of the patches the model was trained on (or mine the patches again)"
)


def mined_mpps(path: Path) -> set[float]:
    """The resolutions (micrometres per pixel) a patch miner's ``mining.json`` mined its slides at; a damaged one
    is refused naming the file, the rule, the value and the fix (it had crashed with a bare JSONDecodeError or
    KeyError)."""
    data = read_json(path, what="mining.json", damaged_fix=_MINE_FIX)
    slides: Any = data.get("slides") if isinstance(data, dict) else data
    if not (fits(list[dict[str, Any]], slides) and all(fits(float, s.get("target_mpp")) for s in slides)):
        rule = "mining.json's slides must each record its target_mpp (a number)"
        raise ArtifactError.single(path, rule, shown(slides), _MINE_FIX)
    return {round(float(s["target_mpp"]), 6) for s in slides}


def patches_mpp(source: Path) -> float | None:
    """The one resolution the patches of a patch miner's ``patches.csv`` (``source``) were mined at (its
    ``mining.json``); ``None`` for any other dataset, or patches of several resolutions."""
    mining = source.parent / MINING
    if source.suffix.lower() != ".csv" or not mining.is_file():
        return None
    mpps = mined_mpps(mining)
    return float(mpps.pop()) if len(mpps) == 1 else None


def readable_patches_mpp(source: Path) -> float | None:
    """:func:`patches_mpp`, ``None`` for a damaged ``mining.json`` too (for the readers that do without it: a
    training's fingerprint, the warning that the patches were mined again)."""
    try:
        return patches_mpp(source)
    except ArtifactError:
        return None
