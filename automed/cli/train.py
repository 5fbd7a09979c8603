"""Training verbs: train (plan, train every fold, register) and demo (the same on synthetic data)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from automed.cli._common import (
    BUDGET_HELP,
    DeviceOpt,
    KeepCaseIdsOpt,
    PresetOpt,
    TrackingUriOpt,
    TrainDatasetArg,
    TrainMaxVoxelsOpt,
    WorkersOpt,
    checked_budget,
    expand_user,
    out,
    progress,
)

app = typer.Typer()


@app.command()
def train(
    dataset: TrainDatasetArg = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", callback=expand_user, help="Work directory.")
    ] = None,
    budget: Annotated[
        str | None,
        typer.Option(
            callback=checked_budget,
            help=f"Wall-clock budget for the whole command: 45m, 2h, 1h30m, 90s ({BUDGET_HELP}).",
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Epochs per fold (instead of a budget).")] = None,
    folds: Annotated[
        str | None,
        typer.Option(
            help="Cross-validation folds: a number; auto (the default with --budget: the budget decides how "
            "many folds of a five-fold split it trains well; 5 without a budget); or all (one model on every case, "
            "no validation fold: see --cv)."
        ),
    ] = None,
    fold: Annotated[
        list[int] | None, typer.Option(min=0, help="Train only these folds (repeatable).")
    ] = None,
    configuration: Annotated[
        str | None,
        typer.Option("--configuration", "-c", help="Plan configuration (default: 3d_fullres, else 2d)."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="Training config YAML (see automed.train.config).")
    ] = None,
    preset: PresetOpt = None,
    device: DeviceOpt = None,
    tracking_uri: TrackingUriOpt = None,
    register: Annotated[
        bool | None, typer.Option(help="Register the fold ensemble in the MLflow registry (default: yes).")
    ] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the training work dir WORKDIR.")] = None,
    extend: Annotated[int, typer.Option(min=0, help="With --resume: add N epochs to finished folds.")] = 0,
    parallel_folds: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Folds trained at once in worker processes (one GPU each when there are enough; default 1).",
        ),
    ] = None,
    workers: WorkersOpt = None,
    keep_case_ids: KeepCaseIdsOpt = False,
    max_voxels: TrainMaxVoxelsOpt = None,
    cv: Annotated[
        Path | None,
        typer.Option(
            help="With --folds all: the cross-validation work dir whose evidence (CV score, postprocessing) the "
            "all-data model inherits and links to."
        ),
    ] = None,
    previous: Annotated[
        Path | None,
        typer.Option(
            help="With -c 3d_cascade_fullres: the work dir of the 3d_lowres training (same dataset and preset, "
            "every fold finished) whose out-of-fold predictions the cascade refines."
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="Run the folds as Ray tasks on this cluster (auto, HOST:PORT; default: RAY_ADDRESS if set, else "
            "this machine). Dataset and work dir on a file system every node mounts."
        ),
    ] = None,
    trial_resources: Annotated[
        str | None,
        typer.Option(
            help="With --ray-address: resources per fold, e.g. cpu=4,gpu=1 (default cpu=1,gpu=0; on a resume: the "
            "saved ones)."
        ),
    ] = None,
    full_ensemble: Annotated[
        bool,
        typer.Option(
            help="Predict with every fold and mirror TTA however long it takes (default: the most accurate folds/"
            "TTA/step that predict a case within one network's time with nnU-Net's default inference, measured)."
        ),
    ] = False,
    task: Annotated[
        str | None,
        typer.Option(
            help="auto (the default: from the targets: label maps -> segmentation, class names or <= 20 distinct integers -> "
            "classification, other numbers -> regression), or segmentation, classification, regression."
        ),
    ] = None,
    overlays: Annotated[
        int,
        typer.Option(
            min=0, help="Validation cases drawn (image, reference, prediction) into each fold's MLflow run."
        ),
    ] = 0,
) -> None:
    """Plan, train every fold within a budget, validate, summarise CV and register the model, in one command.

    Example: automed train ../shared/data/msd_hippocampus_dev -o work --budget 45m
    """
    from automed import api
    from automed.errors import ConfigError

    if resume is None and (dataset is None or output is None):
        raise ConfigError.single(
            "automed train",
            "a fresh training needs DATASET and --output",
            f"dataset={dataset}, output={output}",
            "pass both, or --resume WORKDIR to continue a run",
        )
    if resume is not None and output is not None and output.resolve() != resume.resolve():
        raise ConfigError.single(
            "--output",
            "--resume continues its own work dir",
            f"--output {output} with --resume {resume}",
            "drop --output (or give the same folder), or start a new training into --output without --resume",
        )
    if extend and resume is None:
        raise ConfigError.single(
            "--extend", "--extend continues a finished work dir", extend, "add --resume WORKDIR"
        )
    res = api.train(
        dataset,
        resume or output or Path(),
        config=config,
        configuration=configuration,
        epochs=epochs,
        budget=budget,
        folds=folds,
        only_folds=fold,
        device=device,
        tracking_uri=tracking_uri,
        register=register,
        resume=resume is not None,
        extend=extend,
        preset=preset,
        workers=workers,
        parallel_folds=parallel_folds,
        show_progress=progress(),
        keep_case_ids=keep_case_ids,
        overlays=overlays,
        cv=cv,
        previous=previous,
        ray_address=ray_address,
        trial_resources=trial_resources,
        full_ensemble=full_ensemble,
        task=task,
        max_voxels=max_voxels,
    )
    if res.folds_reason:
        out.print(res.folds_reason)
    if res.cv_summary.get("all_data"):
        inherited = res.cv_summary["inherited_cv_score"]
        out.print(
            "one model trained on every case (no validation fold); CV evidence "
            + (
                f"inherited from {res.cv_summary['cv_workdir']}: {inherited:.4f}"
                if inherited is not None
                else "none"
            )
        )
    elif res.model.task == "segmentation":
        _print_cv(res.cv_summary)
    else:
        _print_scores(res.cv_summary)
    if res.registered:
        out.print(
            f"registered {res.registered['name']} version {res.registered['version']} "
            f"(champion: version {res.registered['champion']})"
        )
    out.print(f"work dir: {res.workdir}")


def _num(x: object, digits: int) -> str:
    """A metric for the console; an undefined one (a label no case and no prediction holds) as n/a."""
    return f"{x:.{digits}f}" if isinstance(x, int | float) and math.isfinite(x) else "n/a"


def _print_cv(summary: dict[str, object]) -> None:
    t = Table(title="cross-validation (mean over the cases where a label is defined)")
    for col in ("label", "Dice", "HD95 mm", "NSD", "cases (both empty)"):
        t.add_column(col)
    names = summary.get("label_names", {})
    assert isinstance(names, dict)
    means = summary["mean"]
    assert isinstance(means, dict)
    for lab, m in means.items():
        t.add_row(
            str(names.get(lab, lab)),
            _num(m["dice"], 4),
            _num(m["hd95"], 2),
            _num(m["nsd"], 3),
            f"{m['n_cases']} ({m['n_both_empty']})",
        )
    fg = summary["foreground_mean"]
    assert isinstance(fg, dict)
    t.add_row(
        "foreground mean",
        _num(fg["dice"], 4),
        _num(fg["hd95"], 2),
        _num(fg["nsd"], 3),
        f"{fg['n_labels']} labels",
    )
    out.print(t)


def _print_scores(summary: dict[str, object]) -> None:
    """A classification or regression CV summary: its numbers, and per class the sensitivity, specificity, AUC."""
    t = Table(
        title=f"cross-validation ({summary.get('n_cases')} cases, each predicted by the fold that held it out)"
    )
    t.add_column("metric")
    t.add_column("value")
    for key, value in summary.items():
        if key != "n_cases" and not isinstance(value, dict | list):
            t.add_row(key.replace("_", " "), _num(value, 4))
    out.print(t)
    per_class = summary.get("per_class")
    if isinstance(per_class, dict):
        c = Table(title="per class (one vs rest)")
        for col in ("class", "cases", "sensitivity", "specificity", "AUC"):
            c.add_column(col)
        for name, m in per_class.items():
            c.add_row(
                str(name),
                str(m["n"]),
                _num(m["sensitivity"], 3),
                _num(m["specificity"], 3),
                _num(m["auc"], 3),
            )
        out.print(c)


@app.command()
def demo(
    output: Annotated[
        Path, typer.Option("--output", "-o", callback=expand_user, help="Work directory.")
    ] = Path("demo_work"),
    budget: Annotated[
        str,
        typer.Option(
            callback=checked_budget,
            help=f"Training budget (5m trains the small synthetic data well on 2 CPU cores; {BUDGET_HELP}).",
        ),
    ] = "5m",
    workers: WorkersOpt = None,
) -> None:
    """Train on a synthetic dataset within a budget, register the model, predict two held-out cases, print Dice.

    Example: automed demo -o demo_work --budget 5m
    """
    from automed.testing.demo import run_demo

    run_demo(output, budget=budget, workers=workers, show_progress=progress(), console=out)
