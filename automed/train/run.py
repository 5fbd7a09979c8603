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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automed._version import __version__
from automed.artifacts import atomic_directory, write_json_atomic
from automed.data.cases import read_case
from automed.data.dataset import Dataset, load_dataset
from automed.data.io import write_image
from automed.errors import ArtifactError
from automed.evaluate.metrics import case_metrics
from automed.evaluate.summary import metrics_rows, score, write_summary
from automed.fingerprint.schema import Fingerprint
from automed.infer.predictor import MODEL_FILE, Predictor
from automed.plan.schema import Plan
from automed.train.config import TrainConfig
from automed.train.device import pick_device
from automed.train.trainer import (
    EpochLog,
    checkpoint_matches,
    finished_result,
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
    parallel_folds: int = 1
    auto_configuration: bool = False  # 3d_fullres when planned, else 2d


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
    """Class index -> label name made safe for MLflow metric keys (letters, digits, _ - . / and spaces)."""
    return {i: safe_key(plan.labels[str(v)]) for i, v in enumerate(sorted(int(k) for k in plan.labels))}


def safe_key(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", name)


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


def _choose_postprocessing(wd: Path, tracker: Any, run_id: str) -> list[dict[str, Any]]:
    """Decide postprocessing on this training's CV predictions (``selection/selection.json``) and log it."""
    from automed.select.selection import SELECTION_FILE, select

    res = select([wd], wd / "selection")
    tracker.log_artifact(run_id, wd / "selection" / SELECTION_FILE, "selection")
    final = res["cv_dice_final"]["foreground_mean"]
    tracker.log_metrics(run_id, {"cv_dice_fg_mean_postprocessed": final})
    steps = [d["step"] for d in res["decisions"] if d["kept"]]
    tracker.set_tags(
        run_id, {"postprocessing": ", ".join(f"largest component of {s}" for s in steps) or "none"}
    )
    post: list[dict[str, Any]] = res["postprocessing"]
    return post


def write_model_bundle(
    workdir: Path, config: TrainConfig, meta: dict[str, Any], dest: Path | None = None
) -> Path:
    """``dest`` (default ``WORKDIR/model_bundle/``), replaced atomically: plan.json, model.json (``meta``) and the
    final weights of the folds the model predicts with."""
    dest = dest or workdir / "model_bundle"
    with atomic_directory(dest) as tmp:
        shutil.copy(workdir / "plan.json", tmp / "plan.json")
        for f in (
            meta.get("inference", {}).get("folds") or meta["folds"]
        ):  # the folds selection kept, else all
            state = load_checkpoint(fold_dir(workdir, config.configuration, f) / "checkpoint_final.pt")
            save_checkpoint(tmp / f"fold_{f}.pt", {"model": state["model"]})
        write_json_atomic(tmp / "model.json", {k: v for k, v in meta.items() if k != "registered"})
    return dest


def reregister(workdir: Path, score: float) -> dict[str, Any]:
    """Register ``workdir``'s model again with the settings now in its model.json (after ``automed select``)."""
    from automed.tracking import Tracker, register_ensemble

    meta = json.loads((workdir / MODEL_FILE).read_text())
    track = json.loads((workdir / "tracking.json").read_text())
    plan = Plan.load(workdir / "plan.json")
    config = TrainConfig.model_validate(meta["config"])
    tracker = Tracker(track["uri"], track["experiment"])
    bundle = write_model_bundle(workdir, config, meta)
    registered = register_ensemble(
        tracker,
        track["parent_run_id"],
        bundle,
        model_name_for(plan.dataset_name),
        score,
        plan.n_channels,
        plan.original_median_spacing,
    )
    meta["registered"] = registered
    write_json_atomic(workdir / MODEL_FILE, meta)
    return registered


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
        "inference": {"step": 0.5, "tta": tta, "whole_image_factor": 0.0},
    }


def model_name_for(dataset_name: str) -> str:
    clean = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in dataset_name).strip("_")
    return f"automed-{clean or 'model'}"


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
    label_names: list[str]
    workers: int | None
    validation_tta: bool
    validation_passes: int = 0
    threads: int | None = None
    cuda_device: int | None = None


