"""Tool verbs: info (versions and devices), ui (the MLflow UI on automed's store), metrics (score predictions
against references) and report (compare runs on one page)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from automed.cli._common import ReplaceOutputOpt, TrackingUriOpt, expand_user, out, progress

app = typer.Typer()


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
def ui(
    tracking_uri: TrackingUriOpt = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1 (1-65535).")] = 5000,
) -> None:
    """Start the MLflow UI on 127.0.0.1 against automed's store and print its URL (Ctrl-C stops it).

    Example: automed ui --port 5000
    """
    import os
    import subprocess

    from automed.errors import ConfigError
    from automed.tracking import ARTIFACTS_DIR, check_tracking_uri, registry_uri, resolve_uri

    # a store MLflow cannot serve is one clear error here (the server had printed a traceback and automed exit 0)
    check_tracking_uri(tracking_uri, registry=False)  # (the UI serves the tracking store)
    uri = resolve_uri(tracking_uri)
    default = not (tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"))
    if default and not Path(uri[len("sqlite:///") :]).is_file():
        # MLflow's server would create an empty store here (an mlflow.db left in whatever folder `ui` ran in, and
        # no runs shown); a store named on purpose may be new (a server to track into)
        raise ConfigError.single(
            "automed ui",
            "without --tracking-uri the UI shows the store of the folder it runs in, and there is none here",
            f"no file at {uri[len('sqlite:///') :]}",
            "run `automed ui` in the folder you trained from (its mlflow.db), or pass "
            "--tracking-uri sqlite:///PATH/mlflow.db (a new path starts an empty store)",
        )  # fmt: skip
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
    registry = registry_uri(uri)
    if registry != uri:  # MLflow's server reads no MLFLOW_REGISTRY_URI: its models were not shown
        cmd += ["--registry-store-uri", registry]
    _refuse_taken_port(port)
    out.print(f"MLflow UI for {uri}: http://127.0.0.1:{port}  (Ctrl-C to stop)", markup=False)
    # the server in a session of its own, stopped whole on the way out: SIGTERM had ended automed and the `mlflow
    # server` command only, leaving uvicorn (still on the port) and MLflow's job workers running
    server = subprocess.Popen(cmd, start_new_session=True)
    try:
        code = server.wait()
    finally:
        _stop_group(server)
    if code not in (0, -2, 130):  # (Ctrl-C: SIGINT, or the exit code a shell gives it)
        raise typer.Exit(1)  # the server's own message is above


def _refuse_taken_port(port: int) -> None:
    """A port another server holds is refused before the UI starts (it printed this URL, served by the other
    server, and exited 0 when its own server failed to bind)."""
    import socket

    from automed.errors import ConfigError

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # as the server binds: a port left in TIME_WAIT by an earlier UI's closed connections is free to it
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise ConfigError.single(
                "--port", "the UI's port must be free on 127.0.0.1", f"{port} ({exc.strerror or exc})",
                f"pass another --port (e.g. {port + 1}), or stop what serves {port}",
            ) from exc  # fmt: skip


def _stop_group(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group, then SIGKILL to what is left after 10 s."""
    import signal

    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return  # the group is gone
        try:
            server.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        try:  # its workers may outlive the command itself
            os.killpg(server.pid, 0)
        except ProcessLookupError:
            return


