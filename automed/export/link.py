"""Which export belongs to a training work dir: ``WORKDIR/export_link.json`` (written by ``automed export``).

``automed predict WORKDIR`` uses the linked export (OpenVINO, else onnxruntime) instead of torch when it is still
the model's: the same fold checkpoints (by content hash) in the same order, and a parity check that passed. Anything
else (retrained folds, another fold selection, a failed or skipped parity check, a deleted folder) falls back to torch.
Torch-free on purpose: the exported path of ``automed predict`` never imports torch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from automed.artifacts import read_json, write_json_atomic
from automed.errors import ArtifactError, ProblemsError
from automed.records import fits, read_pair, shown
from automed.train.meta import load_model, read_meta
from automed.workdir import ENSEMBLE, MODEL, MODEL_BUNDLE, WorkDir, fold_name, recorded_place, relative_place

MODEL_FILE = MODEL
PAIR_FILE = Path(MODEL_BUNDLE) / ENSEMBLE  # an `automed select` folder that chose a pair


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_checkpoints(workdir: Path) -> list[Path]:
    """The checkpoint files the work dir's model (``model.json``) predicts with, in ensemble order; for a selection
    folder that chose a pair, every member's fold weights in its ``model_bundle``."""
    if not (workdir / MODEL_FILE).is_file() and (workdir / PAIR_FILE).is_file():
        bundle = (workdir / PAIR_FILE).parent
        out = []
        for m in read_pair(workdir / PAIR_FILE)["members"]:
            member = read_meta(bundle / m["folder"] / MODEL_FILE)
            out += [bundle / m["folder"] / f"{fold_name(f)}.pt" for f in member.predict_folds]
        return out
    meta = load_model(workdir)  # automed select's choice (inference.json) applied
    root = workdir / "train" / meta.configuration
    return [root / fold_name(f) / f"checkpoint_{meta.checkpoint}.pt" for f in meta.predict_folds]


def exported_folds(source: str | Path) -> list[list[int]] | None:
    """The fold numbers of the networks an export of ``source`` holds, per training, in the order of
    :func:`model_checkpoints` (recorded in the bundle for its ``--folds``). ``source``: a work dir, a selection
    folder, or a registered model's downloaded bundle (``model.json`` with its fold weights, or a pair's
    ``ensemble.json`` and member folders; ``automed export models:/...`` passes it); ``None`` for a bare
    ``models:/`` URI (no bundle to read)."""
    if str(source).startswith("models:/"):
        return None
    workdir = Path(source)
    pair = workdir / ENSEMBLE if (workdir / ENSEMBLE).is_file() else workdir / PAIR_FILE
    if not (workdir / MODEL_FILE).is_file() and pair.is_file():
        members = read_pair(pair)["members"]
        return [read_meta(pair.parent / m["folder"] / MODEL_FILE).predict_folds for m in members]
    return [load_model(workdir).predict_folds]


def checkpoint_digests(workdir: Path) -> list[str]:
    """SHA-256 of the checkpoints the model predicts with (:func:`model_checkpoints`), in ensemble order: recorded in
    an export and its link, so a package or a predict can tell whether an export is this model's."""
    return [_sha256(p) for p in model_checkpoints(workdir)]


def settings_digest(workdir: Path) -> str:
    """SHA-256 of what decides a model's predictions beside its weights: ``model.json`` with ``automed select``'s
    choice applied (postprocessing, TTA, window step, folds), or a selection's pair (``ensemble.json``). Recorded in
    an export (``export.json``): a package ships the work dir's export only while it is unchanged (a selection made
    after the export changes it, the weights not)."""
    if not (workdir / MODEL_FILE).is_file() and (workdir / PAIR_FILE).is_file():
        return _sha256(workdir / PAIR_FILE)
    settings = json.dumps(load_model(workdir).model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(settings.encode()).hexdigest()


def write_link(workdir: Path, folder: Path, report: dict[str, Any]) -> dict[str, Any]:
    """Record ``folder`` as ``workdir``'s export: where it is, and where it is relative to the work dir (found again
    when both move together, e.g. the default ``WORKDIR/export``); ``usable`` says whether predict may use it."""
    parity = report.get("parity", {})
    link = {
        "schema_version": 1,
        "path": str(folder.resolve()),
        "relative": relative_place(folder, workdir),
        "formats": sorted(report.get("files", {})),
        "checkpoints": checkpoint_digests(workdir),
        "parity_passed": bool(parity) and all(p.get("passed") for p in parity.values()),
    }
    write_json_atomic(WorkDir(workdir).export_link, link)
    return link


def usable_export(workdir: Path) -> tuple[Path | None, str]:
    """The linked export folder if ``automed predict`` may use it, else ``None``; and why, in words."""
    f = WorkDir(workdir).export_link
    if not f.is_file() or not ((workdir / MODEL_FILE).is_file() or (workdir / PAIR_FILE).is_file()):
        return None, "no export (run `automed export WORKDIR`)"
    try:
        link = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        link = None
    if not (
        fits(dict[str, Any], link)
        and fits(str, link.get("path"))
        and fits(str | None, link.get("relative"))
        and fits(list[str], link.get("checkpoints"))
    ):  # a damaged link is no export: torch predicts, as without one
        return None, f"the export link {f} is damaged (run `automed export WORKDIR` again)"
    folder = recorded_place(workdir, link["path"], link.get("relative"))
    if not (folder / "preprocess.json").is_file():
        return None, f"the linked export {folder} is gone"
    if not link.get("parity_passed"):
        return None, "the export's parity check did not pass (or did not run)"
    try:
        now = checkpoint_digests(workdir)
    except FileNotFoundError as exc:
        return None, f"a checkpoint is missing: {exc.filename}"
    if now != link["checkpoints"]:
        return None, "the model's folds changed since the export"
    try:  # the folder exported again since, from another work dir or selection: its networks are not this model's
        held = (read_export_record(folder) or {}).get("checkpoints", now)
    except ProblemsError as exc:
        return None, f"the linked export's record is damaged ({exc.problems[0].rule})"
    if held != now:
        return (
            None,
            f"the linked export {folder} holds another model's weights since (exported again into it)",
        )
    return folder, f"export {folder}"


def read_export_record(bundle: Path) -> dict[str, Any] | None:
    """An export folder's ``export.json`` (None: none, an export of an earlier automed): an object whose
    ``formats`` (where written) lists its network formats and ``checkpoints`` (where written) the digests of the
    weights it holds (:func:`checkpoint_digests`). A damaged one is refused naming the file, the rule, the value and
    the fix (it had crashed ``automed package --export`` with a bare JSONDecodeError or AttributeError)."""
    path = bundle / "export.json"
    if not path.is_file():
        return None
    fix = f"export the model again into {bundle} (automed export MODEL -o {bundle} --overwrite)"
    data = read_json(path, what="export.json", damaged_fix=fix)
    if not isinstance(data, dict):
        raise ArtifactError.single(path, "export.json must be a JSON object", shown(data), fix)
    for key, what in (("formats", "its network formats"), ("checkpoints", "its weights' digests")):
        if key in data and not fits(list[str], data[key]):
            raise ArtifactError.single(
                path, f"export.json's {key} must list {what} (text)", shown(data[key]), fix
            )
    return data
