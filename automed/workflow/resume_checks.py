"""What a resumed training (``--resume``/``--extend``) checks before anything runs: its ``train_config.json`` is one
this automed reads (:func:`read_saved_training`), options that it would silently ignore are refused, and a copied
work dir does not continue its original's MLflow runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any, get_type_hints

from automed.artifacts import check_schema_version
from automed.config import load_model
from automed.data.dataset import load_dataset
from automed.data.verify_rules import DEFAULT_MAX_VOXELS
from automed.errors import ArtifactError, ConfigError, Problem
from automed.preprocess.previous_stage import first_stage_root, read_link
from automed.privacy import strip_credentials
from automed.records import (
    TRACKING_VERSION,
    UNVERSIONED,
    fits,
    key_problems,
    read_tracking,
    read_train_config,
    shown,
)
from automed.train.config import TrainConfig, load_train_config
from automed.workdir import ALL_DATA, TRACKING, WorkDir, recorded_place
from automed.workflow.prepare import dataset_source
from automed.workflow.shape import SPLIT_FOLDS
from automed.workflow.train_options import TrainOptions

RESUME_TAKES = "--budget, --device, --workers, --ray-address and --trial-resources"


def read_saved_training(wd: Path) -> dict[str, Any]:
    """A resumed training's ``train_config.json``, read before anything runs: of this automed's schema
    (:func:`~automed.records.read_train_config`), with its dataset (text), its config (one this automed reads) and its
    options (an object; each this automed knows of its type). A damaged one (edited by hand, truncated) had crashed
    the resume with a bare KeyError, AttributeError or pydantic's ValidationError."""
    path = WorkDir(wd).train_config
    saved = read_train_config(path)
    fix = (
        "put back the train_config.json automed wrote (a backup), or resume with the automed that wrote it, or "
        "train anew into a new --output"
    )
    keys = (
        ("dataset", str, "the dataset's place, text"),
        ("config", dict[str, Any], "the training config, an object"),
        ("options", dict[str, Any], "the training's options, an object"),
    )
    problems = key_problems(path, saved, keys, fix, needed_by=": a resume reads it")
    if not problems:
        kinds = get_type_hints(TrainOptions)
        problems += [
            Problem(str(path), f"train_config.json's option {f.name} must be {_named(kinds[f.name])}",
                    shown(saved["options"][f.name]), fix)
            for f in fields(TrainOptions)
            if f.name in saved["options"] and not fits(kinds[f.name], saved["options"][f.name])
        ]  # fmt: skip
        try:
            load_model(TrainConfig, saved["config"], file=str(path))
        except ConfigError as exc:
            problems += [
                Problem(
                    str(path),
                    f"train_config.json's config must be one this automed reads: {p.rule}",
                    p.value,
                    fix,
                )
                for p in exc.problems
            ]
    if problems:
        raise ArtifactError(problems, f"cannot resume the training in {wd}")
    return saved


def _named(kind: Any) -> str:
    return str(kind).replace("<class '", "").replace("'>", "")


def refuse_ignored_on_resume(wd: Path, asked: dict[str, Any]) -> None:
    """``--resume``/``--extend`` continue a work dir with its saved dataset, config and options: an option given
    (``asked``: flag -> value, None when not given) that differs from what was saved would be silently ignored, so
    it is refused before anything runs (as a resumed sweep does); the same value typed again is accepted."""
    wdir = WorkDir(wd)
    if not wdir.train_config.is_file():
        return  # restore_training names the missing file
    saved = read_saved_training(
        wd
    )  # another automed's schema, or a damaged one, is refused before anything runs
    o, c = saved["options"], TrainConfig.model_validate(saved["config"])
    only = o.get("only_folds")
    folds = {"auto"} if o.get("folds_auto") else {"all"} if only == [ALL_DATA] else {str(o.get("folds"))}
    if o.get("folds_asked"):
        folds.add(str(o["folds_asked"]))  # the command as typed (more folds than subject groups)
    if o.get("budget_s") and only != [ALL_DATA] and o.get("folds") == SPLIT_FOLDS:
        folds.add("auto")  # --folds auto with --fold: the folds were the user's, the split the budget's
    stores = {o.get("tracking_uri")} | ({_tracked_uri(wdir)} if not o.get("tracking_uri") else set())
    overrides = {
        k: asked.get(f"--{k}") for k in ("configuration", "epochs") if asked.get(f"--{k}") is not None
    }
    first = previous_place(wd, o)
    same: dict[str, Callable[[Any], bool]] = {
        # a dataset moved elsewhere is given by its new place (restore_training checks its cases)
        "DATASET": lambda v: (
            dataset_source(load_dataset(v)) == saved["dataset"] or not Path(saved["dataset"]).exists()
        ),
        "--config": lambda v: _same_fields(load_train_config(v), overrides, c),
        "--configuration": lambda v: v == c.configuration,
        "--epochs": lambda v: v == c.epochs,
        "--folds": lambda v: str(v).strip().lower() in folds,
        "--fold": lambda v: not o.get("folds_auto") and sorted(v) == sorted(only or []),
        "--preset": lambda v: v == o.get("preset"),
        "--tracking-uri": lambda v: strip_credentials(v) in stores,
        "--register": lambda v: v == o.get("register", True),
        "--parallel-folds": lambda v: v == o.get("parallel_folds", 1),
        "--keep-case-ids": lambda v: bool(o.get("keep_case_ids")),
        "--overlays": lambda v: v == o.get("overlays", 0),
        "--cv": lambda v: str(Path(v).resolve()) == o.get("cv_workdir"),
        # the first stage as first typed, or where it is now (moved with the cascade)
        "--previous": lambda v: Path(v).resolve() in {Path(str(o.get("previous_workdir"))), first},
        "--full-ensemble": lambda v: not o.get("latency_cap"),
        "--max-voxels": lambda v: (
            v == (o.get("max_voxels") or DEFAULT_MAX_VOXELS)
        ),  # planned before: no change
        # a training saved without --task took its data's task: typing that task again is no change
        "--task": lambda v: (
            (None if v == "auto" else v) in {o.get("task"), o.get("task") or _planned_task(wdir)}
        ),
    }
    kept = {
        "DATASET": saved["dataset"], "--configuration": c.configuration, "--epochs": c.epochs,
        "--folds": " or ".join(sorted(folds)), "--fold": only, "--preset": o.get("preset"),
        "--register": o.get("register", True), "--parallel-folds": o.get("parallel_folds", 1),
        "--task": o.get("task") or _planned_task(wdir), "--overlays": o.get("overlays", 0),
        "--max-voxels": o.get("max_voxels") or DEFAULT_MAX_VOXELS,
    }  # fmt: skip
    if first is not None:
        kept["--previous"] = str(first)
    problems = [
        Problem(
            str(wdir.train_config),
            f"a resumed training keeps its own {flag.lstrip('-')} (only {RESUME_TAKES} apply to a resume)",
            (f"'{value}' asked" if isinstance(value, str | Path) else f"{value!r} asked")
            + (f", {kept[flag]!r} saved" if flag in kept else ""),
            "drop that option, or train into a new --output",
        )
        for flag, value in asked.items()
        if value is not None and not same[flag](value)
    ]
    if problems:
        raise ConfigError(problems)