@app.command()
def metrics(
    input_path: Annotated[
        Path,
        typer.Argument(
            help="A CSV (SubjectID,Target,Prediction with image paths or values; optional Mask and "
            "probability_<class> columns), automed predict's predictions.csv (with --reference CASES.csv) or a "
            "folder of predictions (with --reference)."
        ),
    ],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", callback=expand_user, help="Folder for metrics.csv and summary.json."),
    ],
    reference: Annotated[
        Path | None,
        typer.Option(
            help="Folder of reference label maps, matched to the predictions by case name; or, for a "
            "predictions.csv, the CSV of the cases (SubjectID and ValueToPredict or Target)."
        ),
    ] = None,
    problem: Annotated[
        str,
        typer.Option(help="auto (from the targets), segmentation, synthesis, classification or regression."),
    ] = "auto",
    labels: Annotated[
        Path | None, typer.Option(help="A dataset.json whose labels name the label values.")
    ] = None,
    region: Annotated[
        list[str] | None,
        typer.Option(help="A union of labels scored as one structure, NAME=1,2,4 (repeatable)."),
    ] = None,
    tolerance: Annotated[float, typer.Option(min=0.0, help="NSD tolerance in mm.")] = 1.0,
    missing_value: Annotated[
        str | None,
        typer.Option(
            help="Score a missing prediction instead of refusing: 'empty' scores a missing label map as an empty "
            "one (Dice 0, worst-case distances where the reference has the label); a number is every segmentation "
            "metric of the case (HD95 0 would be a perfect score); for classes and values it is the prediction.",
            metavar="VALUE|empty",
        ),
    ] = None,
    overwrite: ReplaceOutputOpt = False,
) -> None:
    """Score predictions against references: Dice, IoU, sensitivity, precision, HD95, ASSD, NSD and volume difference
    per label and region for label maps (spacing-aware); accuracy, balanced accuracy, AUC, F1, per-class
    sensitivity/specificity, confusion matrix and calibration for classes; MAE, RMSE, R2 and Pearson r for values;
    MSE, PSNR, SSIM and normalized cross-correlation for synthesized images (inside a Mask column's mask).

    Example: automed metrics predictions/ --reference labelsTr/ -o scores --labels dataset.json --region all=1,2

    Example: automed metrics out/predictions.csv --reference test_cases.csv -o scores
    """
    from automed import api
    from automed.workflow.metrics import headline

    res = api.metrics(
        input_path,
        output,
        reference=reference,
        problem=problem,
        labels=labels,
        regions=region,
        tolerance=tolerance,
        missing_value=missing_value,
        overwrite=overwrite,
        show_progress=progress(),
    )
    out.print(f"{res.kind}: {headline(res)}")
    out.print(f"written: {res.folder / 'metrics.csv'}, {res.folder / 'summary.json'}")


@app.command()
def report(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Training work dirs, selection folders, MLflow training runs (runs:/ID), `automed metrics` "
            "outputs or their metrics.csv (one or more, one problem)."
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", callback=expand_user, help="Folder for report.html and its PNGs/CSVs."
        ),
    ],
    overwrite: ReplaceOutputOpt = False,
    tracking_uri: TrackingUriOpt = None,
    mlflow: Annotated[
        bool,
        typer.Option(
            "--mlflow/--no-mlflow",
            help="Also log the page (pseudonyms, no thumbnails) to each training's run.",
        ),
    ] = True,
) -> None:
    """One self-contained HTML page comparing runs. Segmentation: means, boxplots, training curves of every fold,
    paired Wilcoxon signed-rank tests per structure (Holm-corrected) with the better run, run-vs-run scatter, outliers,
    max-slice thumbnails of the worst cases and the per-case table. Classification/regression: CV numbers, ROC/PR,
    confusion and calibration (or predicted vs true), curves, McNemar (or Wilcoxon on absolute errors), cases.

    Example: automed report work_3d work_2d -o report ; automed report runs:/RUN_ID work/selection -o report
    """
    from automed import api

    res = api.report(runs, output, overwrite=overwrite, tracking_uri=tracking_uri, log_to_mlflow=mlflow)
    for t in res.tests:
        out.print(f"{_test_line(t)}, p {t['p_value']:.3g} (Holm {t['p_holm']:.3g}), better: {t['better']}")
    out.print(f"report: {res.page}")


def _test_line(t: dict[str, Any]) -> str:
    """One paired test's runs and effect: per structure the median Dice difference (segmentation), the cases only
    one run classified right (McNemar) or the median difference of absolute errors (regression)."""
    pair = f"{t['run_a']} vs {t['run_b']}"
    if "only_a_right" in t:
        return f"{t['test']}: {pair}, right only by the first {t['only_a_right']}, only by the second {t['only_b_right']}"
    if "name" not in t:
        return f"{t['test']}: {pair}, median difference of absolute errors (second minus first) {t['median_difference']:+.4g}"
    return f"{t['name']}: {pair}, median Dice difference (second minus first) {t['median_difference']:+.4f}"
