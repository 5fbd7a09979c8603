"""Fold networks of an export as numpy callables: onnxruntime or OpenVINO (no torch).

Used by the bundle's ``predict.py`` and by ``automed predict`` when the model has a usable export.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .telemetry import environment_off, openvino_off

Forward = Callable[[np.ndarray], np.ndarray]
RUNTIME_MODULES = {"openvino": "openvino", "onnx": "onnxruntime"}


def onnx_forwards(files: list[Path], threads: int | None, device: str = "cpu") -> list[Forward]:
    environment_off()
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    providers = (
        ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    )
    sessions = [ort.InferenceSession(str(f), opts, providers=providers) for f in files]

    def make(session: Any) -> Forward:
        return lambda x: np.asarray(session.run(None, {"image": x})[0])

    return [make(s) for s in sessions]


def openvino_forwards(files: list[Path], threads: int | None, precision: str) -> list[Forward]:
    openvino_off()
    import openvino as ov

    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    core = ov.Core()
    compiled = [core.compile_model(str(f), "CPU", config) for f in files]

    def make(model: Any) -> Forward:
        return lambda x: np.asarray(model(x)[0])

    return [make(c) for c in compiled]


def installed(runtime: str) -> bool:
    return importlib.util.find_spec(RUNTIME_MODULES[runtime]) is not None


def choose_runtime(runtime: str | None, files: dict[str, list[str]]) -> str | None:
    """The runtime to use: ``runtime`` if the export has it, else OpenVINO, then onnxruntime, whichever is
    installed; ``None`` when none is."""
    have = [r for r in ("openvino", "onnx") if r in files]
    if (
        runtime
    ):  # asked for by name: it must be in the export and installed (else a clear error, not an import)
        return runtime if runtime in have and installed(runtime) else None
    return next((r for r in have if installed(r)), None)


def forwards_for(
    root: Path, meta: dict[str, Any], runtime: str, threads: int | None, device: str = "cpu"
) -> list[Forward]:
    """Load the networks ``preprocess.json`` (``meta``) lists for ``runtime``, relative to the export ``root``."""
    files = [root / f for f in meta["files"][runtime]]
    if runtime == "onnx":
        return onnx_forwards(files, threads, device)
    return openvino_forwards(files, threads, meta["inference"]["openvino_precision"])
