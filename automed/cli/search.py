"""Search verbs: sweep (Ray Tune + Optuna), grid (one config per combination), select (best training or pair)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from automed.cli._common import (
    BUDGET_HELP,
    DeviceOpt,
    KeepCaseIdsOpt,
    PresetOpt,
    ReplaceOutputOpt,
    TrackingUriOpt,
    TrainDatasetArg,
    TrainMaxVoxelsOpt,
    WorkersOpt,
    checked_budget,
    expand_user,
    out,
    print_table,
    progress,
)

app = typer.Typer()


@app.command()
def sweep(
    dataset: TrainDatasetArg = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", callback=expand_user, help="Sweep work directory.")
    ] = None,
    space: Annotated[Path | None, typer.Option(help="Search space YAML (see search_spaces/).")] = None,
    grid: Annotated[Path | None, typer.Option(help="Grid strategy YAML: evaluate every combination.")] = None,
    config: Annotated[Path | None, typer.Option(help="Base training config YAML.")] = None,
    trials: Annotated[
        int | None, typer.Option(min=1, help="Trials sampled in the search stage (default 8).")
    ] = None,
    budget: Annotated[
        str | None,
        typer.Option(
            callback=checked_budget, help=f"Wall-clock budget of the whole sweep: 30m, 2h ({BUDGET_HELP})."
        ),
    ] = None,
    folds: Annotated[int | None, typer.Option(min=2, help="Cross-validation folds (default 5).")] = None,
    promote: Annotated[
        int | None, typer.Option(min=0, help="Best screened trials promoted to all folds (default 2).")
    ] = None,
    screen: Annotated[
        bool | None,
        typer.Option(
            help="Screen trials on fold 0 and promote the best (default; --no-screen: every trial on all folds)."
        ),
    ] = None,
    sampler: Annotated[
        str | None, typer.Option(help="tpe (seeded, multivariate; default) or random.")
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="asha (stop weak trials early; default) or none.")
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            help="ray (one machine or a cluster; default) or optuna (this machine, no Ray daemons)."
        ),
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="Existing Ray cluster: auto, or HOST:PORT (also RAY_ADDRESS).")
    ] = None,
    trial_resources: Annotated[
        str | None, typer.Option(help="Per trial, e.g. cpu=1,gpu=0.5 (default cpu=1,gpu=0).")
    ] = None,
    seed: Annotated[int | None, typer.Option(min=0, max=2**32 - 1, help="Sampler seed (default 0).")] = None,
    tracking_uri: TrackingUriOpt = None,
    preset: PresetOpt = None,
    device: DeviceOpt = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the sweep work dir WORKDIR.")] = None,
    workers: WorkersOpt = None,
    keep_case_ids: KeepCaseIdsOpt = False,
    max_voxels: TrainMaxVoxelsOpt = None,
) -> None:
    """Search training configs with Ray Tune + Optuna over folds; log sweep/trial/fold runs to MLflow.

    Example: automed sweep ../shared/data/msd_hippocampus_dev -o sweep --space search_spaces/quick.yaml --budget 30m
    """
    from automed import api
    from automed.errors import ConfigError

    if resume is None and (dataset is None or output is None):
        raise ConfigError.single(
            "automed sweep",
            "a new sweep needs DATASET and --output",
            f"dataset={dataset}, output={output}",
            "pass both, or --resume WORKDIR to continue a sweep",
        )
    res = api.sweep(
        dataset,
        resume or output or Path(),
        space=space,
        grid=grid,
        config=config,
        trials=trials,
        budget=budget,
        folds=folds,
        promote=promote,
        screen=screen,
        sampler=sampler,
        scheduler=scheduler,
        engine=engine,
        ray_address=ray_address,
        trial_resources=trial_resources,
        seed=seed,
        tracking_uri=tracking_uri,
        preset=preset,
        device=device,
        workers=workers,
        resume=resume is not None,
        show_progress=progress(),
        keep_case_ids=keep_case_ids,
        max_voxels=max_voxels,
    )
    t = Table(title="sweep trials (best first)")
    cols = [c for c in res.table.columns if c not in ("host", "node", "trial_s")]
    for c in cols:
        t.add_column(str(c))
    for _, row in res.table.iterrows():
        t.add_row(*[f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in cols])
    print_table(t)
    for line in res.failures:  # each failed trial once (not per fold unit or attempt), its traceback's place
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    out.print(res.verdict)
    if res.best is not None:
        out.print(f"best config: {res.workdir / 'best_config.yaml'} (automed train DATASET --config ...)")
    out.print(f"work dir: {res.workdir}")
    if res.best is None and res.outcomes and all(o.status == "error" for o in res.outcomes):
        raise typer.Exit(1)  # every trial failed: a script must not take the sweep for done


@app.command("grid")
def grid_cmd(
    base: Annotated[Path, typer.Argument(help="Base training config YAML.")],
    strategy: Annotated[Path, typer.Argument(help="Grid strategy YAML: keys -> lists of values.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", callback=expand_user, help="Folder for the generated configs.")
    ],
    overwrite: ReplaceOutputOpt = False,
) -> None:
    """Write one training config per distinct combination of a grid strategy (GaNDLF-style).

    Example: automed grid base.yaml search_spaces/grid_example.yaml -o configs
    """
    from automed import api

    df = api.grid(base, strategy, output, overwrite=overwrite)
    out.print(f"{len(df)} configs written to {output} (index: {output / 'grid.csv'})")


@app.command()
def select(
    workdirs: Annotated[list[Path], typer.Argument(help="Training work dirs (one configuration each).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", callback=expand_user, help="Folder for selection.json.")
    ],
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow store (default: the first work dir's).")
    ] = None,
    inference: Annotated[
        bool,
        typer.Option(help="Also measure TTA/step/fold-count cost on CV and choose the inference settings."),
    ] = True,
    latency_target: Annotated[
        float | None, typer.Option(help="Seconds per case; default: cheapest within 0.5 % of the best Dice.")
    ] = None,
    keep_case_ids: KeepCaseIdsOpt = False,
) -> None:
    """Pick the best training or pair of trainings by CV Dice and decide postprocessing (largest components).

    Example: automed select work_3d work_2d -o selection
    """
    from automed import api

    if inference:  # it predicts for minutes on a CPU, and said nothing until it had finished
        out.print(
            f"comparing {len(workdirs)} training(s) on cross-validation; when one segmentation training is chosen, its "
            "TTA, window step and fold count are then timed on up to 5 of fold 0's validation cases, each predicted "
            "several times (minutes on a CPU; --no-inference skips it)",
            markup=False,
        )
    res = api.select(
        list(workdirs),
        output,
        tracking_uri=tracking_uri,
        inference=inference,
        latency_target=latency_target,
        keep_case_ids=keep_case_ids,
        show_progress=progress(),
    )
    image_level = "task" in res  # classification/regression: each candidate has its task's CV score
    score = "score" if image_level else "foreground_mean"
    t = Table(
        title=f"candidates ({res['task']} CV score)" if image_level else "candidates (CV foreground Dice)"
    )
    t.add_column("candidate")
    t.add_column("CV score" if image_level else "Dice")
    for row in res["candidates"]:
        t.add_row(row["candidate"], f"{row[score]:.4f}")
    out.print(t)
    for d in res["decisions"]:
        verdict = "kept" if d["kept"] else "rejected"
        what = f"{d['step']} {d['offsets']}" if "offsets" in d else f"largest component of {d['step']}"
        out.print(
            f"{what}: {d['before']['foreground_mean']:.4f} -> {d['after']['foreground_mean']:.4f} ({verdict})"
        )
    if "inference_cost" in res:
        c = res["inference_cost"]
        t = Table(title=f"inference cost on {len(c['table']['cases'])} CV cases (fold 0 network)")
        for col in ("TTA mirrors", "step", "Dice", "s/case"):
            t.add_column(col)
        for r in c["table"]["settings"]:
            t.add_row(api.mirror_label(r), str(r["step"]), f"{r['dice']:.4f}", f"{r['seconds_per_case']:.2f}")
        out.print(t)
        ch = c["choice"]
        mirrors = f" ({ch.get('mirrors', 'all')} mirrors)" if ch["tta"] else ""
        out.print(
            f"inference: TTA {ch['tta']}{mirrors}, step {ch['step']}, {ch['folds']} fold(s) ({ch['reason']})"
        )
    out.print(f"chosen: {res['chosen']['candidate']}; evidence in {output / 'selection.json'}")