def run_fold_job(job: FoldJob) -> dict[str, Any]:
    """Train, validate and log one fold into its (existing) MLflow run. Safe to call in a worker process."""
    from automed.tracking import Tracker

    if job.threads:
        torch.set_num_threads(job.threads)
    device = job.device
    if job.cuda_device is not None:
        torch.cuda.set_device(job.cuda_device)
        device = f"cuda:{job.cuda_device}"
    wd = Path(job.workdir)
    plan = Plan.load(wd / "plan.json")
    config = TrainConfig.model_validate(job.config)
    ds = load_dataset(job.dataset)
    tracker = Tracker(job.uri, job.experiment)
    folder = fold_dir(wd, config.configuration, job.fold)
    try:
        if job.extend == 0 and fold_finished(folder):  # trained earlier, killed before its validation ended
            res = finished_result(folder, job.fold)
        else:
            res = train_fold(
                wd,
                plan,
                config,
                job.fold,
                job.train_ids,
                job.val_ids,
                budget_s=job.budget_s,
                device=device,
                resume=job.resume,
                extend_epochs=job.extend,
                callback=_MlflowEpochs(tracker, job.run_id, job.label_names),
                workers=job.workers,
                validation_passes=job.validation_passes,
            )
        tv = time.perf_counter()
        rows = validate_fold(
            wd, plan, config, job.fold, ds, job.val_ids, device=device, tta=job.validation_tta
        )
        val_cost = time.perf_counter() - tv
        write_json_atomic(folder / "validation_metrics.json", rows)
        _log_fold_artifacts(tracker, job.run_id, folder, res.history, rows, ds, job.val_ids, config, job.fold)
        tracker.set_tags(
            job.run_id,
            {
                "schedule": res.schedule_reason,
                "stopped_early": str(res.stopped_early),
                "optimizer": res.optimizer,
            },
        )
    except BaseException as exc:
        tracker.end_run(job.run_id, "FAILED" if isinstance(exc, Exception) else "KILLED")
        raise
    tracker.end_run(job.run_id)
    return {"fold": job.fold, "rows": rows, "epochs": res.epochs, "validation_seconds": val_cost}


