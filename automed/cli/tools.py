"""Tool verbs: info (versions and devices) and ui (the MLflow UI on automed's store)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from automed.cli._common import TrackingUriOpt, out

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
