"""``automed train``: plan -> train every fold within the budget -> validate -> CV summary -> postprocessing on the
training's own CV -> model metadata (``model.json``, again after a resume) -> bundle -> MLflow registry.

One parent MLflow run per command, one child run per configuration x fold (made by the driver; workers log into
them). ``train_config.json``: the frozen config and options; ``tracking.json``: store, runs, registry entry."""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from automed._version import __version__
from automed.artifacts import write_json_atomic
from automed.config import parse_duration
from automed.data.dataset import Dataset
from automed.data.splits import read_splits
from automed.errors import ConfigError
from automed.fingerprint.schema import Fingerprint
from automed.plan.schema import Plan
from automed.privacy import public_uri, strip_credentials
from automed.records import read_progress, read_tracking, read_train_config
from automed.select.register import register_training
from automed.tasks.base import Task
from automed.tasks.registry import task_for
from automed.tracking import Tracker, check_tracking_uri, git_commit, resolve_uri
from automed.train.config import TrainConfig, load_train_config
from automed.train.device import pick_device, usable_device
from automed.train.meta import InferenceSettings, ModelMeta, resolve_training
from automed.train.state import fold_finished
from automed.workdir import ALL_DATA, WorkDir, locked
from automed.workdir_claim import claim_workdir, refuse_workdir_in_dataset
from automed.workflow.all_data import all_data_split, conclude_all_data
from automed.workflow.choice import log_record
from automed.workflow.disclosure import public_options, redactor_for
from automed.workflow.fold import FoldJob, log_summary_figures, validated_rows
from automed.workflow.fold_runs import Placement, check_cluster, run_fold_jobs, training_job
from automed.workflow.live import Mode
from automed.workflow.prepare import choose_configuration
from automed.workflow.resume_checks import refuse_a_copy, refuse_ignored_on_resume
from automed.workflow.screen import run_screening
from automed.workflow.shape import fold_count
from automed.workflow.sweep_stages import parse_resources
from automed.workflow.train_extension import (
    epochs_done,
    extension_targets,
    forget_extension,
    refuse_mixed_extension,
)
from automed.workflow.train_options import TrackingState, TrainOptions, TrainResult
from automed.workflow.train_start import (
    fold_list,
    require_training_workdir,
    restore_training,
    start_training,
)

log = logging.getLogger("automed")


def _save_config(wd: Path, config: TrainConfig) -> None:
    saved = read_train_config(WorkDir(wd).train_config)
    write_json_atomic(WorkDir(wd).train_config, {**saved, "config": config.model_dump(mode="json")})


def _same_training(wd: Path, saved: dict[str, Any], config: TrainConfig, opts: TrainOptions) -> bool:
    """The same command again (not a resume): the same store, this work dir (not a copy) and a configuration whose
    folds this work dir holds. Then its parent run goes on instead of an empty new one."""
    return (
        saved.get("uri") == strip_credentials(resolve_uri(opts.tracking_uri))
        and saved.get("workdir") == str(wd.resolve())
        and WorkDir(wd).fold(config.configuration, 0).parent.is_dir()
    )


def _live_run(tracker: Tracker, run_id: str) -> bool:
    """The run exists and is not deleted; any other store failure is raised (no second parent run for it)."""
    from mlflow.exceptions import MlflowException

    try:
        return bool(tracker.client.get_run(run_id).info.lifecycle_stage == "active")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":  # deleted for good, another store
            return False
        raise


