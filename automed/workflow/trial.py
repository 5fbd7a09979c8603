"""One sweep trial (the objective the engines are handed): a frozen training config trained and validated on some
folds through :func:`automed.workflow.fold.run_fold`, logged to MLflow.

A trial's state lives in ``SWEEP/trials/<key>/`` on the shared file system: ``trial.json`` (sampled values and the
resolved config, written once, verbatim), fold checkpoints under ``train/``, ``result.json`` (fold scores, CV score,
compute seconds). A restarted trial reuses finished folds, resumes an interrupted fold from its latest checkpoint and
logs into the MLflow runs it created before (found by their ``automed_key`` tag), so nothing is trained or logged
twice. A fully cross-validated trial gets ``model.json`` like a training work dir. A trial whose resolved config an
earlier trial has trains nothing: it is that trial's duplicate and takes its result (:mod:`.trial_claim`); a budgeted
``optimizer: auto`` trial is checked again after its first epoch, once its optimizer is resolved, and stops there
as a duplicate when that makes its training an earlier trial's.
"""

from __future__ import annotations

import contextlib
import socket
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from automed.artifacts import write_json_atomic
from automed.data.splits import read_splits
from automed.fingerprint.schema import Fingerprint
from automed.plan.schema import Plan
from automed.records import PROGRESS, TRAIN_CONFIG_VERSION, read_progress, stamped
from automed.search.context import Report, SweepContext, trial_dir
from automed.search.report import FAILED
from automed.search.trial_records import TRIAL, read_fold_result, read_partial_compute, read_trial
from automed.tasks.base import Task
from automed.tasks.registry import task_for
from automed.tracking import Tracker
from automed.train.config import TrainConfig
from automed.train.meta import InferenceSettings, ModelMeta, resolve_training
from automed.train.state import EpochLog
from automed.workdir import PLANNING, WorkDir, flocked
from automed.workflow.disclosure import redactor_for
from automed.workflow.fold import FoldJob, MlflowEpochs, read_validation_metrics, run_fold, validation_passes
from automed.workflow.trial_claim import SameTraining, claim, reuse, settle


def _link_planning(td: Path) -> None:
    for name in PLANNING:
        link = td / name
        if not link.exists():
            with contextlib.suppress(FileExistsError):  # another attempt of this trial made it first
                link.symlink_to(Path("..") / ".." / name)