def previous_place(wd: Path, options: dict[str, Any]) -> Path | None:
    """Where a cascade's first stage (``options``: its ``train_config.json`` options) is now: at its place relative
    to the cascade's work dir ``wd`` (both moved or copied together), else, for a record written before relative
    places, where the cascade's ``previous_stage.json`` finds it, else where it was. ``None``: no cascade."""
    absolute = options.get("previous_workdir")
    if not absolute:
        return None
    relative = options.get("previous_relative")
    if relative is None and WorkDir(wd).previous_link.is_file():
        return first_stage_root(wd, read_link(wd)).resolve()
    return recorded_place(wd, str(absolute), relative)


def _planned_task(wdir: WorkDir) -> str | None:
    """The task the work dir's plan trains (segmentation, classification, regression); None when the plan does not
    tell (none, not JSON, or no object: a plan.json of a list had crashed the resume with a bare AttributeError)."""
    try:
        plan = json.loads(wdir.plan.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(plan, dict):
        return None
    target, task = plan.get("target"), plan.get("task_type")
    if isinstance(target, dict) and "kind" in target:
        return str(target["kind"])
    return task if isinstance(task, str) else None


def _same_fields(given: TrainConfig, overrides: dict[str, Any], saved: TrainConfig) -> bool:
    """Whether every field the given config file sets (with the ``-c``/``--epochs`` typed with it) has the saved
    config's value."""
    fields = set(given.model_fields_set) | set(overrides)
    given = given.model_copy(update=overrides)
    return given.model_dump(include=fields) == saved.model_dump(include=fields)


def _tracked_uri(wdir: WorkDir) -> str | None:
    """The store a training that named none logs to (``tracking.json``: the environment's or the default)."""
    uri = read_tracking(wdir.tracking).get("uri") if wdir.tracking.is_file() else None
    return str(uri) if uri else None


# what a training reads of its tracking.json: each key's type, in words
_TRACKED: tuple[tuple[str, Any, str], ...] = (
    ("uri", str, "the MLflow store (text)"),
    ("experiment", str, "the MLflow experiment (text)"),
    ("workdir", str, "the work dir it logged from (text)"),
    ("parent_run_id", str, "the training's MLflow run id (text)"),
    ("fold_runs", dict[str, str], "each fold's MLflow run id, an object of text"),
    ("registry", str, "the model registry it registered in (text)"),
)


def refuse_a_copy(wd: Path, saved: dict[str, Any]) -> None:
    """A resumed work dir that is a copy of another one still there (same MLflow parent run) would log into the
    original's runs and register from them: refused. A moved work dir (the original is gone) continues its runs.
    ``saved``: the work dir's ``tracking.json`` as read (another automed's schema, or a key of another type, is
    refused here: it had crashed with a bare TypeError)."""
    path = WorkDir(wd).tracking
    check_schema_version(path, saved, TRACKING_VERSION, what=TRACKING, missing=UNVERSIONED)
    problems = [
        Problem(str(path), f"tracking.json's {key} must be {what}", shown(saved[key]),
                "put back the tracking.json automed wrote (a backup), or delete it (the training then logs to new "
                "MLflow runs), or resume with the automed that wrote it")
        for key, kind, what in _TRACKED
        if key in saved and not fits(kind, saved[key])
    ]  # fmt: skip
    if problems:
        raise ArtifactError(problems, f"cannot resume the training in {wd}")
    origin = saved.get("workdir")
    if not origin or Path(origin) == wd.resolve():
        return
    other = WorkDir(Path(origin)).tracking
    try:
        theirs = json.loads(other.read_text()) if other.is_file() else None
    except (OSError, ValueError):
        theirs = None
    # the original's record damaged (not JSON, no object: a list had crashed with a bare AttributeError): no runs
    # known to be shared
    same_runs = isinstance(theirs, dict) and theirs.get("parent_run_id") == saved.get("parent_run_id")
    if same_runs:
        raise ArtifactError.single(
            wd, "a resumed work dir logs to its own MLflow runs",
            f"a copy of {origin}, whose runs it shares", f"resume {origin} itself, or train anew into {wd.name}",
        )  # fmt: skip
