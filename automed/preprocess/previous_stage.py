"""A cascade's extra inputs: the 3d_lowres stage's out-of-fold predictions on the full-resolution grid.

nnU-Net's 3d_cascade_fullres sees, beside the image, the one-hot prediction of the low-resolution stage. For
training, every case's prediction must come from the 3d_lowres model that did *not* train on it (its validation
fold), so the full-resolution stage learns from predictions as good as those it will get on new cases. Hence the
3d_lowres training must share the plan and the splits and have validated every case (all its folds finished).

``WORKDIR/previous_stage.json`` links the 3d_lowres work dir; ``WORKDIR/previous_stage/<case>.npy`` holds each
prediction as class indices on the case's preprocessed grid (int16), with a manifest; skipped when unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from automed.artifacts import atomic_directory, read_json, write_json_atomic
from automed.data.io import read_image
from automed.data.splits import read_splits
from automed.errors import ArtifactError
from automed.parallel import progress_bar
from automed.plan.schema import Plan
from automed.preprocess.pipeline import preprocess_label
from automed.records import read_keyed
from automed.train.meta import model_digest, read_meta
from automed.workdir import WorkDir, recorded_place, relative_place

MANIFEST_VERSION = 1

log = logging.getLogger(__name__)


def _fail(path: Path, rule: str, value: object, fix: str) -> ArtifactError:
    return ArtifactError.single(path, rule, value, fix)


def _lowres_fix(previous: str) -> str:
    return f"train it first: `automed train DATASET -o LOWRES --configuration {previous} --folds 5`"


def link_previous(workdir: Path, previous_wd: Path, plan: Plan, configuration: str) -> dict[str, Any]:
    """Check that ``previous_wd`` is a finished training of ``configuration``'s previous stage on the same plan and
    splits that validated every case, and record the link (``previous_stage.json``). Returns the link."""
    stage = plan.configurations[configuration].previous_stage
    assert stage is not None, f"{configuration} has no previous stage"
    prev = WorkDir(previous_wd.resolve())
    if not prev.model.is_file():
        raise _fail(
            prev.root,
            f"{configuration} needs a finished {stage} training",
            "no model.json",
            _lowres_fix(stage),
        )
    meta = read_meta(prev.model)
    if meta.configuration != stage:
        raise _fail(prev.model, f"{configuration} refines {stage}", meta.configuration, _lowres_fix(stage))
    if Plan.load(prev.plan).hash != plan.hash:
        raise _fail(
            prev.plan,
            "a cascade and its previous stage share one plan",
            "another plan (dataset, preset or planner options differ)",
            "train both stages on the same dataset with the same --preset",
        )
    splits, prev_splits = (read_splits(WorkDir(p).splits) for p in (workdir, prev.root))
    if splits["folds"] != prev_splits["folds"]:
        raise _fail(
            prev.splits,
            "a cascade and its previous stage share one split",
            "other folds",
            "train the cascade on the first stage's dataset with its --folds (or retrain both into new --output)",
        )
    missing = [cid for cid in _all_cases(splits) if _prediction(prev.root, stage, prev_splits, cid) is None]
    if missing:
        raise _fail(
            prev.root,
            "every case needs an out-of-fold prediction of the previous stage (its validation fold)",
            f"{len(missing)} case(s) never validated, e.g. fold of {missing[0]!r} not trained",
            _lowres_fix(stage),
        )
    link = {
        "workdir": str(prev.root),
        "relative": relative_place(prev.root, workdir),
        "configuration": stage,
        "model": _digest(prev.model),
    }
    link = _kept_link(workdir, link) or link
    write_json_atomic(WorkDir(workdir).previous_link, link)
    return link


def _kept_link(workdir: Path, link: dict[str, Any]) -> dict[str, Any] | None:
    """The link already recorded when it names the same first-stage model, found where ``link`` found it: kept as
    it is (the cascade's folds and ``previous_stage/`` were made from it; its folders may have moved together), a
    link of the earlier format (no ``relative``) only brought to the current model digest (no migration: the
    training's check of an unchanged link compares them whole)."""
    f = WorkDir(workdir).previous_link
    if not f.is_file():
        return None
    try:
        kept = read_link(workdir)
    except ArtifactError as exc:  # damaged: which first stage it named is unknown
        wrong = exc.problems[0]
        log.warning("%s: %s, found %s; the link is recorded anew", wrong.file, wrong.rule, wrong.value)
        return None
    if kept.get("configuration") != link["configuration"]:
        return None
    root = Path(link["workdir"])
    if first_stage_root(workdir, kept).resolve() != root:
        return None
    if "relative" in kept:
        return kept if kept.get("model") == link["model"] else None
    legacy = legacy_digest(WorkDir(root).model)
    return {**kept, "model": link["model"]} if kept.get("model") in (link["model"], legacy) else None


def first_stage_root(workdir: Path, link: dict[str, Any]) -> Path:
    """The first-stage work dir a cascade's link names: moved or copied with the cascade's work dir, at its place
    relative to it; else where it was."""
    return recorded_place(workdir, link["workdir"], link.get("relative"))


def _all_cases(splits: dict[str, Any]) -> list[str]:
    return sorted({c for f in splits["folds"] for c in f["val"]})


def _prediction(prev_root: Path, stage: str, prev_splits: dict[str, Any], cid: str) -> Path | None:
    """The validation prediction of ``cid`` by the previous-stage model that held it out, if that fold finished."""
    for k, fold in enumerate(prev_splits["folds"]):
        if cid in fold["val"]:
            path = WorkDir(prev_root).fold(stage, k) / "validation" / f"{cid}.nii.gz"
            return path if path.is_file() else None
    return None


def _digest(path: Path) -> str:
    """The first stage's model by what identifies its training (``meta.model_digest``: a rerun that rewrites the same
    model, or re-chooses its inference settings, is the same model)."""
    return model_digest(path)[:16]


def read_link(workdir: Path) -> dict[str, Any]:
    """A cascade's ``previous_stage.json``: an object naming the first stage's work dir (``workdir``, text; its
    ``relative`` place, text, and the ``model`` digest, text, when recorded). A damaged one (not JSON, edited by hand)
    is an :class:`ArtifactError` naming the file, the key and the value (it had crashed with a bare KeyError)."""
    path = WorkDir(workdir).previous_link
    link = read_json(path, what="previous_stage.json")
    fix = "put back the previous_stage.json automed wrote (a backup), or train the cascade anew into a new --output"
    if not isinstance(link, dict):
        raise _fail(
            path, "previous_stage.json must hold a JSON object", f"{link!r} ({type(link).__name__})", fix
        )
    if not isinstance(link.get("workdir"), str):
        found = f"{link['workdir']!r} ({type(link['workdir']).__name__})" if "workdir" in link else "none"
        raise _fail(
            path, "previous_stage.json must hold workdir, the first stage's work dir (text)", found, fix
        )
    for key in ("relative", "model", "configuration"):
        if key in link and not isinstance(link[key], str):
            raise _fail(
                path,
                f"previous_stage.json's {key} must be text",
                f"{link[key]!r} ({type(link[key]).__name__})",
                fix,
            )
    return link


def check_first_stage(workdir: Path) -> Path:
    """The first-stage work dir of the cascade in ``workdir``, refused when its model changed since the cascade was
    trained on its predictions (extended or retrained: its ``model.json`` digest differs from the link's): the
    cascade's folds learnt from the earlier model's predictions and would predict from another's."""
    wd = WorkDir(workdir)
    link = read_link(workdir)
    prev = WorkDir(first_stage_root(workdir, link))
    if not prev.model.is_file():
        raise _fail(prev.root, "a cascade predicts through its first stage", "no model.json (moved or deleted?)",
                    "restore the first-stage work dir where it was")  # fmt: skip
    if link.get("model") not in (_digest(prev.model), legacy_digest(prev.model)):
        raise _fail(
            wd.previous_link,
            "a cascade keeps the first-stage model it was trained on",
            f"{prev.root.name}'s model changed since (extended or retrained)",
            "train the cascade again into a new --output on the changed first stage (or predict with the first "
            "stage alone)",
        )
    return prev.root


def legacy_digest(path: Path) -> str:
    """How links written before 2026-12-04 named the first stage's ``model.json`` (path, size, mtime): such a link
    still holds while that file is untouched."""
    st = path.stat()
    return hashlib.sha256(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]


def write_previous_stage(workdir: Path, plan: Plan, configuration: str, show_progress: bool = True) -> str:
    """``WORKDIR/previous_stage/``: every case's previous-stage prediction on ``configuration``'s preprocessed grid.
    Returns ``"written"`` or ``"skipped"`` (same link, plan and case list as before)."""
    wd = WorkDir(workdir)
    link = read_link(workdir)
    prev_root = first_stage_root(workdir, link)
    prev_splits = read_splits(WorkDir(prev_root).splits)
    cases = _all_cases(read_splits(wd.splits))
    cfg = plan.configurations[configuration]
    key = {"schema_version": MANIFEST_VERSION, "plan_hash": plan.hash, "link": link, "cases": cases}
    manifest = wd.previous_stage / "manifest.json"
    if _manifest(manifest) == key:
        return "skipped"
    label_values = sorted(int(k) for k in plan.labels)
    pre = wd.preprocessed / cfg.data_identifier
    with atomic_directory(wd.previous_stage) as tmp, progress_bar(not show_progress) as bar:
        task = bar.add_task("previous stage", total=len(cases))
        for cid in cases:
            path = _prediction(prev_root, link["configuration"], prev_splits, cid)
            if path is None:
                raise _fail(
                    prev_root,
                    "every case needs an out-of-fold prediction",
                    cid,
                    _lowres_fix(link["configuration"]),
                )
            arrays, _ = read_image(path)
            props = _case_properties(pre / f"{cid}.json")
            np.save(tmp / f"{cid}.npy", preprocess_label(arrays[0], props, plan, cfg, label_values))
            bar.advance(task)
        write_json_atomic(tmp / "manifest.json", key)
    return "written"


def _manifest(path: Path) -> Any:
    """What ``previous_stage/manifest.json`` records; None when there is none, or (with a warning) when it is not
    JSON: the predictions are then written anew."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as exc:  # not JSON (UnicodeDecodeError included)
        log.warning(
            "%s: manifest.json must be valid JSON, found %s; the predictions are written anew", path, exc
        )
        return None


# a preprocessed case's properties that a previous-stage prediction needs: its type and, in words, what it is
_PROPS_KEYS: tuple[tuple[str, Any, str], ...] = (
    ("crop_box", list[list[int]], "the crop box, a [start, stop] pair per axis"),
    ("shape_after_resampling", list[int], "the resampled shape, whole numbers"),
    ("separate_axis", int | None, "the axis resampled on its own, a whole number or null"),
)


def _case_properties(path: Path) -> dict[str, Any]:
    """A preprocessed case's properties (``<case>.json``, written by preprocessing); a damaged one is refused naming
    the file, the rule, the value and the fix (it had crashed the cascade with a bare JSONDecodeError or KeyError)."""
    fix = f"delete the preprocessed folder {path.parent} and re-run (it is preprocessed anew)"
    return read_keyed(path, _PROPS_KEYS, fix)
