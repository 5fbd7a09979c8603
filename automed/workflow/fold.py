"""One fold, the single path for ``automed train`` and sweep trials: train (or take the finished training), validate
in the original geometry with the task's metrics, log everything into the fold's MLflow run.

:class:`FoldJob` is plain data, so a fold can run in a worker process (``--parallel-folds``) or a Ray task.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from automed.artifacts import write_json_atomic
from automed.data.dataset import Dataset, load_dataset
from automed.plan.schema import Plan
from automed.privacy import Redactor
from automed.records import PROGRESS, fits, read_progress, shown
from automed.runtime.sliding import Mirrors, mirror_axes_sets, window_starts
from automed.tasks.base import Task
from automed.tasks.registry import task_for
from automed.tracking import Tracker
from automed.train.config import TrainConfig
from automed.train.meta import resolve_training
from automed.train.state import (
    EpochLog,
    FoldResult,
    epoch_log,
    finished_result,
    fold_finished,
    load_checkpoint,
)
from automed.train.trainer import Callback, train_fold
from automed.workdir import WorkDir, fold_name
from automed.workflow.live import Both, FoldDisplay, Mode

# after an epoch the store did not take, the next epochs wait this long before it is asked again (doubling after each
# epoch it does not take, up to the second value): a store that fails (a proxy answering 503, a silent host) is not
# asked at every epoch, and the epochs meanwhile go with the first one it takes
BACKOFF_S = (5.0, 60.0)
_now = time.monotonic


class MlflowEpochs:
    """Per-epoch metrics of a fold into its MLflow run, named by the task (undefined values are not logged)."""

    def __init__(self, tracker: Tracker, run_id: str, task: Task, class_names: list[str]) -> None:
        self.tracker, self.run_id, self.names = tracker, run_id, class_names
        self.metric = task.epoch_metric
        self.missed: list[tuple[int, dict[str, float | None]]] = []  # (epoch, metrics) the store did not take
        # after an epoch the store did not take: how long it is left alone, and when (_now()) it is asked again
        self.backoff_s, self.ask_at = 0.0, -math.inf

    def on_epoch_end(self, fold: int, log: EpochLog) -> None:
        """Log the epoch's metrics; a tracking store that fails never kills the fold.

        A store that fails now and then (a busy server, a locked SQLite file, a server restarting) gets 3 retries,
        0.5-2 s apart, each asking the server again (not the Tracker's memory of finding it down a moment ago). A
        server found down before this epoch, whose host is silent (connections time out, 5 s each, or take seconds
        to fail, instead of being refused), or a store that did not take the epoch before, is asked once, with no
        retries: their probes had cost a silent host 18 s of every epoch, and a proxy answering 503 3.5 s. After an
        epoch the store did not take, it is not asked for :data:`BACKOFF_S` (5 s, doubling per failed try, at most
        60 s): epochs of a few seconds had each paid a probe (up to 2 s) or MLflow's retries of a 503 (seconds).
        The training goes on rather than failing at once: its epochs are the costly part, and the metrics the store
        did not take are sent with the first epoch it takes, at the fold's end (:meth:`flush`), or by
        :func:`catch_up` on ``--resume``, from ``progress.json`` and the checkpoint; the fold's end (artifacts, end
        of run) still fails with the clear error if the server is gone for good."""
        m: dict[str, float | None] = {
            "train_loss": log.train_loss,
            "val_loss": log.val_loss,
            self.metric: log.val_score,
            f"{self.metric}_ema": log.val_score_ema,
            "learning_rate": log.learning_rate,
            "epoch_seconds": log.epoch_seconds,
            "data_wait_fraction": log.data_wait_fraction,
        }
        for name, d in zip(self.names, log.val_per_class, strict=False):
            m[f"{self.metric}_{name}"] = d
        if self.missed and _now() < self.ask_at:  # the store failed a moment ago: not asked yet
            self.missed.append((log.epoch, m))
            return
        known = self.tracker.found_down() is not None or bool(self.missed)
        for attempt in range(4):
            try:
                if attempt or known:
                    self.tracker.check_store(recheck=True)
                self.tracker.log_metrics(self.run_id, m, step=log.epoch)
                break
            except Exception as exc:
                down = self.tracker.found_down()
                if attempt == 3 or known or (down is not None and down.silent):
                    first, longest = BACKOFF_S
                    self.backoff_s = min(longest, 2 * self.backoff_s) if self.backoff_s else first
                    self.ask_at = _now() + self.backoff_s
                    logging.getLogger("automed").warning(
                        "warning: MLflow did not take the metrics of epoch %d (%s); training goes on (they are "
                        "sent once the store takes an epoch's again; it is asked again in %.0f s)",
                        log.epoch,
                        exc,
                        self.backoff_s,
                    )
                    self.missed.append((log.epoch, m))
                    return
                time.sleep(0.5 * 2**attempt)
        self.backoff_s = 0.0
        self._send_missed()

    def flush(self) -> None:
        """The epochs the store did not take, sent now whatever the backoff (the fold's end: the last epochs' would
        otherwise wait for a ``--resume`` that a finished fold never gets); a store that still fails keeps them. The
        server is asked again first (not the Tracker's memory of finding it down a moment ago): one that is back
        takes the fold's end too, instead of failing the fold for 30 s more."""
        if not self.missed:
            return
        try:
            self.tracker.check_store(recheck=True)
        except Exception:
            return
        self._send_missed()

    def _send_missed(self) -> None:
        while self.missed:  # the store answers again: the epochs it missed, oldest first
            epoch, metrics = self.missed[0]
            try:
                self.tracker.log_metrics(self.run_id, metrics, step=epoch)
            except Exception:
                return  # (the rest go with a later epoch, the fold's end, or catch_up on --resume)
            self.missed.pop(0)


def catch_up(tracking: MlflowEpochs, folder: Path) -> None:
    """A resumed fold's epochs that its latest checkpoint holds (what the resume continues from; progress.json is
    written after it) but its MLflow run never got (a kill between the writes, a tracking server down for a while):
    logged now, no gap in its curves. A finished fold's are its whole ``progress.json``."""
    latest, progress = folder / "checkpoint_latest.pt", folder / PROGRESS
    if latest.is_file() and not fold_finished(folder):
        history = load_checkpoint(latest)["state"]["history"]
    elif progress.is_file():
        history = read_progress(progress).get("history", [])
    else:
        return
    try:
        logged = {m.step for m in tracking.tracker.client.get_metric_history(tracking.run_id, "train_loss")}
    except Exception:  # the store cannot say: nothing is re-logged (a gap rather than a failed fold)
        return
    for entry in history:
        log = epoch_log(entry)
        if log.epoch not in logged:  # the MLflow part only: a sweep's engine is not told old epochs again
            MlflowEpochs.on_epoch_end(tracking, -1, log)


def validation_passes(plan: Plan, config: TrainConfig, n_cases: int, tta: bool, mirrors: str = "all") -> int:
    """Forward passes of one window that validating ``n_cases`` median-sized cases costs (windows x mirrorings)."""
    cfg = plan.configurations[config.configuration]
    patch = resolve_training(plan, config).patch_size
    windows = math.prod(len(window_starts(s, p, 0.5)) for s, p in zip(cfg.median_shape, patch, strict=True))
    full = plan.configurations.get("3d_fullres")
    slices = full.median_shape[0] if cfg.network.dimension == 2 and full is not None else 1
    flips = len(mirror_axes_sets(cfg.network.dimension, tta, mirrors))
    return max(1, n_cases) * windows * flips * (1 if cfg.network.dimension == 3 else slices)


def log_fold_artifacts(
    tracker: Tracker,
    run_id: str,
    folder: Path,
    history: list[EpochLog],
    rows: list[dict[str, Any]],
    ds: Dataset,
    overlay_ids: list[str],
    title: str,
    task: Task,
) -> None:
    """Progress plot, per-case metrics, progress.json and the task's figures (validation overlays of
    ``overlay_ids``)."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from automed.train.plots import progress_figure

    fig = progress_figure([asdict(h) for h in history], title, task.epoch_label)
    fig.savefig(folder / "progress.png", dpi=80)
    tracker.log_figure(run_id, fig, "progress.png")
    plt.close(fig)
    pd.DataFrame(rows).to_csv(folder / "validation_metrics.csv", index=False)
    tracker.log_artifact(run_id, folder / "validation_metrics.csv")
    tracker.log_artifact(run_id, folder / PROGRESS)
    shown = {cid: tracker.redactor.case(cid) for cid in overlay_ids}
    for name, fig in task.fold_figures(folder, rows, ds, overlay_ids, shown):
        tracker.log_figure(run_id, fig, name)
        plt.close(fig)


def log_summary_figures(
    tracker: Tracker,
    run_id: str,
    task: Task,
    rows: list[dict[str, Any]],
    summary: dict[str, Any],
    folder: Path,
) -> None:
    """The task's figures of a CV summary, saved in ``folder`` and logged under ``cv/``."""
    import matplotlib.pyplot as plt

    for name, fig in task.summary_figures(rows, summary):
        fig.savefig(folder / name, dpi=90)
        tracker.log_figure(run_id, fig, f"cv/{name}")
        plt.close(fig)


def _ray_node() -> str:
    """The Ray node running this fold ("" outside a Ray task)."""
    if "ray" not in sys.modules:
        return ""
    import ray

    return str(ray.get_runtime_context().get_node_id()) if ray.is_initialized() else ""


@dataclass(frozen=True)
class FoldJob:
    """Everything one fold needs, picklable so a fold can run in its own process."""

    workdir: str
    dataset: str
    config: dict[str, Any]
    fold: int
    train_ids: list[str]
    val_ids: list[str]
    budget_s: float | None
    device: str | None
    resume: bool
    extend: int
    run_id: str
    uri: str
    experiment: str
    workers: int | None
    validation_tta: bool
    validation_mirrors: str = "all"
    validation_passes: int = 0
    threads: int | None = None
    cuda_device: int | None = None
    overlays: int = 0  # validation cases drawn into the fold's MLflow run (opt-in: they show patient images)
    redactor: Redactor | None = None  # what the fold's MLflow logging may show (default: nothing but paths)
    progress: Mode = (
        "off"  # live: a bar on a terminal (else lines); plain: a line per epoch (worker processes)
    )


VALIDATED_WITH = "validation_inference.json"  # how the fold's validation rows were predicted
# the fold's validation rows: written last, it marks the fold done
VALIDATION_METRICS = "validation_metrics.json"
# how a fold validated before VALIDATED_WITH was written was predicted: the defaults then
_AS_BEFORE = {"tta": True, "mirrors": "all"}


def validated_rows(folder: Path, tta: bool, mirrors: str) -> list[dict[str, Any]] | None:
    """A finished fold's validation rows when they were predicted as asked (mirror TTA on or off, which mirror
    set); ``None`` when the fold must be validated (again): not finished, or scored another way (a fold validated
    before the file was written counts as the defaults of then: TTA over nnU-Net's all eight mirrors). One CV
    table never mixes two inferences."""
    if not (fold_finished(folder) and (folder / VALIDATION_METRICS).is_file()):
        return None
    how = folder / VALIDATED_WITH
    done = _validation_record(how, dict[str, Any]) if how.is_file() else _AS_BEFORE
    if done is None or not fits(bool, done.get("tta")) or not fits(Mirrors, done.get("mirrors")):
        if done is not None:
            rule = "validation_inference.json must hold tta (true or false) and mirrors ('all' or 'even')"
            _redone(how, rule, shown(done))
        return None
    if bool(done["tta"]) != tta or (tta and done["mirrors"] != mirrors):
        return None
    return read_validation_metrics(folder)


def read_validation_metrics(folder: Path) -> list[dict[str, Any]] | None:
    """A fold's ``validation_metrics.json``, its validation rows (a list of objects, one per case). None when there
    is none, or (with a warning) a damaged one: recomputed, as for a fold without it (validated again from the fold's
    final weights, its training kept)."""
    path = folder / VALIDATION_METRICS
    return _validation_record(path, list[dict[str, Any]]) if path.is_file() else None


def _validation_record(path: Path, kind: Any) -> Any:
    """``path``'s JSON when it is of type ``kind``; None (said in a warning) when it is damaged."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # not JSON (UnicodeDecodeError included)
        _redone(path, f"{path.name} must be a readable JSON file", str(exc)[:120])
        return None
    if fits(kind, data):
        return data
    what = "a JSON object" if kind == dict[str, Any] else "a list of JSON objects, one per validated case"
    _redone(path, f"{path.name} must be {what}", shown(data))
    return None


def _redone(path: Path, rule: str, value: str) -> None:
    logging.getLogger(__name__).warning(
        "%s: %s, found %s; the fold is validated again from its final weights (its training is kept), as one "
        "without the file",
        path,
        rule,
        value,
    )


def _place(job: FoldJob) -> str | None:
    """This process's threads and GPU for ``job``; the device its fold trains on."""
    if job.threads:
        torch.set_num_threads(job.threads)
    if job.cuda_device is None:
        return job.device
    torch.cuda.set_device(job.cuda_device)
    return f"cuda:{job.cuda_device}"


def _forget_validation(folder: Path) -> None:
    """New weights are coming: the earlier weights' validation must never be taken for theirs (a kill during the new
    validation would otherwise leave it behind a finished fold)."""
    for stale in (VALIDATION_METRICS, VALIDATED_WITH):
        (folder / stale).unlink(missing_ok=True)


@dataclass
class FoldOutcome:
    fold: int
    rows: list[dict[str, Any]]
    epochs: int
    validation_seconds: float
    score: float
    result: FoldResult


def _fold_score(task: Task, rows: list[dict[str, Any]]) -> float:
    """The fold's validation score; an all-data fold validates no case, so its score is 0, as for any score with
    nothing defined (the image-level tasks' summaries of no rows raised, after the whole budget had trained)."""
    return task.score(task.summarize(rows)) if rows else 0.0


def run_fold(job: FoldJob, callback: Callback | None = None) -> FoldOutcome:
    """Train, validate and log one fold into its (existing) MLflow run. Safe to call in a worker process.

    ``callback`` replaces the default per-epoch MLflow logging (a sweep trial adds its engine report)."""
    device = _place(job)
    wd = Path(job.workdir)
    plan = Plan.load(WorkDir(wd).plan)
    task = task_for(plan.task_type, wd)
    config = TrainConfig.model_validate(job.config)
    ds = load_dataset(job.dataset)
    tracker = Tracker(job.uri, job.experiment, job.redactor)
    folder = WorkDir(wd).fold(config.configuration, job.fold)
    title = f"{config.configuration} {fold_name(job.fold).replace('_', ' ')}"
    try:
        tracking = callback or MlflowEpochs(tracker, job.run_id, task, task.epoch_names(plan))
        if job.resume and isinstance(tracking, MlflowEpochs):  # epochs its run missed (a kill, a store down)
            catch_up(tracking, folder)
        if job.extend == 0 and fold_finished(folder):  # trained earlier, killed before its validation ended
            res = finished_result(folder, job.fold)
        else:
            _forget_validation(folder)
            display = FoldDisplay(title, job.budget_s, job.progress, score_label=task.epoch_label)
            with display:
                res = train_fold(
                    wd,
                    plan,
                    config,
                    job.fold,
                    job.train_ids,
                    job.val_ids,
                    task=task,
                    budget_s=job.budget_s,
                    device=device,
                    resume=job.resume,
                    extend_epochs=job.extend,
                    callback=Both(tracking, display),
                    workers=job.workers,
                    validation_passes=job.validation_passes,
                )
        tv = time.perf_counter()
        rows = task.validate(
            wd,
            plan,
            config,
            job.fold,
            ds,
            job.val_ids,
            device=device,
            tta=job.validation_tta,
            mirrors=job.validation_mirrors,
        )
        val_cost = time.perf_counter() - tv
        if isinstance(tracking, MlflowEpochs):
            tracking.flush()  # (epochs the store missed, before the fold's end logs anything)
        log_fold_artifacts(
            tracker, job.run_id, folder, res.history, rows, ds, job.val_ids[: job.overlays], title, task
        )
        score = _fold_score(task, rows)
        tracker.log_metrics(job.run_id, {f"val_{task.score_name.removeprefix('cv_')}": score})
        tracker.set_tags(
            job.run_id,
            {
                "schedule": res.schedule_reason,
                "stopped_early": str(res.stopped_early),
                "optimizer": res.optimizer,
                "host": socket.gethostname(),
                **({"ray.node": node} if (node := _ray_node()) else {}),
            },
        )
        write_json_atomic(
            folder / VALIDATED_WITH, {"tta": job.validation_tta, "mirrors": job.validation_mirrors}
        )
        # last: a fold with validation_metrics.json is finished and logged (a resumed training skips it)
        write_json_atomic(folder / VALIDATION_METRICS, rows)
    except BaseException as exc:
        tracker.end_run(job.run_id, "FAILED" if isinstance(exc, Exception) else "KILLED")
        raise
    tracker.end_run(job.run_id)
    return FoldOutcome(job.fold, rows, res.epochs, val_cost, score, res)
