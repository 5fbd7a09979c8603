"""``automed train``: plan -> train every fold -> validate -> CV summary -> bundle -> MLflow registry.

One parent MLflow run per command, one child run per configuration x fold. Work dir layout (besides the planning
artifacts): ``train_config.json`` (frozen config and options), ``tracking.json`` (store and run ids, for resume),
``train/<configuration>/fold_<k>/`` (checkpoints, progress.json/png, validation/), ``cv/`` (metrics.csv,
summary.json), ``model.json`` and ``model_bundle/`` (what is registered).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from automed._version import __version__
from automed.artifacts import write_json_atomic
from automed.data.cases import read_case
from automed.data.dataset import Dataset, load_dataset
from automed.data.io import write_image
from automed.errors import ArtifactError
from automed.evaluate.metrics import case_metrics
from automed.evaluate.summary import metrics_rows, write_summary
from automed.fingerprint.schema import Fingerprint
from automed.infer.predictor import MODEL_FILE, Predictor
from automed.plan.schema import Plan
from automed.train.config import TrainConfig
from automed.train.device import pick_device
from automed.train.trainer import (
    EpochLog,
    fold_dir,
    fold_finished,
    load_checkpoint,
    save_checkpoint,
    train_fold,
)

FINAL_RESERVE_S = 20.0  # CV summary, bundle and registration at the end of a budgeted run


@dataclass
class TrainOptions:
    folds: int = 5
    only_folds: list[int] | None = None
    budget_s: float | None = None
    device: str | None = None
    tracking_uri: str | None = None
    register: bool = True
    validation_tta: bool = True
    workers: int | None = None
    preset: str | None = None


@dataclass
class TrainResult:
    workdir: Path
    cv_summary: dict[str, Any]
    model: dict[str, Any]
    fold_epochs: dict[int, int] = field(default_factory=dict)
    registered: dict[str, Any] | None = None


class _MlflowEpochs:
    def __init__(self, tracker: Any, run_id: str, label_names: list[str]) -> None:
        self.tracker, self.run_id, self.names = tracker, run_id, label_names

    def on_epoch_end(self, fold: int, log: EpochLog) -> None:
        m = {
            "train_loss": log.train_loss,
            "val_loss": log.val_loss,
            "pseudo_dice": log.mean_fg_dice,
            "pseudo_dice_ema": log.ema_fg_dice,
            "learning_rate": log.learning_rate,
            "epoch_seconds": log.epoch_seconds,
            "data_wait_fraction": log.data_wait_fraction,
        }
        for name, d in zip(self.names, log.pseudo_dice, strict=False):
            m[f"pseudo_dice_{name}"] = d
        self.tracker.log_metrics(self.run_id, m, step=log.epoch)


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _label_names(plan: Plan) -> dict[int, str]:
    return {i: plan.labels[str(v)] for i, v in enumerate(sorted(int(k) for k in plan.labels))}


def validate_fold(
    workdir: Path,
    plan: Plan,
    config: TrainConfig,
    fold: int,
    ds: Dataset,
    val_ids: list[str],
    *,
    device: str | None,
    tta: bool,
) -> list[dict[str, Any]]:
    """Predict the fold's validation cases from the raw images and score them in the original geometry."""
    pred = Predictor.from_folds(workdir, plan, config, [fold], device=device, tta=tta)
    out = fold_dir(workdir, config.configuration, fold) / "validation"
    out.mkdir(exist_ok=True)
    values = sorted(int(k) for k in plan.labels)
    names = {int(k): v for k, v in plan.labels.items()}
    rows: list[dict[str, Any]] = []
    by_id = {c.case_id: c for c in ds.cases}
    for cid in val_ids:
        cd = read_case(by_id[cid], ds.images_are_4d)
        res = pred.predict_arrays(cd.channels, cd.geometry, probabilities=True)
        write_image(res.labels, cd.geometry, out / f"{cid}.nii.gz")
        assert res.probabilities is not None
        np.savez_compressed(out / f"{cid}.npz", probabilities=res.probabilities.astype(np.float16))
        assert cd.label is not None
        per = case_metrics(cd.label, res.labels, values, cd.geometry.spacing_zyx)
        rows += metrics_rows(cid, fold, per, names)
    return rows


def _bundle(
    workdir: Path, plan: Plan, config: TrainConfig, folds: list[int], cv: dict[str, Any], tta: bool
) -> Path:
    dest = workdir / "model_bundle"
    tmp = workdir / ".model_bundle.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    shutil.copy(workdir / "plan.json", tmp / "plan.json")
    for f in folds:
        state = load_checkpoint(fold_dir(workdir, config.configuration, f) / "checkpoint_final.pt")
        save_checkpoint(tmp / f"fold_{f}.pt", {"model": state["model"]})
    meta = _model_meta(plan, config, folds, cv, tta)
    write_json_atomic(tmp / "model.json", meta)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def _model_meta(
    plan: Plan, config: TrainConfig, folds: list[int], cv: dict[str, Any], tta: bool
) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "automed_version": __version__,
        "dataset": plan.dataset_name,
        "configuration": config.configuration,
        "folds": folds,
        "checkpoint": "final",
        "config": config.model_dump(mode="json"),
        "plan_hash": plan.hash,
        "labels": plan.labels,
        "cv_foreground_dice": cv.get("foreground_mean", {}).get("dice"),
        "inference": {"step": 0.5, "tta": tta, "whole_image_factor": 2.0},
    }