def _open_tracking(
    wd: Path, plan: Plan, config: TrainConfig, opts: TrainOptions, ds: Dataset, reopen: bool
) -> tuple[Tracker, TrackingState]:
    """The store, experiment and parent run (reopened on resume and when the same command runs again into the same
    store, not replaced by an empty one; the driver creates them before any worker)."""
    wdir = WorkDir(wd)
    saved = read_tracking(wdir.tracking) if wdir.tracking.is_file() else {}
    if not reopen and not _same_training(wd, saved, config, opts):
        saved = {}  # another store, configuration or place: a new parent run
    refuse_a_copy(wd, saved)
    uri = resolve_uri(opts.tracking_uri or saved.get("uri"))
    linked = [Path(w) for w in (opts.previous_workdir, opts.cv_workdir) if w]  # placeholders in MLflow too
    tracker = Tracker(
        uri, plan.dataset_name, redactor_for([wd, *linked], keep_case_ids=opts.keep_case_ids, ds=ds),
        saved.get("registry") or None,
    )  # fmt: skip
    track = TrackingState(
        wdir.tracking, strip_credentials(uri), plan.dataset_name, saved.get("parent_run_id", ""),
        registry="" if tracker.registry == uri else strip_credentials(tracker.registry),
    )  # fmt: skip
    track.fold_runs = dict(saved.get("fold_runs", {}))
    if track.parent_run_id and not reopen and not _live_run(tracker, track.parent_run_id):
        track.parent_run_id, track.fold_runs = "", {}  # deleted in MLflow since: a new parent run
    if not track.parent_run_id:
        fp = Fingerprint.load(wdir.fingerprint)
        track.parent_run_id = tracker.start_run(
            "train-screen" if opts.screen else f"train-{config.configuration}",
            tags={
                "automed.version": __version__,
                "git.commit": git_commit(),
                "dataset.fingerprint": fp.hash,
                "device": str(pick_device(opts.device)),
                "host": socket.gethostname(),
            },
        )
        chosen = {  # a screening logs them once it has chosen (workflow/screen.py)
            "config": config.model_dump(mode="json"),
            "plan": plan.configurations[config.configuration].model_dump(mode="json"),
        }
        tracker.log_params(
            track.parent_run_id,
            {
                **({} if opts.screen else chosen),
                "options": {**public_options(asdict(opts)), "tracking_uri": public_uri(uri)},
            },
        )
        tracker.log_dataset(track.parent_run_id, plan.dataset_name, fp.hash, str(ds.source))
        for f in (wdir.fingerprint, wdir.plan, wdir.splits):
            tracker.log_artifact(track.parent_run_id, f)
    else:  # a stopped training's parent (KILLED) runs again
        tracker.reopen(track.parent_run_id)
    track.save()
    return tracker, track


def _fold_jobs(
    wd: Path,
    plan: Plan,
    config: TrainConfig,
    opts: TrainOptions,
    tracker: Tracker,
    track: TrackingState,
    resume: bool,
    extend: int,
    progress: Mode = "off",
) -> tuple[list[dict[str, Any]], dict[int, int], list[FoldJob]]:
    """Rows and epochs of folds finished before, and a job (with its MLflow run) for every other fold."""
    splits = read_splits(WorkDir(wd).splits)  # damaged: refused, never split anew under trained folds
    folds = fold_list(wd, config, opts, splits["n_folds"], extend)
    rows: list[dict[str, Any]] = []
    epochs: dict[int, int] = {}
    jobs: list[FoldJob] = []
    targets = extension_targets(wd, config, folds, extend)
    for fold in folds:
        fsplit = all_data_split(splits) if fold == ALL_DATA else splits["folds"][fold]
        folder = WorkDir(wd).fold(config.configuration, fold)
        done = fold_finished(folder)
        # a fold that completed this --extend before a kill is not extended again when the command is retyped
        more = extend if epochs_done(folder) < targets.get(str(fold), 0) else 0
        reused = validated_rows(folder, opts.validation_tta, opts.validation_mirrors) if not more else None
        if reused is not None:
            rows += reused
            epochs[fold] = len(read_progress(folder / "progress.json")["history"])
            if (resume or extend) and (done_run := track.fold_runs.get(str(fold))) is not None:
                # stopped after validation_metrics.json (written last, once all is logged), before its run ended:
                # the fold is finished, its run too (not left RUNNING or KILLED under a finished training)
                tracker.mark_finished(done_run)
            continue
        run_id = track.fold_runs.get(str(fold))
        if run_id is not None:  # ended KILLED or FAILED when the training stopped: it trains again
            tracker.reopen(run_id)
        else:
            run_id = tracker.start_run(
                f"{config.configuration}-fold{'_all' if fold == ALL_DATA else fold}",  # not `fold-1`
                parent=track.parent_run_id,
                tags={"fold": str(fold), "configuration": config.configuration},
            )
            n = {"n_train": len(fsplit["train"]), "n_val": len(fsplit["val"])}
            tracker.log_params(run_id, {"fold": fold, **n, "config": config.model_dump(mode="json")})
            track.fold_runs[str(fold)] = run_id
            track.save()
        # a fold killed during its --extend continues from its latest checkpoint when --extend is typed again
        # (not retrained from epoch 0); a finished one is extended
        again = (resume or extend > 0) and (folder / "checkpoint_latest.pt").is_file() and not done
        job = training_job(
            wd, plan, config, opts, tracker, track, fold, fsplit, run_id,
            resume=again, extend=more if done else 0, progress=progress,
        )  # fmt: skip
        jobs.append(job)
    return rows, epochs, jobs


