"""``automed`` command line: a thin typer layer over :mod:`automed.api`. Heavy imports happen inside commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="automed",
    help="AutoML for medical imaging: verify, fingerprint, plan and preprocess a dataset (more stages to come).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)
_state = {"debug": False, "quiet": False}

DatasetArg = Annotated[
    Path, typer.Argument(help="Dataset folder with dataset.json (MSD or nnU-Net v2), or a CSV.")
]
WorkdirOpt = Annotated[Path, typer.Option("--output", "-o", help="Work directory for the artifacts.")]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", "-w", help="Worker processes (default: CPU count).")
]


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    _state["debug"] = debug
    _state["quiet"] = quiet


def _progress() -> bool:
    return not _state["quiet"]


@app.command()
def verify(dataset: DatasetArg, workers: WorkersOpt = None) -> None:
    """Check a dataset and report every problem at once (file, rule, value, fix). Writes nothing.

    Example: automed verify ../shared/data/msd_hippocampus_dev
    """
    from automed import api

    rep = api.verify(dataset, workers=workers, show_progress=_progress())
    out.print(f"[green]OK[/green]: {rep.n_cases} cases, label values {list(rep.label_values)}")


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

    api.verify(dataset, workers=workers, show_progress=_progress())
    fp, reused = api.fingerprint(dataset, output, workers=workers, force=force, show_progress=_progress())
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
    folds: Annotated[int, typer.Option(help="Cross-validation folds for splits.json.")] = 5,
    workers: WorkersOpt = None,
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
        show_progress=_progress(),
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
        out.print(f"  [bold]{k}[/bold]: {v}")
    if p.calibration is not None:
        out.print(f"  [bold]calibration[/bold]: {p.calibration.note}")


@app.command()
def preprocess(
    dataset: DatasetArg,
    output: WorkdirOpt,
    configurations: Annotated[
        str | None, typer.Option("--configurations", "-c", help="Comma-separated configurations.")
    ] = None,
    folds: Annotated[int, typer.Option(help="Cross-validation folds for splits.json.")] = 5,
    workers: WorkersOpt = None,
) -> None:
    """Write WORKDIR/preprocessed/<configuration>/ and splits.json for the plan in WORKDIR.

    Example: automed preprocess ../shared/data/msd_hippocampus_dev -o work -c 3d_fullres
    """
    from automed import api

    cfgs = [c.strip() for c in configurations.split(",")] if configurations else None
    status = api.preprocess(
        dataset, output, configurations=cfgs, folds=folds, workers=workers, show_progress=_progress()
    )
    for ident, st in status.items():
        out.print(f"preprocessed/{ident}: {st}")


@app.command("construct-csv")
def construct_csv(
    root: Annotated[Path, typer.Argument(help="Folder with one sub-folder per subject.")],
    channels: Annotated[str, typer.Option(help="Comma-separated file endings, one per channel.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="CSV file to write.")],
    label: Annotated[str | None, typer.Option(help="File ending of the label map.")] = None,
) -> None:
    """Write a GaNDLF-style CSV (SubjectID, Channel_*, Label) for a DIR/<subject>/<files> tree.

    Example: automed construct-csv data/ --channels _t1.nii.gz,_t2.nii.gz --label _seg.nii.gz -o data.csv
    """
    from automed.data.dataset import construct_csv as _construct

    path = _construct(root, [c.strip() for c in channels.split(",") if c.strip()], label, output)
    out.print(f"wrote {path}")


@app.command()
def info() -> None:
    """Print versions of automed and its libraries, the CPU and CUDA devices.

    Example: automed info
    """
    import os
    import platform
    from importlib import metadata

    from automed._version import __version__

    t = Table(title=f"automed {__version__}")
    t.add_column("item")
    t.add_column("value")
    t.add_row("python", platform.python_version())
    t.add_row("platform", platform.platform())
    t.add_row("cpu cores", str(os.cpu_count()))
    for pkg in (
        "torch",
        "numpy",
        "SimpleITK",
        "scipy",
        "pydicom",
        "scikit-learn",
        "pandas",
        "pydantic",
        "torchio",
        "mlflow",
        "optuna",
        "ray",
        "onnx",
        "onnxruntime",
        "openvino",
    ):
        try:
            t.add_row(pkg, metadata.version(pkg))
        except metadata.PackageNotFoundError:
            t.add_row(pkg, "not installed")
    import torch

    t.add_row("cuda available", str(torch.cuda.is_available()))
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        t.add_row(f"cuda:{i}", f"{props.name}, {props.total_memory / 1024**3:.1f} GB")
    out.print(t)


@app.command()
def train(
    dataset: Annotated[
        Path | None, typer.Argument(help="Dataset (folder with dataset.json, or CSV).")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Work directory.")] = None,
    budget: Annotated[
        str | None, typer.Option(help="Wall-clock budget for the whole command: 45m, 2h, 90s.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs per fold (instead of a budget).")] = None,
    folds: Annotated[int, typer.Option(help="Cross-validation folds.")] = 5,
    fold: Annotated[list[int] | None, typer.Option(help="Train only these folds (repeatable).")] = None,
    configuration: Annotated[
        str | None,
        typer.Option("--configuration", "-c", help="Plan configuration (default: 3d_fullres, else 2d)."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="Training config YAML (see automed.train.config).")
    ] = None,
    preset: Annotated[str | None, typer.Option(help="Planner preset (default: by device).")] = None,
    device: Annotated[str | None, typer.Option(help="cuda, cpu or auto.")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow store (default: ./mlflow.db).")] = None,
    register: Annotated[bool, typer.Option(help="Register the fold ensemble in the MLflow registry.")] = True,
    resume: Annotated[Path | None, typer.Option(help="Continue the training work dir WORKDIR.")] = None,
    extend: Annotated[int, typer.Option(help="With --resume: add N epochs to finished folds.")] = 0,
    parallel_folds: Annotated[
        int,
        typer.Option(help="Folds trained at once in worker processes (one GPU each when there are enough)."),
    ] = 1,
    workers: WorkersOpt = None,
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
        show_progress=_progress(),
    )
    _print_cv(res.cv_summary)
    if res.registered:
        out.print(
            f"registered {res.registered['name']} version {res.registered['version']} "
            f"(champion: version {res.registered['champion']})"
        )
    out.print(f"work dir: {res.workdir}")


def _print_cv(summary: dict[str, object]) -> None:
    t = Table(title="cross-validation (mean over cases)")
    for col in ("label", "Dice", "HD95 mm", "NSD", "cases"):
        t.add_column(col)
    names = summary.get("label_names", {})
    assert isinstance(names, dict)
    means = summary["mean"]
    assert isinstance(means, dict)
    for lab, m in means.items():
        t.add_row(
            str(names.get(lab, lab)),
            f"{m['dice']:.4f}",
            f"{m['hd95']:.2f}",
            f"{m['nsd']:.3f}",
            str(m["n_cases"]),
        )
    fg = summary["foreground_mean"]
    assert isinstance(fg, dict)
    t.add_row("foreground mean", f"{fg['dice']:.4f}", f"{fg['hd95']:.2f}", f"{fg['nsd']:.3f}", "")
    out.print(t)


@app.command()
def sweep(
    dataset: Annotated[
        Path | None, typer.Argument(help="Dataset (folder with dataset.json, or CSV).")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Sweep work directory.")] = None,
    space: Annotated[Path | None, typer.Option(help="Search space YAML (see search_spaces/).")] = None,
    grid: Annotated[Path | None, typer.Option(help="Grid strategy YAML: evaluate every combination.")] = None,
    config: Annotated[Path | None, typer.Option(help="Base training config YAML.")] = None,
    trials: Annotated[int, typer.Option(help="Trials sampled in the search stage.")] = 8,
    budget: Annotated[str | None, typer.Option(help="Wall-clock budget of the whole sweep: 30m, 2h.")] = None,
    folds: Annotated[int, typer.Option(help="Cross-validation folds.")] = 5,
    promote: Annotated[int, typer.Option(help="Best screened trials promoted to all folds.")] = 2,
    screen: Annotated[
        bool,
        typer.Option(help="Screen trials on fold 0 and promote the best (else: every trial on all folds)."),
    ] = True,
    sampler: Annotated[str, typer.Option(help="tpe (seeded, multivariate) or random.")] = "tpe",
    scheduler: Annotated[str, typer.Option(help="asha (stop weak trials early) or none.")] = "asha",
    engine: Annotated[
        str, typer.Option(help="ray (one machine or a cluster) or optuna (this machine, no Ray daemons).")
    ] = "ray",
    ray_address: Annotated[
        str | None, typer.Option(help="Existing Ray cluster: auto, or HOST:PORT (also RAY_ADDRESS).")
    ] = None,
    trial_resources: Annotated[str, typer.Option(help="Per trial, e.g. cpu=1,gpu=0.5.")] = "cpu=1,gpu=0",
    seed: Annotated[int, typer.Option(help="Sampler seed.")] = 0,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow store (default: ./mlflow.db).")] = None,
    preset: Annotated[str | None, typer.Option(help="Planner preset (default: by device).")] = None,
    device: Annotated[str | None, typer.Option(help="cuda, cpu or auto.")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the sweep work dir WORKDIR.")] = None,
    workers: WorkersOpt = None,
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
        show_progress=_progress(),
    )
    t = Table(title="sweep trials (best first)")
    cols = [c for c in res.table.columns if c not in ("host", "node", "trial_s")]
    for c in cols:
        t.add_column(str(c))
    for _, row in res.table.iterrows():
        t.add_row(*[f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in cols])
    out.print(t)
    for o in res.outcomes:
        if o.status == "error":
            out.print(f"trial {o.key} failed: {o.error}")
    out.print(res.verdict)
    if res.best is not None:
        out.print(f"best config: {res.workdir / 'best_config.yaml'} (automed train DATASET --config ...)")
    out.print(f"work dir: {res.workdir}")


@app.command("grid")
def grid_cmd(
    base: Annotated[Path, typer.Argument(help="Base training config YAML.")],
    strategy: Annotated[Path, typer.Argument(help="Grid strategy YAML: keys -> lists of values.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the generated configs.")],
) -> None:
    """Write one training config per distinct combination of a grid strategy (GaNDLF-style).

    Example: automed grid base.yaml search_spaces/grid_example.yaml -o configs
    """
    from automed import api

    df = api.grid(base, strategy, output)
    out.print(f"{len(df)} configs written to {output} (index: {output / 'grid.csv'})")


@app.command()
def export(
    model: Annotated[str, typer.Argument(help="Training work dir or models:/NAME@ALIAS.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Export folder (default: WORKDIR/export).")
    ] = None,
    format: Annotated[
        str, typer.Option("--format", help="Comma-separated: onnx, openvino.")
    ] = "onnx,openvino",
    case: Annotated[
        Path | None, typer.Option(help="Image (or folder) for the parity check (default: a validation case).")
    ] = None,
    ov_precision: Annotated[
        str,
        typer.Option(
            help="OpenVINO runtime precision, checked and timed: auto (bf16 on CPUs with native bf16, else f32), "
            "f32, bf16 or f16."
        ),
    ] = "auto",
    repeats: Annotated[int, typer.Option(help="Timed predictions per runtime (best is kept).")] = 1,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow store for models:/ URIs.")] = None,
) -> None:
    """Export fold networks to ONNX / OpenVINO IR; check parity with torch and time each runtime on a real case.

    Exporting a work dir links the export to it: `automed predict WORKDIR` then runs the export (OpenVINO) while its
    checkpoints are unchanged.

    Example: automed export work --format onnx,openvino
    """
    from automed import api

    res = api.export(
        model,
        output,
        formats=format,
        case=case,
        ov_precision=ov_precision,
        repeats=repeats,
        tracking_uri=tracking_uri,
    )
    rep = res.report
    if "parity" in rep:
        t = Table(title=f"parity and latency on {rep['parity_case']}")
        for col in ("runtime", "max |dp|", "Dice vs torch", "seconds"):
            t.add_column(col)
        for name, sec in rep["latency_seconds"].items():
            p = rep["parity"].get(name, {})
            t.add_row(
                name,
                f"{p['max_abs_prob']:.2e}" if p else "reference" if name == "torch_fp32" else "",
                f"{p['dice_vs_torch']:.4f}" if p else "",
                f"{sec:.2f}",
            )
        out.print(t)
    out.print(f"exported to {res.folder} (report: {res.folder / 'export.json'})")
    link = rep.get("link")
    if link is not None:
        out.print(
            "automed predict will use this export"
            if link["parity_passed"]
            else "parity did not pass: automed predict keeps using torch"
        )


@app.command()
def package(
    model: Annotated[str, typer.Argument(help="Training work dir or models:/NAME@ALIAS.")],
    mlcube: Annotated[Path, typer.Option("--mlcube", help="Cube folder to write.")],
    export_dir: Annotated[
        Path | None, typer.Option("--export", help="Reuse a folder written by `automed export`.")
    ] = None,
    image: Annotated[
        str | None, typer.Option(help="Container image name (default: automed/<dataset>:0.1.0).")
    ] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow store for models:/ URIs.")] = None,
) -> None:
    """Package a model as an MLCube + MedPerf container folder (Dockerfiles, entry point, weights, README).

    Example: automed package work --mlcube dist/cube
    """
    from automed import api

    res = api.package(model, mlcube, export_dir=export_dir, image=image, tracking_uri=tracking_uri)
    out.print(
        f"cube written to {res.folder} (image {res.image}); build with: docker build -t {res.image} {res.folder / 'project'}"
    )


@app.command()
def select(
    workdirs: Annotated[list[Path], typer.Argument(help="Training work dirs (one configuration each).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for selection.json.")],
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
) -> None:
    """Pick the best training or pair of trainings by CV Dice and decide postprocessing (largest components).

    Example: automed select work_3d work_2d -o selection
    """
    from automed import api

    res = api.select(
        list(workdirs), output, tracking_uri=tracking_uri, inference=inference, latency_target=latency_target
    )
    t = Table(title="candidates (CV foreground Dice)")
    t.add_column("candidate")
    t.add_column("Dice")
    for row in res["candidates"]:
        t.add_row(row["candidate"], f"{row['foreground_mean']:.4f}")
    out.print(t)
    for d in res["decisions"]:
        verdict = "kept" if d["kept"] else "rejected"
        out.print(
            f"largest component of {d['step']}: {d['before']['foreground_mean']:.4f} -> "
            f"{d['after']['foreground_mean']:.4f} ({verdict})"
        )
    if "inference_cost" in res:
        c = res["inference_cost"]
        t = Table(title=f"inference cost on {len(c['table']['cases'])} CV cases (fold 0 network)")
        for col in ("TTA", "step", "Dice", "s/case"):
            t.add_column(col)
        for r in c["table"]["settings"]:
            t.add_row(str(r["tta"]), str(r["step"]), f"{r['dice']:.4f}", f"{r['seconds_per_case']:.2f}")
        out.print(t)
        ch = c["choice"]
        out.print(f"inference: TTA {ch['tta']}, step {ch['step']}, {ch['folds']} fold(s) ({ch['reason']})")
    out.print(f"chosen: {res['chosen']['candidate']}; evidence in {output / 'selection.json'}")


@app.command()
def predict(
    model: Annotated[str, typer.Argument(help="Training work dir, or models:/NAME@ALIAS (MLflow registry).")],
    input_path: Annotated[Path, typer.Option("--input", "-i", help="Folder of images, DICOM folder or CSV.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the label maps.")],
    tta: Annotated[
        bool | None, typer.Option(help="Mirror test-time augmentation (default: the model's setting).")
    ] = None,
    save_probabilities: Annotated[bool, typer.Option(help="Also write CASE.npz probabilities.")] = False,
    device: Annotated[str | None, typer.Option(help="cuda, cpu or auto.")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow store for models:/ URIs.")] = None,
    runtime: Annotated[
        str,
        typer.Option(
            help="auto: the work dir's export (from `automed export`; OpenVINO, else onnxruntime) when it is "
            "still the model's, else torch; or torch, openvino, onnx."
        ),
    ] = "auto",
) -> None:
    """Predict label maps in each input's own geometry (CASE_0000.nii.gz ... in, CASE.nii.gz out).

    Example: automed predict models:/automed-Hippocampus@champion -i images/ -o predictions/
    """
    from automed import api

    paths = api.predict(
        model,
        input_path,
        output,
        tta=tta,
        save_probabilities=save_probabilities,
        device=device,
        tracking_uri=tracking_uri,
        show_progress=_progress(),
        runtime=runtime,
        on_load=lambda text: out.print(f"predicting with {text}"),
    )
    out.print(f"wrote {len(paths)} prediction(s) to {output}")


@app.command()
def ui(
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow store (default: ./mlflow.db).")] = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000,
) -> None:
    """Start the MLflow UI on 127.0.0.1 against automed's store and print its URL (Ctrl-C stops it).

    Example: automed ui --port 5000
    """
    import subprocess

    from automed.tracking import ARTIFACTS_DIR, resolve_uri

    uri = resolve_uri(tracking_uri)
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    if uri.startswith("sqlite:///"):
        cmd += ["--default-artifact-root", str(Path(uri[len("sqlite:///") :]).parent / ARTIFACTS_DIR)]
    out.print(f"MLflow UI for {uri}: http://127.0.0.1:{port}  (Ctrl-C to stop)")
    subprocess.run(cmd, check=False)


@app.command()
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Work directory.")] = Path("demo_work"),
    budget: Annotated[str, typer.Option(help="Training budget (CPU: at most 10 minutes).")] = "5m",
    workers: WorkersOpt = None,
) -> None:
    """Train on a synthetic dataset within a budget, register the model, predict two held-out cases, print Dice.

    Example: automed demo -o demo_work --budget 5m
    """
    from automed.testing.demo import run_demo

    run_demo(output, budget=budget, workers=workers, show_progress=_progress(), console=out)


def main() -> None:
    """Console entry point: errors print one clear message (traceback only with --debug) and exit 1."""
    from automed.errors import AutomedError

    try:
        app(standalone_mode=False)
    except AutomedError as exc:
        if _state["debug"]:
            raise
        err.print(f"error: {exc}", style="red", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # click usage errors and anything unexpected
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit | click.exceptions.Abort):
            sys.exit(getattr(exc, "exit_code", 1))
        if _state["debug"]:
            raise
        err.print(
            f"unexpected error: {type(exc).__name__}: {exc} (re-run with --debug for the traceback)",
            style="red",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