def model_name_for(dataset_name: str) -> str:
    clean = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in dataset_name).strip("_")
    return f"automed-{clean or 'model'}"


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
    from automed import api
    from automed.tracking import Tracker, register_ensemble, resolve_uri

    t0 = time.perf_counter()
    wd = Path(workdir).resolve()
    cfg_file = wd / "train_config.json"
    if resume or extend:
        if not cfg_file.is_file():
            raise ArtifactError.single(
                cfg_file,
                "--resume/--extend need a training work dir",
                "no train_config.json",
                "start with `automed train DATASET -o WORKDIR`",
            )
        saved = json.loads(cfg_file.read_text())
        config = TrainConfig.model_validate(saved["config"])
        kept = {k: v for k, v in saved["options"].items() if k in TrainOptions.__dataclass_fields__}
        opts = TrainOptions(
            **{
                **kept,
                "budget_s": opts.budget_s,
                "device": opts.device or kept.get("device"),
                "workers": opts.workers,
            }
        )
        dataset = saved["dataset"]
        ds = load_dataset(dataset)
    else:
        ds = load_dataset(dataset)
        dev = pick_device(opts.device)
        preset = opts.preset or ("default" if dev.type == "cuda" else "cpu")
        api.plan_dataset(
            ds.source if ds.layout == "csv" else ds.source.parent,
            wd,
            preset=preset,
            device=dev.type,
            configurations=[config.configuration],
            folds=opts.folds,
            workers=opts.workers,
            show_progress=show_progress,
        )
        write_json_atomic(
            cfg_file,
            {
                "dataset": str(ds.source if ds.layout == "csv" else ds.source.parent),
                "config": config.model_dump(mode="json"),
                "options": {**asdict(opts), "preset": preset},
            },
        )
    plan = Plan.load(wd / "plan.json")
    if config.configuration not in plan.configurations:
        from automed.registry import check_choice

        check_choice(
            config.configuration, plan.configurations, what="the configuration", where="--configuration"
        )
    fp = Fingerprint.load(wd / "fingerprint.json")
    splits = json.loads((wd / "splits.json").read_text())
    folds = opts.only_folds if opts.only_folds is not None else list(range(splits["n_folds"]))
    deadline = t0 + opts.budget_s if opts.budget_s else None

    # tracking: the driver creates the store and experiment before anything else logs
    track_file = wd / "tracking.json"
    tracked = json.loads(track_file.read_text()) if (resume or extend) and track_file.is_file() else {}
    uri = resolve_uri(opts.tracking_uri or tracked.get("uri"))
    tracker = Tracker(uri, plan.dataset_name)
    parent = tracked.get("parent_run_id")
    if parent is None:
        parent = tracker.start_run(
            f"train-{config.configuration}",
            tags={
                "automed.version": __version__,
                "git.commit": _git_commit(),
                "dataset.fingerprint": fp.hash,
                "device": str(pick_device(opts.device)),
                "host": socket.gethostname(),
            },
        )
        tracker.log_params(
            parent,
            {
                "config": config.model_dump(mode="json"),
                "plan": plan.configurations[config.configuration].model_dump(mode="json"),
                "options": asdict(opts),
            },
        )
        tracker.log_dataset(parent, plan.dataset_name, fp.hash, str(ds.source))
        for name in ("fingerprint.json", "plan.json", "splits.json"):
            tracker.log_artifact(parent, wd / name)
    fold_runs: dict[str, str] = dict(tracked.get("fold_runs", {}))
    write_json_atomic(
        track_file,
        {"uri": uri, "experiment": plan.dataset_name, "parent_run_id": parent, "fold_runs": fold_runs},
    )

    label_names = [v for k, v in sorted(_label_names(plan).items()) if k != 0]
    rows: list[dict[str, Any]] = []
    epochs: dict[int, int] = {}
    val_cost = 0.0
    for i, fold in enumerate(folds):
        fsplit = splits["folds"][fold]
        folder = fold_dir(wd, config.configuration, fold)
        done = fold_finished(folder)
        rows_file = folder / "validation_metrics.json"
        if done and not extend and rows_file.is_file():
            rows += json.loads(rows_file.read_text())
            epochs[fold] = len(json.loads((folder / "progress.json").read_text())["history"])
            continue
        run_id = fold_runs.get(str(fold))
        if run_id is None:
            run_id = tracker.start_run(
                f"{config.configuration}-fold{fold}",
                parent=parent,
                tags={"fold": str(fold), "configuration": config.configuration},
            )
            tracker.log_params(
                run_id,
                {
                    "fold": fold,
                    "n_train": len(fsplit["train"]),
                    "n_val": len(fsplit["val"]),
                    "config": config.model_dump(mode="json"),
                },
            )
            fold_runs[str(fold)] = run_id
            write_json_atomic(
                track_file,
                {
                    "uri": uri,
                    "experiment": plan.dataset_name,
                    "parent_run_id": parent,
                    "fold_runs": fold_runs,
                },
            )
        budget = None
        if deadline is not None:
            left = deadline - time.perf_counter() - FINAL_RESERVE_S
            n_left = len(folds) - i
            est_val = val_cost if val_cost else 0.1 * left / n_left
            budget = max(10.0, left / n_left - est_val)
        try:
            res = train_fold(
                wd,
                plan,
                config,
                fold,
                fsplit["train"],
                fsplit["val"],
                budget_s=budget,
                device=opts.device,
                resume=(resume and (folder / "checkpoint_latest.pt").is_file() and not done),
                extend_epochs=extend if done else 0,
                callback=_MlflowEpochs(tracker, run_id, label_names),
                workers=opts.workers,
            )
        except BaseException:
            tracker.end_run(run_id, "KILLED")
            raise
        epochs[fold] = res.epochs
        tv = time.perf_counter()
        fold_rows = validate_fold(
            wd, plan, config, fold, ds, fsplit["val"], device=opts.device, tta=opts.validation_tta
        )
        val_cost = time.perf_counter() - tv
        write_json_atomic(rows_file, fold_rows)
        rows += fold_rows
        _log_fold_artifacts(tracker, run_id, folder, res.history, fold_rows, ds, fsplit["val"], config, fold)
        tracker.set_tags(run_id, {"schedule": res.schedule_reason, "stopped_early": str(res.stopped_early)})
        tracker.end_run(run_id)

    cv = write_summary(rows, wd / "cv" / "metrics.csv", wd / "cv" / "summary.json")
    final: dict[str, float] = {
        "cv_dice_fg_mean": cv["foreground_mean"]["dice"],
        "cv_hd95_fg_mean": cv["foreground_mean"]["hd95"],
        "cv_nsd_fg_mean": cv["foreground_mean"]["nsd"],
    }
    for lab, entry in cv["mean"].items():
        nm = cv["label_names"].get(lab, lab)
        final[f"cv_dice_{nm}"] = entry["dice"]
        final[f"cv_hd95_{nm}"] = entry["hd95"]
    tracker.log_metrics(parent, final)
    tracker.log_artifact(parent, wd / "cv" / "metrics.csv", "cv")
    tracker.log_artifact(parent, wd / "cv" / "summary.json", "cv")
    meta = _model_meta(plan, config, folds, cv, opts.validation_tta)
    write_json_atomic(wd / MODEL_FILE, meta)
    registered = None
    if opts.register:
        bundle = _bundle(wd, plan, config, folds, cv, opts.validation_tta)
        score = cv["foreground_mean"]["dice"]
        registered = register_ensemble(
            tracker,
            parent,
            bundle,
            model_name_for(plan.dataset_name),
            float(score if score == score else 0.0),
            plan.n_channels,
            plan.original_median_spacing,
        )
        meta["registered"] = registered
        write_json_atomic(wd / MODEL_FILE, meta)
    tracker.end_run(parent)
    return TrainResult(wd, cv, meta, epochs, registered)


