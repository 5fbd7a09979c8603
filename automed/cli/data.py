"""Dataset verbs: verify, fingerprint, plan, preprocess, construct-csv."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from automed.cli._common import (
    DatasetArg,
    MaxVoxelsOpt,
    SplitFoldsOpt,
    WorkdirOpt,
    WorkersOpt,
    expand_user,
    out,
    progress,
)

app = typer.Typer()


@app.command()
def verify(
    dataset: DatasetArg,
    workers: WorkersOpt = None,
    max_voxels: MaxVoxelsOpt = 500_000_000,
) -> None:
    """Check a dataset and report every problem at once (file, rule, value, fix). Writes nothing.

    Example: automed verify ../shared/data/msd_hippocampus_dev
    """
    from automed import api

    rep = api.verify(dataset, workers=workers, show_progress=progress(), max_voxels=max_voxels)
    out.print(f"[green]OK[/green]: {rep.n_cases} cases, {rep.targets}", markup=True)


@app.command()
def fingerprint(
    dataset: DatasetArg,
    output: WorkdirOpt,
    workers: WorkersOpt = None,
    force: Annotated[bool, typer.Option(help="Recompute even if the inputs are unchanged.")] = False,
) -> None:
    """Write WORKDIR/fingerprint.json (spacings, shapes, intensities, labels, modality, task type).

    Example: automed fingerprint ../shared/data/msd_hippocampus_dev -o work
    """
    from automed import api

    fp, reused = api.fingerprint(
        dataset, output, workers=workers, force=force, show_progress=progress(), verify_first=True
    )
    note = " (unchanged inputs: reused)" if reused else ""
    out.print(
        f"fingerprint.json{note}: {fp.n_cases} cases, {fp.dimension}D, task {fp.task_type}, hash {fp.hash}"
    )
    for ch in fp.channels:
        out.print(f"  channel {ch.index}: {ch.modality} ({ch.modality_reason})")


@app.command()
def plan(
    dataset: DatasetArg,
    output: WorkdirOpt,
    preset: Annotated[str, typer.Option(help="Planner preset name in planners/ or a YAML path.")] = "default",
    device: Annotated[
        str | None, typer.Option(help="Plan for 'cuda' or 'cpu' (default: the preset's).")
    ] = None,
    memory_gb: Annotated[float | None, typer.Option(help="Device memory to plan for, in GB.")] = None,
    calibrate: Annotated[
        bool, typer.Option(help="Measure one training step on the device and correct.")
    ] = False,
    no_preprocess: Annotated[bool, typer.Option("--no-preprocess", help="Stop after plan.json.")] = False,
    configurations: Annotated[
        str | None,
        typer.Option("--configurations", "-c", help="Comma-separated configurations to preprocess."),
    ] = None,
    folds: SplitFoldsOpt = 5,
    workers: WorkersOpt = None,
    max_voxels: MaxVoxelsOpt = 500_000_000,
) -> None:
    """verify -> fingerprint -> plan -> preprocess in one go; each stage is skipped when its inputs are unchanged.

    Example: automed plan ../shared/data/msd_hippocampus_dev -o work -c 3d_fullres
    """
    from automed import api

    cfgs = [c.strip() for c in configurations.split(",")] if configurations else None
    res = api.plan_dataset(
        dataset,
        output,
        preset=preset,
        device=device,
        memory_gb=memory_gb,
        calibrate=calibrate,
        run_preprocess=not no_preprocess,
        configurations=cfgs,
        folds=folds,
        workers=workers,
        show_progress=progress(),
        max_voxels=max_voxels,
    )
    _print_plan(res.plan)
    for ident, st in res.preprocessed.items():
        out.print(f"preprocessed/{ident}: {st}")
    out.print(f"artifacts in {res.workdir.resolve()}")


def _print_plan(p: object) -> None:
    from automed.plan.schema import Plan

    assert isinstance(p, Plan)
    t = Table(title=f"plan for {p.dataset_name} (hash {p.hash})")
    for col in ("configuration", "spacing", "patch", "batch", "stages", "memory GB"):
        t.add_column(col)
    for name, c in p.configurations.items():
        t.add_row(
            name,
            "x".join(f"{s:.3g}" for s in c.spacing),
            "x".join(map(str, c.patch_size)),
            str(c.batch_size),
            str(c.network.n_stages),
            f"{c.memory.estimate_gb:.2f}/{c.memory.target_gb:g} {c.memory.device}",
        )
    out.print(t)
    for k, v in p.reasons.items():
        out.print(f"  [bold]{k}[/bold]: {v}", markup=True)
    if p.calibration is not None:
        out.print(f"  [bold]calibration[/bold]: {p.calibration.note}", markup=True)


@app.command()
def preprocess(
    dataset: DatasetArg,
    output: WorkdirOpt,
    configurations: Annotated[
        str | None, typer.Option("--configurations", "-c", help="Comma-separated configurations.")
    ] = None,
    folds: SplitFoldsOpt = 5,
    workers: WorkersOpt = None,
) -> None:
    """Write WORKDIR/preprocessed/<configuration>/ and splits.json for the plan in WORKDIR.

    Example: automed preprocess ../shared/data/msd_hippocampus_dev -o work -c 3d_fullres
    """
    from automed import api

    cfgs = [c.strip() for c in configurations.split(",")] if configurations else None
    status = api.preprocess(
        dataset, output, configurations=cfgs, folds=folds, workers=workers, show_progress=progress()
    )
    for ident, st in status.items():
        out.print(f"preprocessed/{ident}: {st}")


@app.command("construct-csv")
def construct_csv(
    root: Annotated[Path, typer.Argument(help="Folder with one sub-folder per subject.")],
    channels: Annotated[str, typer.Option(help="Comma-separated file endings, one per channel.")],
    output: Annotated[Path, typer.Option("--output", "-o", callback=expand_user, help="CSV file to write.")],
    label: Annotated[str | None, typer.Option(help="File ending of the label map.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing CSV at --output.")] = False,
) -> None:
    """Write a GaNDLF-style CSV (SubjectID, Channel_*, Label) for a DIR/<subject>/<files> tree.

    Example: automed construct-csv data/ --channels _t1.nii.gz,_t2.nii.gz --label _seg.nii.gz -o data.csv
    """
    from automed.data.dataset import construct_csv as _construct

    endings = [c.strip() for c in channels.split(",") if c.strip()]
    path = _construct(root, endings, label, output, overwrite=overwrite)
    out.print(f"wrote {path}")