def _conclude(
    wd: Path,
    plan: Plan,
    config: TrainConfig,
    opts: TrainOptions,
    task: Task,
    tracker: Tracker,
    track: TrackingState,
    rows: list[dict[str, Any]],
    folds: list[int],
    deadline: float | None,
) -> tuple[dict[str, Any], ModelMeta, dict[str, Any] | None]:
    """CV summary, postprocessing decided on this training's own CV, ``model.json``, registration."""
    wdir, parent = WorkDir(wd), track.parent_run_id
    dataset = read_train_config(wdir.train_config)["dataset"]
    own = task.own_choice(
        wd, plan, config, folds, dataset, wdir.own_selection, opts.latency_cap,
        rows=rows, tta=opts.validation_tta, mirrors=opts.validation_mirrors, deadline=deadline,
    )  # fmt: skip
    rows = own.rows if own.rows is not None else rows  # the CV of the inference the model will use
    cv = task.write_summary(rows, wdir.cv_metrics, wdir.cv_summary)
    tracker.log_metrics(parent, task.summary_metrics(cv))
    tracker.log_artifact(parent, wdir.cv_metrics, "cv")
    tracker.log_artifact(parent, wdir.cv_summary, "cv")
    log_summary_figures(tracker, parent, task, rows, cv, wdir.cv_metrics.parent)
    for artifact in (own.artifact, wdir.own_selection / "inference_cost.json"):
        if artifact is not None and artifact.is_file():
            log_record(tracker, parent, artifact, "selection")
    tracker.log_metrics(parent, own.metrics)
    tracker.set_tags(parent, own.tags)
    settings = {"tta": opts.validation_tta, "mirrors": opts.validation_mirrors, **(own.inference or {})}
    # no flips in training: none in prediction, whatever the training's own inference choice timed
    settings["tta"] = config.mirror_tta(bool(settings["tta"]))
    meta = ModelMeta(
        dataset=plan.dataset_name,
        task=task.name,
        configuration=config.configuration,
        folds=folds,
        config=config,
        resolved=resolve_training(plan, config),
        plan_hash=plan.hash,
        labels=plan.labels,
        score_name=task.score_name,
        cv_score=task.score(cv),
        inference=InferenceSettings(**settings, postprocessing=own.postprocessing),
        slide_mpp=Fingerprint.slide_mpp_in(wdir.root),
    )
    meta.save(wdir.model)
    if config.explain:
        _log_maps(wd, tracker, parent, rows, config.explain_backend)
    # the CV score before postprocessing, as automed select registers every choice: the measure it chooses by (as
    # nnU-Net's), so the champion agrees with select's choice and the same bundle gets the same score from both
    registered = register_training(wd, tracker, parent, task.score(cv)) if opts.register else None
    return cv, meta, registered


def _log_maps(wd: Path, tracker: Tracker, parent: str, rows: list[dict[str, Any]], backend: str) -> None:
    """``explain: true``: validation cases' attention maps in the MLflow run. Pictures, not the model: a failure is
    said and the training concludes (it failed the conclusion, and every ``--resume`` failed again)."""
    from automed.workflow.explain import log_validation_maps

    try:
        log_validation_maps(wd, tracker, parent, rows, backend)
    except Exception as exc:
        log.warning("explain: true - the validation cases' attention maps were not logged (%s: %s); the training "
                    "is complete, `automed explain %s -i IMAGES -o OUT` makes maps from it", type(exc).__name__,
                    exc, wd)  # fmt: skip


