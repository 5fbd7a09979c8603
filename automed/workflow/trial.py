"""One sweep trial: a frozen training config trained and validated on some folds, logged to MLflow.

Both engines call :func:`run_trial`; it is what makes a trial restartable anywhere. A trial's state lives in
``SWEEP/trials/<key>/`` on the shared file system: ``trial.json`` (sampled values and the resolved config, written
once, verbatim), fold checkpoints under ``train/``, ``result.json`` (fold Dice, CV Dice, compute seconds). A restarted
trial reuses finished folds, resumes an interrupted fold from its latest checkpoint and logs into the MLflow runs it
created before (found by their ``automed_key`` tag), so nothing is trained or logged twice.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from automed.artifacts import write_json_atomic
from automed.data.dataset import load_dataset
from automed.errors import ArtifactError
from automed.evaluate.summary import score, summarize
from automed.plan.schema import Plan
from automed.sweep.space import SearchSpace, resolve
from automed.train.config import TrainConfig
from automed.train.run import (
    _label_names,
    _log_fold_artifacts,
    _MlflowEpochs,
    validate_fold,
    validation_passes,
)
from automed.train.trainer import EpochLog, fold_dir, fold_finished, train_fold

SHARED = ("plan.json", "fingerprint.json", "splits.json", "preprocessed")
Report = Callable[[dict[str, float]], None]


@dataclass(frozen=True)
class SweepContext:
    """What every trial needs; plain data so it travels to Ray workers on other nodes."""

    sweep_dir: str
    dataset: str
    base_config: dict[str, Any]
    space: dict[str, Any]
    default_point: dict[str, Any]
    n_folds: int
    tracking_uri: str
    experiment: str
    sweep_run_id: str
    fold_budget_s: float | None = None
    device: str | None = None
    threads: int = 1
    workers: int = 0
    validation_tta: bool = False


def trial_dir(ctx: SweepContext, key: str) -> Path:
    return Path(ctx.sweep_dir) / "trials" / key


def _prepare(ctx: SweepContext, key: str, values: dict[str, Any], plan: Plan) -> tuple[Path, TrainConfig]:
    td = trial_dir(ctx, key)
    td.mkdir(parents=True, exist_ok=True)
    for name in SHARED:
        link = td / name
        if not link.exists():
            with contextlib.suppress(FileExistsError):  # another attempt of this trial made it first
                link.symlink_to(Path("..") / ".." / name)
    tfile = td / "trial.json"
    space = SearchSpace.model_validate(ctx.space)
    config = resolve(space, TrainConfig.model_validate(ctx.base_config), plan, values)
    if tfile.is_file():
        saved = json.loads(tfile.read_text())
        if saved["config"] != config.model_dump(mode="json"):
            raise ArtifactError.single(
                tfile,
                "a restarted trial must have the config it started with",
                f"sampled values {values}",
                "start the sweep in a new work dir",
            )
    else:
        write_json_atomic(
            tfile,
            {
                "key": key,
                "values": values,
                "is_default": values == ctx.default_point,
                "config": config.model_dump(mode="json"),
            },
        )
    return td, config


class _Epochs(_MlflowEpochs):
    """Per-epoch MLflow metrics of a fold, plus a report to the engine (ASHA / pruning decide on it)."""

    def __init__(
        self, tracker: Any, run_id: str, names: list[str], report: Report | None, offset: int
    ) -> None:
        super().__init__(tracker, run_id, names)
        self.report, self.offset = report, offset
        self.last = 0

    def on_epoch_end(self, fold: int, log: EpochLog) -> None:
        super().on_epoch_end(fold, log)
        self.last = self.offset + log.epoch
        if self.report is not None:
            self.report({"epoch": float(self.last), "score": log.ema_fg_dice, "fold": float(fold)})


@contextlib.contextmanager
def _locked(td: Path) -> Iterator[None]:
    """An exclusive lock on a trial folder: folds of one trial may run at once in different processes (promotion
    schedules (trial, fold) units) and must not race on result.json or create the trial's MLflow run twice."""
    import fcntl

    with (td / ".lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _aggregate(
    td: Path, key: str, values: dict[str, Any], config: TrainConfig, ctx: SweepContext, plan: Plan
) -> dict[str, Any]:
    """result.json from the per-fold files (call under the trial lock)."""
    folds: dict[str, Any] = {}
    compute = unit = 0.0
    rows: list[dict[str, Any]] = []
    for folder in sorted((td / "train" / config.configuration).glob("fold_*"), key=lambda p: int(p.name[5:])):
        done, partial = folder / "fold_result.json", folder / "fold_partial.json"
        if done.is_file() and (folder / "validation_metrics.json").is_file():
            r = json.loads(done.read_text())
            folds[folder.name[5:]] = {"dice": r["dice"], "epochs": r["epochs"]}
            compute += r["compute_s"]
            unit += r["unit_s"]
            rows += json.loads((folder / "validation_metrics.json").read_text())
        elif (
            partial.is_file()
        ):  # stopped by the scheduler (or failed) mid-fold: its work still counts as used
            compute += json.loads(partial.read_text())["compute_s"]
    result: dict[str, Any] = {
        "key": key,
        "values": values,
        "folds": folds,
        "n_folds_done": len(folds),
        "compute_s": compute,
        "trial_s": unit,
        "host": socket.gethostname(),
        "node": _ray_node(),
    }
    if rows:
        result["score"] = score(summarize(rows)["foreground_mean"]["dice"])
    if len(folds) == ctx.n_folds:
        _write_model(td, ctx, plan, config, rows)
    write_json_atomic(td / "result.json", result)
    return result