class _Epochs(MlflowEpochs):
    """Per-epoch MLflow metrics of a fold, plus a report to the engine (ASHA / pruning decide on it). ``settle``:
    the trial's second duplicate check, run once, after the first epoch (its optimizer is resolved by then)."""

    def __init__(
        self,
        tracker: Tracker,
        run_id: str,
        task: Task,
        names: list[str],
        report: Report | None,
        offset: int,
        settle: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(tracker, run_id, task, names)
        self.report, self.offset, self.settle = report, offset, settle

    def on_epoch_end(self, fold: int, log: EpochLog) -> None:
        if self.settle is not None:
            check, self.settle = self.settle, None
            check()  # before this epoch is logged or reported: a duplicate shows no epoch of its own
        super().on_epoch_end(fold, log)
        if self.report is not None:
            self.report(
                {"epoch": float(self.offset + log.epoch), "score": log.val_score_ema, "fold": float(fold)}
            )


def _locked(td: Path) -> contextlib.AbstractContextManager[None]:
    """An exclusive lock on a trial folder: folds of one trial may run at once in different processes (promotion
    schedules (trial, fold) units) and must not race on result.json or create the trial's MLflow run twice."""
    return flocked(td / ".lock")


def _aggregate(
    td: Path,
    key: str,
    values: dict[str, Any],
    config: TrainConfig,
    ctx: SweepContext,
    plan: Plan,
    task: Task,
) -> tuple[dict[str, Any], dict[str, float | None]]:
    """result.json from the per-fold files (call under the trial lock), and a finished trial's CV metrics by the
    names a training's run uses (MLflow's compare view lines trainings and trials up; empty until every fold is
    done)."""
    folds: dict[str, Any] = {}
    compute = unit = 0.0
    rows: list[dict[str, Any]] = []
    nodes = {_ray_node()}  # the Ray nodes its folds ran on (a fold of a trial runs wherever a slot is free)
    for folder in sorted((td / "train" / config.configuration).glob("fold_*"), key=lambda p: int(p.name[5:])):
        done, partial = folder / "fold_result.json", folder / "fold_partial.json"
        # a damaged validation_metrics.json: none, with a warning (the fold is validated again when it runs)
        # a damaged fold_result.json: none too, with a warning (the fold runs again, its training kept)
        r = read_fold_result(done)
        metrics = read_validation_metrics(folder) if r is not None else None
        if r is not None and metrics is not None:
            folds[folder.name[5:]] = {"score": r["score"], "epochs": r["epochs"]}
            compute += r["compute_s"]
            unit += r["unit_s"]
            nodes.add(str(r.get("node", "")))
            rows += metrics
        elif (
            partial.is_file()
        ):  # stopped by the scheduler (or failed) mid-fold: its work still counts as used
            compute += read_partial_compute(partial)
    result: dict[str, Any] = {
        "key": key,
        "values": values,
        "folds": folds,
        "n_folds_done": len(folds),
        "compute_s": compute,
        "trial_s": unit,
        "host": socket.gethostname(),
        "node": ",".join(sorted(nodes - {""})),
    }
    summary = task.summarize(rows) if rows else None
    if summary is not None:
        result["score"] = task.score(summary)
    if len(folds) == ctx.n_folds:
        _write_model(td, ctx, plan, config, rows, task)
    write_json_atomic(td / "result.json", result)
    if summary is None or len(folds) != ctx.n_folds:
        return result, {}
    return result, task.summary_metrics(summary)


def _fold_run(tracker: Tracker, run_id: str, key: str, fold: int, fsplit: dict[str, list[str]]) -> str:
    frun, created = tracker.find_or_start_run(
        f"trial-{key}-fold{fold}", f"{key}/fold{fold}", parent=run_id, tags={"fold": str(fold)}
    )
    if created:
        tracker.log_params(frun, {"fold": fold, "n_train": len(fsplit["train"]), "n_val": len(fsplit["val"])})
    return frun


def run_trial(
    ctx: SweepContext, key: str, values: dict[str, Any], folds: list[int], report: Report | None = None
) -> dict[str, Any]:
    """Train and validate ``folds`` of one trial (reusing folds it finished before) and return its result; a trial
    whose config an earlier trial has trains nothing and takes that trial's result (:mod:`trial_claim`)."""
    torch.set_num_threads(max(1, ctx.threads))
    plan = Plan.load(Path(ctx.sweep_dir) / "plan.json")
    try:
        with contextlib.ExitStack() as running:
            td, config, original = claim(ctx, key, values, plan, running)
            if original is None:
                _link_planning(td)
                try:
                    result = _train(ctx, key, values, folds, report, plan, td, config)
                except SameTraining as same:  # its optimizer resolved to an earlier trial's training
                    original = same.original
            if original is not None:
                return reuse(ctx, key, original, folds, report)
    except Exception as exc:
        # a pruned trial (the engine's early stop, raised through its report) is stopped, not failed
        if type(exc).__name__ != "TrialPruned":
            record_failure(trial_dir(ctx, key), exc)
        raise
    (td / FAILED).unlink(missing_ok=True)  # a retry that succeeded
    return result


def record_failure(td: Path, exc: BaseException) -> None:
    """``failed.json`` in the trial's folder: the exception's type (trials.csv says failed), its last line (the
    sweep's summary prints it once) and the full traceback (the place the summary names). It stays on this file
    system: nothing of it goes to MLflow, where the message could name paths."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if lines and lines[-1].startswith("For further information visit https://errors.pydantic.dev"):
        lines = lines[:-1]  # a pydantic error's last line is its help URL: the rule broken is above it
    td.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        td / FAILED,
        {
            "error": type(exc).__name__,
            "message": lines[-1] if lines else "",
            "traceback": "".join(traceback.format_exception(exc)),
        },
    )


def _train(
    ctx: SweepContext,
    key: str,
    values: dict[str, Any],
    folds: list[int],
    report: Report | None,
    plan: Plan,
    td: Path,
    config: TrainConfig,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    task = task_for(plan.task_type, ctx.dataset)
    splits = read_splits(Path(ctx.sweep_dir) / "splits.json")
    redactor = redactor_for([Path(ctx.sweep_dir)], keep_case_ids=ctx.keep_case_ids)
    tracker = Tracker(ctx.tracking_uri, ctx.experiment, redactor)
    with _locked(td):
        run_id, created = tracker.find_or_start_run(
            f"trial-{key}", key, parent=ctx.sweep_run_id, tags={"trial": key, "host": socket.gethostname()}
        )
        if created:
            tracker.log_params(run_id, {"sampled": values, "config": config.model_dump(mode="json")})
            tracker.log_artifact(run_id, td / "trial.json")
        result, _ = _aggregate(td, key, values, config, ctx, plan, task)
    # the engine's time axis (ASHA's, TPE's steps): the trial's epochs over its folds, in order
    epochs_done = 0
    trained_any = False
    # an auto optimizer under a fold budget resolves after the fold's timed probe: checked again then (not in a
    # trial with a finished fold: one claimed before trial.json recorded identities keeps what it trained)
    unsettled = config.optimizer == "auto" and not result["folds"]
    unsettled = unsettled and read_trial(td / TRIAL).get("identity") is None
    try:
        for fold in folds:
            if str(fold) in result["folds"]:  # done before (a restored or retried trial): its epochs count
                epochs_done += int(result["folds"][str(fold)]["epochs"])
                continue
            trained_any = True
            fsplit = splits["folds"][fold]
            folder = WorkDir(td).fold(config.configuration, fold)
            frun = _fold_run(tracker, run_id, key, fold, fsplit)
            job = FoldJob(
                workdir=str(td),
                dataset=ctx.dataset,
                config=config.model_dump(mode="json"),
                fold=fold,
                train_ids=fsplit["train"],
                val_ids=fsplit["val"],
                budget_s=ctx.fold_budget_s,
                device=ctx.device,
                resume=(folder / "checkpoint_latest.pt").is_file(),
                extend=0,
                run_id=frun,
                uri=ctx.tracking_uri,
                experiment=ctx.experiment,
                workers=ctx.workers,
                validation_tta=ctx.validation_tta,
                validation_mirrors=ctx.validation_mirrors,
                validation_passes=validation_passes(
                    plan, config, len(fsplit["val"]), ctx.validation_tta, ctx.validation_mirrors
                ),
                redactor=redactor,
            )
            check = (lambda f=folder: _settle(ctx, key, f)) if unsettled else None
            unsettled = False
            tc = time.perf_counter()
            try:
                epochs = _Epochs(tracker, frun, task, task.epoch_names(plan), report, epochs_done, check)
                out = run_fold(job, epochs)
            except BaseException:
                if folder.is_dir():  # a retried fold's attempts add up
                    partial = folder / "fold_partial.json"
                    before = read_partial_compute(partial)
                    write_json_atomic(partial, {"compute_s": before + time.perf_counter() - tc})
                raise
            epochs_done += out.epochs
            now = time.perf_counter()
            write_json_atomic(
                folder / "fold_result.json",
                {
                    "score": out.score,
                    "epochs": out.epochs,
                    "compute_s": now - tc,
                    "unit_s": now - t0,
                    "node": _ray_node(),
                },
            )
            t0 = now
            with _locked(td):
                result, cv_metrics = _aggregate(td, key, values, config, ctx, plan, task)
                done = len(result["folds"]) == ctx.n_folds
                metric = task.score_name if done else task.score_name.replace("cv_", "screen_", 1)
                metrics = {metric: result["score"], "n_folds_done": float(len(result["folds"]))}
                tracker.log_metrics(run_id, {**metrics, **cv_metrics})
            if report is not None:
                report(
                    {
                        "epoch": float(epochs_done),
                        "score": result["score"],
                        "fold": float(fold),
                        "validated": 1.0,
                    }
                )
        if report is not None and not trained_any and "score" in result:
            # every fold was done before (the trial finished, then its driver died): tell the engine again
            report({"epoch": float(epochs_done), "score": result["score"], "validated": 1.0})
    except SameTraining as same:
        _end_as_duplicate(tracker, run_id, same.original)
        raise
    except BaseException as exc:
        tracker.end_run(run_id, "FAILED" if isinstance(exc, Exception) else "KILLED")
        raise
    tracker.end_run(run_id)
    return result


def _settle(ctx: SweepContext, key: str, folder: Path) -> None:
    """The second duplicate check of an ``auto`` trial, with the optimizer its first fold resolved
    (``progress.json``: "adamw lr 0.003"): :class:`SameTraining` when an earlier trial trains that way."""
    resolved = str(read_progress(folder / PROGRESS)["optimizer"]).split()[0]
    original = settle(ctx, key, resolved)
    if original is not None:
        raise SameTraining(original)


def _end_as_duplicate(tracker: Tracker, run_id: str, original: str) -> None:
    """The MLflow runs a trial opened before it turned out a duplicate, and its fold runs, end FINISHED and tagged
    with the trial it repeats (not deleted: another fold of it, started at the same time, may still log into them
    until its own first epoch)."""
    tags = {"duplicate_of": original}
    for fold_run in tracker.client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'"
    ):
        tracker.set_tags(fold_run.info.run_id, tags)
        tracker.end_run(fold_run.info.run_id)
    tracker.set_tags(run_id, tags)
    tracker.end_run(run_id)


def _write_model(
    td: Path, ctx: SweepContext, plan: Plan, config: TrainConfig, rows: list[dict[str, Any]], task: Task
) -> None:
    """Make a fully cross-validated trial look like a training work dir (model.json, train_config.json, cv/), so
    ``automed select``, ``predict`` and ``export`` take it as they take ``automed train``'s."""
    wd = WorkDir(td)
    cv = task.write_summary(rows, wd.cv_metrics, wd.cv_summary)
    ModelMeta(
        dataset=plan.dataset_name,
        task=task.name,
        configuration=config.configuration,
        folds=list(range(ctx.n_folds)),
        config=config,
        resolved=resolve_training(plan, config),
        plan_hash=plan.hash,
        labels=plan.labels,
        score_name=task.score_name,
        cv_score=task.score(cv),
        inference=InferenceSettings(tta=ctx.validation_tta, mirrors=ctx.validation_mirrors),
        slide_mpp=Fingerprint.slide_mpp_in(Path(ctx.sweep_dir)),
    ).save(wd.model)
    write_json_atomic(
        wd.train_config,
        stamped(
            {"dataset": ctx.dataset, "config": config.model_dump(mode="json"), "options": {}},
            TRAIN_CONFIG_VERSION,
        ),
    )


def _ray_node() -> str:
    """The Ray node this trial runs on ("" outside Ray)."""
    import sys

    if "ray" not in sys.modules:
        return ""
    import ray

    return str(ray.get_runtime_context().get_node_id()) if ray.is_initialized() else ""