def _log_fold_artifacts(
    tracker: Any,
    run_id: str,
    folder: Path,
    history: list[EpochLog],
    rows: list[dict[str, Any]],
    ds: Dataset,
    val_ids: list[str],
    config: TrainConfig,
    fold: int,
) -> None:
    import matplotlib.pyplot as plt

    from automed.data.io import read_image
    from automed.train.plots import overlay_figure, progress_figure

    fig = progress_figure([asdict(h) for h in history], f"{config.configuration} fold {fold}")
    fig.savefig(folder / "progress.png", dpi=80)
    tracker.log_figure(run_id, fig, "progress.png")
    plt.close(fig)
    import pandas as pd

    pd.DataFrame(rows).to_csv(folder / "validation_metrics.csv", index=False)
    tracker.log_artifact(run_id, folder / "validation_metrics.csv")
    tracker.log_artifact(run_id, folder / "progress.json")
    by_id = {c.case_id: c for c in ds.cases}
    for cid in val_ids[:3]:
        cd = read_case(by_id[cid], ds.images_are_4d)
        pred_arrs, _ = read_image(folder / "validation" / f"{cid}.nii.gz")
        assert cd.label is not None
        fig = overlay_figure(cd.channels[0], cd.label, pred_arrs[0], cid)
        tracker.log_figure(run_id, fig, f"overlays/{cid}.png")
        plt.close(fig)