def train_dataset(
    dataset: str | Path,
    workdir: str | Path,
    config: TrainConfig,
    opts: TrainOptions,
    *,
    resume: bool = False,
    extend: int = 0,
    show_progress: bool = True,
) -> TrainResult:
    """Train (or ``resume``, or ``extend`` by N epochs) every fold of one configuration; see the module docstring."""
    t0 = time.perf_counter()
    wd = Path(workdir).resolve()
    if resume or extend:
        require_training_workdir(wd)
    else:
        check_cluster(opts.ray_address)  # before the work dir, the plan and the preprocessing
        refuse_workdir_in_dataset(dataset, wd)
        claim_workdir(wd, "automed train")
    with locked(wd, "automed train"):
        fallback = None
        if resume or extend:
            ds, config, opts, fallback = restore_training(wd, opts, dataset or None)
            refuse_mixed_extension(wd, config, extend)
            check_cluster(opts.ray_address)  # the one given, else the saved one
        else:
            check_cluster(opts.ray_address, dataset, wd, opts.resources())  # each node: paths, a fold's size
            deadline0 = t0 + opts.budget_s if opts.budget_s else None
            ds, config, opts = start_training(dataset, wd, config, opts, show_progress, deadline0)
        plan = Plan.load(WorkDir(wd).plan)
        config = choose_configuration(config, plan, auto=False, previous=opts.previous_workdir)
        opts = replace(opts, validation_tta=config.mirror_tta(opts.validation_tta))
        task = task_for(plan.task_type, ds.source)
        tracker, track = _open_tracking(wd, plan, config, opts, ds, reopen=bool(resume or extend))
        try:
            progress: Mode = "live" if show_progress else "off"
            if opts.screen is not None:
                config, line = run_screening(wd, plan, config, opts, task, tracker, track, progress)
                _save_config(wd, config)  # --resume continues with the winner
                opts = replace(opts, folds_reason=f"{opts.folds_reason}; {line}")
            rows, epochs, jobs = _fold_jobs(wd, plan, config, opts, tracker, track, resume, extend, progress)
            deadline = t0 + opts.budget_s if opts.budget_s else None
            where = Placement(opts.parallel_folds, opts.ray_address, opts.resources())
            for out in run_fold_jobs(jobs, where, wd, deadline, fallback):
                rows += out.rows
                epochs[out.fold] = out.epochs
            folds = sorted(epochs)
            if folds == [ALL_DATA]:
                cv, meta, registered = conclude_all_data(
                    wd, plan, config, task, tracker, track.parent_run_id, opts.cv_workdir, opts.validation_tta,
                    opts.register, opts.validation_mirrors,
                )  # fmt: skip
            else:
                cv, meta, registered = _conclude(wd, plan, config, opts, task, tracker, track, rows, folds,
                                                 deadline)  # fmt: skip
        except BaseException as exc:
            status = "FAILED" if isinstance(exc, Exception) else "KILLED"
            tracker.end_open_runs_under(track.parent_run_id, status)
            tracker.end_run(track.parent_run_id, status)
            raise
        tracker.end_run(track.parent_run_id)
        forget_extension(wd)
        return TrainResult(wd, cv, meta, epochs, registered, opts.folds_reason)