def run_trial(
    ctx: SweepContext, key: str, values: dict[str, Any], folds: list[int], report: Report | None = None
) -> dict[str, Any]:
    """Train and validate ``folds`` of one trial (reusing folds it finished before) and return its result."""
    from automed.tracking import Tracker

    t0 = time.perf_counter()
    torch.set_num_threads(max(1, ctx.threads))
    plan = Plan.load(Path(ctx.sweep_dir) / "plan.json")
    td, config = _prepare(ctx, key, values, plan)
    ds = load_dataset(ctx.dataset)
    splits = json.loads((Path(ctx.sweep_dir) / "splits.json").read_text())
    names = [v for k, v in sorted(_label_names(plan).items()) if k != 0]
    tracker = Tracker(ctx.tracking_uri, ctx.experiment)
    with _locked(td):
        run_id, created = tracker.find_or_start_run(
            f"trial-{key}", key, parent=ctx.sweep_run_id, tags={"trial": key, "host": socket.gethostname()}
        )
        if created:
            tracker.log_params(run_id, {"sampled": values, "config": config.model_dump(mode="json")})
            tracker.log_artifact(run_id, td / "trial.json")
        result = _aggregate(td, key, values, config, ctx, plan)
    epochs_done = 0
    trained_any = False
    try:
        for fold in folds:
            folder = fold_dir(td, config.configuration, fold)
            if str(fold) in result["folds"]:
                continue
            trained_any = True
            fsplit = splits["folds"][fold]
            frun, fcreated = tracker.find_or_start_run(
                f"trial-{key}-fold{fold}", f"{key}/fold{fold}", parent=run_id, tags={"fold": str(fold)}
            )
            if fcreated:
                tracker.log_params(
                    frun, {"fold": fold, "n_train": len(fsplit["train"]), "n_val": len(fsplit["val"])}
                )
            cb = _Epochs(tracker, frun, names, report, epochs_done)
            tc = time.perf_counter()
            try:
                if fold_finished(folder):
                    from automed.train.trainer import finished_result

                    res = finished_result(folder, fold)
                else:
                    res = train_fold(
                        td,
                        plan,
                        config,
                        fold,
                        fsplit["train"],
                        fsplit["val"],
                        budget_s=ctx.fold_budget_s,
                        device=ctx.device,
                        resume=(folder / "checkpoint_latest.pt").is_file(),
                        callback=cb,
                        workers=ctx.workers,
                        validation_passes=validation_passes(
                            plan, config, len(fsplit["val"]), ctx.validation_tta
                        ),
                    )
                rows = validate_fold(
                    td, plan, config, fold, ds, fsplit["val"], device=ctx.device, tta=ctx.validation_tta
                )
                write_json_atomic(folder / "validation_metrics.json", rows)
                _log_fold_artifacts(
                    tracker, frun, folder, res.history, rows, ds, fsplit["val"][:1], config, fold
                )
            except BaseException as exc:
                if folder.is_dir():
                    write_json_atomic(folder / "fold_partial.json", {"compute_s": time.perf_counter() - tc})
                tracker.end_run(frun, "FAILED" if isinstance(exc, Exception) else "KILLED")
                raise
            dice = score(summarize(rows)["foreground_mean"]["dice"])
            tracker.log_metrics(frun, {"val_dice_fg_mean": dice})
            tracker.end_run(frun)
            epochs_done += res.epochs
            now = time.perf_counter()
            write_json_atomic(
                folder / "fold_result.json",
                {"dice": dice, "epochs": res.epochs, "compute_s": now - tc, "unit_s": now - t0},
            )
            t0 = now
            with _locked(td):
                result = _aggregate(td, key, values, config, ctx, plan)
                metric = "cv_dice_fg_mean" if len(result["folds"]) == ctx.n_folds else "screen_dice_fg_mean"
                tracker.log_metrics(run_id, {metric: result["score"], "n_folds_done": len(result["folds"])})
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
    except BaseException as exc:
        tracker.end_run(run_id, "FAILED" if isinstance(exc, Exception) else "KILLED")
        raise
    tracker.end_run(run_id)
    return result


def _write_model(
    td: Path, ctx: SweepContext, plan: Plan, config: TrainConfig, rows: list[dict[str, Any]]
) -> None:
    """Make a fully cross-validated trial look like a training work dir (model.json, train_config.json, cv/), so
    ``automed select``, ``predict`` and ``export`` take it as they take ``automed train``'s."""
    from automed.evaluate.summary import write_summary
    from automed.train.run import _model_meta

    cv = write_summary(rows, td / "cv" / "metrics.csv", td / "cv" / "summary.json")
    meta = _model_meta(plan, config, list(range(ctx.n_folds)), cv, ctx.validation_tta)
    write_json_atomic(td / "model.json", meta)
    write_json_atomic(
        td / "train_config.json",
        {"dataset": ctx.dataset, "config": config.model_dump(mode="json"), "options": {}},
    )


def _ray_node() -> str:
    """The Ray node this trial runs on ("" outside Ray)."""
    import sys

    if "ray" not in sys.modules:
        return ""
    import ray

    return str(ray.get_runtime_context().get_node_id()) if ray.is_initialized() else ""