def _run_parallel(jobs: list[FoldJob], n: int, deadline: float | None) -> list[dict[str, Any]]:
    """Run folds ``n`` at a time in spawned processes: CPU threads split evenly, one GPU each when there are
    enough. Each wave of ``n`` folds shares the time left equally with the waves after it."""
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor

    gpus = torch.cuda.device_count()
    threads = max(1, (os.cpu_count() or 1) // n)
    results: list[dict[str, Any]] = []
    ctx = mp.get_context("spawn")
    waves = [jobs[i : i + n] for i in range(0, len(jobs), n)]
    with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
        for w, wave in enumerate(waves):
            budget = None
            if deadline is not None:
                left = deadline - time.perf_counter() - FINAL_RESERVE_S
                budget = max(10.0, 0.9 * left / (len(waves) - w))
            futures = [
                pool.submit(
                    run_fold_job,
                    replace(job, budget_s=budget, threads=threads, cuda_device=k if gpus >= n else None),
                )
                for k, job in enumerate(wave)
            ]
            results += [f.result() for f in futures]
    return results


def validation_passes(plan: Plan, config: TrainConfig, n_cases: int, tta: bool) -> int:
    """Forward passes of one window that validating ``n_cases`` median-sized cases costs (windows x mirrorings)."""
    import math

    from automed.runtime.sliding import window_starts

    cfg = plan.configurations[config.configuration]
    patch = config.patch_size or cfg.patch_size
    windows = math.prod(len(window_starts(s, p, 0.5)) for s, p in zip(cfg.median_shape, patch, strict=True))
    full = plan.configurations.get("3d_fullres")
    slices = full.median_shape[0] if cfg.network.dimension == 2 and full is not None else 1
    flips = 2**cfg.network.dimension if tta else 1
    return max(1, n_cases) * windows * flips * (1 if cfg.network.dimension == 3 else slices)


def _choose_configuration(config: TrainConfig, plan: Plan, auto: bool) -> TrainConfig:
    from automed.errors import ConfigError
    from automed.registry import check_choice

    if auto and config.configuration not in plan.configurations:
        config = config.model_copy(
            update={"configuration": "3d_fullres" if "3d_fullres" in plan.configurations else "2d"}
        )
    if config.configuration == "3d_cascade_fullres":
        raise ConfigError.single(
            "--configuration",
            "3d_cascade_fullres needs 3d_lowres predictions as input",
            config.configuration,
            "train 3d_lowres and 3d_fullres; cascade training is not supported yet",
        )
    check_choice(config.configuration, plan.configurations, what="the configuration", where="--configuration")
    return config


def plan_for_training(
    ds: Dataset, wd: Path, device: str | None, preset: str | None, workers: int | None, show_progress: bool
) -> tuple[Plan, str]:
    """Verify, fingerprint and plan ``ds`` into ``wd`` (no preprocessing yet) with the preset for the device that
    will train (``default`` on CUDA, ``cpu`` otherwise, unless ``preset`` names one)."""
    from automed import api

    dev = pick_device(device)
    name = preset or ("default" if dev.type == "cuda" else "cpu")
    res = api.plan_dataset(
        ds.source if ds.layout == "csv" else ds.source.parent,
        wd,
        preset=name,
        device=dev.type,
        run_preprocess=False,
        workers=workers,
        show_progress=show_progress,
    )
    return res.plan, name


def _check_existing_folds(wd: Path, plan: Plan, config: TrainConfig) -> None:
    """A fresh ``automed train`` into a work dir may reuse finished folds only if the same plan and config made
    them; anything else would mix models."""
    root = wd / "train" / config.configuration
    if not root.is_dir():
        return
    for folder in sorted(root.glob("fold_*")):
        match = checkpoint_matches(folder, plan, config)
        if match is False:
            raise ArtifactError.single(
                folder,
                "a work dir holds the training of one plan and config",
                "checkpoints of another plan or training config",
                "use a new --output, or delete that training folder",
            )
        if match and not fold_finished(folder):
            raise ArtifactError.single(
                folder,
                "an interrupted training continues only with --resume",
                "an unfinished fold",
                f"run `automed train --resume {wd}`",
            )


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
        saved_budget = kept.get("budget_s")
        opts = TrainOptions(
            **{
                **kept,
                "budget_s": opts.budget_s,
                "device": opts.device or kept.get("device"),
                "workers": opts.workers,
            }
        )
        # folds that had not started when the run was killed get their share of the original budget
        fallback_fold_budget = (
            saved_budget / max(1, opts.folds) if saved_budget and not opts.budget_s else None
        )
        dataset = saved["dataset"]
        ds = load_dataset(dataset)
    else:
        fallback_fold_budget = None
        ds = load_dataset(dataset)
        planned, preset = plan_for_training(ds, wd, opts.device, opts.preset, opts.workers, show_progress)
        config = _choose_configuration(config, planned, opts.auto_configuration)
        _check_existing_folds(wd, planned, config)
        api.preprocess(
            ds,
            wd,
            configurations=[config.configuration],
            folds=opts.folds,
            workers=opts.workers,
            show_progress=show_progress,
            train_configs=[config],
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

    try:
        label_names = [v for k, v in sorted(_label_names(plan).items()) if k != 0]
        rows: list[dict[str, Any]] = []
        epochs: dict[int, int] = {}
        jobs: list[FoldJob] = []
        for fold in folds:
            fsplit = splits["folds"][fold]
            folder = fold_dir(wd, config.configuration, fold)
            done = fold_finished(folder)
            rows_file = folder / "validation_metrics.json"
            if done and not extend and rows_file.is_file():
                rows += json.loads(rows_file.read_text())
                epochs[fold] = len(json.loads((folder / "progress.json").read_text())["history"])
                continue
            run_id = fold_runs.get(str(fold))
            if run_id is None:  # the driver creates every child run, so workers only log into existing runs
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
            jobs.append(
                FoldJob(
                    workdir=str(wd),
                    dataset=str(ds.source if ds.layout == "csv" else ds.source.parent),
                    config=config.model_dump(mode="json"),
                    fold=fold,
                    train_ids=fsplit["train"],
                    val_ids=fsplit["val"],
                    budget_s=None,
                    device=opts.device,
                    resume=resume and (folder / "checkpoint_latest.pt").is_file() and not done,
                    extend=extend if done else 0,
                    run_id=run_id,
                    uri=uri,
                    experiment=plan.dataset_name,
                    label_names=label_names,
                    workers=opts.workers,
                    validation_tta=opts.validation_tta,
                    validation_passes=validation_passes(
                        plan, config, len(fsplit["val"]), opts.validation_tta
                    ),
                )
            )
        parallel = max(1, min(opts.parallel_folds, len(jobs)))
        results: list[dict[str, Any]] = []
        if parallel == 1:
            for i, job in enumerate(jobs):
                if fallback_fold_budget and not job.resume and not job.extend:
                    job = replace(job, budget_s=fallback_fold_budget)
                if deadline is not None:
                    left = deadline - time.perf_counter() - FINAL_RESERVE_S
                    # each fold reserves its own validation time from its share (see validation_passes)
                    job = replace(job, budget_s=max(10.0, left / (len(jobs) - i)))
                results.append(run_fold_job(job))
        else:
            results = _run_parallel(jobs, parallel, deadline)
        for out in results:
            rows += out["rows"]
            epochs[out["fold"]] = out["epochs"]

        cv = write_summary(rows, wd / "cv" / "metrics.csv", wd / "cv" / "summary.json")
        final: dict[str, float | None] = {
            "cv_dice_fg_mean": cv["foreground_mean"]["dice"],
            "cv_hd95_fg_mean": cv["foreground_mean"]["hd95"],
            "cv_nsd_fg_mean": cv["foreground_mean"]["nsd"],
        }
        for lab, entry in cv["mean"].items():
            nm = safe_key(str(cv["label_names"].get(lab, lab)))
            final[f"cv_dice_{nm}"] = entry["dice"]
            final[f"cv_hd95_{nm}"] = entry["hd95"]
            final[f"cv_cases_both_empty_{nm}"] = entry["n_both_empty"]  # cases where the label is undefined
        tracker.log_metrics(parent, final)
        tracker.log_artifact(parent, wd / "cv" / "metrics.csv", "cv")
        tracker.log_artifact(parent, wd / "cv" / "summary.json", "cv")
        meta = _model_meta(plan, config, folds, cv, opts.validation_tta)
        write_json_atomic(wd / MODEL_FILE, meta)
        post = _choose_postprocessing(wd, tracker, parent)
        meta["inference"]["postprocessing"] = post
        write_json_atomic(wd / MODEL_FILE, meta)
        registered = None
        if opts.register:
            bundle = write_model_bundle(wd, config, meta)
            registered = register_ensemble(
                tracker,
                parent,
                bundle,
                model_name_for(plan.dataset_name),
                score(cv["foreground_mean"]["dice"]),
                plan.n_channels,
                plan.original_median_spacing,
            )
            meta["registered"] = registered
            write_json_atomic(wd / MODEL_FILE, meta)
    except BaseException as exc:
        tracker.end_run(parent, "FAILED" if isinstance(exc, Exception) else "KILLED")
        raise
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