def train(
    dataset: str | Path | None,
    workdir: str | Path,
    *,
    config: str | Path | None = None,
    configuration: str | None = None,
    epochs: int | None = None,
    budget: str | float | None = None,
    folds: int | str | None = None,
    only_folds: list[int] | None = None,
    device: str | None = None,
    tracking_uri: str | None = None,
    register: bool | None = None,
    resume: bool = False,
    extend: int = 0,
    preset: str | None = None,
    workers: int | None = None,
    parallel_folds: int | None = None,
    show_progress: bool = True,
    keep_case_ids: bool = False,
    overlays: int = 0,
    cv: str | Path | None = None,
    previous: str | Path | None = None,
    ray_address: str | None = None,
    trial_resources: str | None = None,
    full_ensemble: bool = False,
    task: str | None = None,
    max_voxels: int | None = None,
) -> TrainResult:
    """Train every fold of a configuration within a budget, validate, summarise CV and register the ensemble.

    ``folds``: a number of cross-validation folds, or ``auto`` (the default with a ``budget``; 5 without): a timed
    probe and the planner preset's ``budget:`` rule decide how many folds of a five-fold split the budget trains
    well (one model when each of five would get too few iterations to converge); ``all`` trains one model on every
    case (no validation fold), inheriting the evidence of the cross-validation training ``cv``.

    ``previous``: for ``configuration="3d_cascade_fullres"``, the work dir of the 3d_lowres training (same dataset
    and preset, every fold finished) whose out-of-fold predictions are the cascade's extra inputs; prediction then
    runs both stages.

    When the budget chose several folds (``--folds auto``), they predict within the time of one network with
    nnU-Net's default inference (mirror TTA, step 0.5), measured on fold 0's validation cases: the most accurate
    folds/TTA/step that fit are recorded in ``model.json``; ``full_ensemble`` (or an explicit number of ``folds``)
    keeps every fold with TTA however long it takes. ``register`` and ``parallel_folds`` left None: yes and 1 (on a
    resume: the saved ones; a value given is checked against them). ``task``: segmentation, classification or regression instead of
    what the targets suggest (integer ages as a regression, say); recorded for ``--resume``."""
    if resume or extend:
        refuse_ignored_on_resume(
            Path(workdir).resolve(),
            {
                "DATASET": dataset or None, "--config": config, "--configuration": configuration,
                "--epochs": epochs, "--folds": folds, "--fold": only_folds, "--preset": preset,
                "--tracking-uri": tracking_uri, "--register": register, "--parallel-folds": parallel_folds,
                "--keep-case-ids": keep_case_ids or None, "--overlays": overlays or None, "--cv": cv,
                "--previous": previous,
                "--full-ensemble": full_ensemble or None, "--task": task, "--max-voxels": max_voxels,
            },
        )  # fmt: skip
    # a resume (register None: as the work dir recorded) checks the registry too
    check_tracking_uri(tracking_uri, resume=resume or bool(extend), registry=register is not False)
    if not (ray_address or os.environ.get("RAY_ADDRESS")):  # folds train here: the device must be here
        usable_device(device)
    if cv is not None and not (resume or extend) and str(folds).strip().lower() != "all":
        raise ConfigError.single(
            "--cv", "--cv goes with --folds all (the all-data model inherits that cross-validation's evidence)",
            f"--folds {folds}", "add --folds all, or leave out --cv",
        )  # fmt: skip
    cfg = load_train_config(config) if config else TrainConfig()
    budget_s = parse_duration(budget)
    n_folds, folds_auto, only_folds = fold_count(folds, budget_s, only_folds)
    auto = configuration is None and "configuration" not in cfg.model_fields_set
    updates: dict[str, Any] = {"configuration": configuration} if configuration else {}
    for name, value, least in (("--epochs", epochs, 1), ("--extend", extend, 0), ("--overlays", overlays, 0)):
        if value is not None and value < least:  # model_copy below does not validate
            raise ConfigError.single(name, f"{name} is a whole number of at least {least}", value,
                                     f"write e.g. {name} {max(least, 1)}")  # fmt: skip
    if epochs is not None:
        updates["epochs"] = epochs
    opts = TrainOptions(
        folds=n_folds,
        only_folds=only_folds,
        budget_s=budget_s,
        device=device,
        tracking_uri=tracking_uri,
        register=True if register is None else register,
        workers=workers,
        preset=preset,
        parallel_folds=parallel_folds or 1,
        auto_configuration=auto,
        keep_case_ids=keep_case_ids,
        overlays=overlays,
        folds_auto=folds_auto,
        cv_workdir=str(Path(cv).resolve()) if cv else None,
        previous_workdir=str(Path(previous).resolve()) if previous else None,
        ray_address=ray_address,
        fold_resources=parse_resources(trial_resources) if trial_resources is not None else None,
        latency_cap=folds_auto and not full_ensemble,  # explicit --folds N: the user asked for that ensemble
        task=None if task in (None, "auto") else task,
        max_voxels=max_voxels,
    )
    return train_dataset(
        dataset or "",
        workdir,
        cfg.model_copy(update=updates),
        opts,
        resume=resume,
        extend=extend,
        show_progress=show_progress,
    )
