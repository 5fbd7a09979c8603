"""Export fold networks to ONNX and OpenVINO IR, and load them back as drop-in modules for automed's predictor.

ONNX: torch 2.13's dynamo exporter (needs ``onnxscript``), opset 20, input ``image`` ``(batch, C, *spatial)`` with
every spatial axis dynamic as a multiple of the network's divisor (named ``8*z_8`` and so on), output ``logits``.
OpenVINO: ``openvino.convert_model`` of the ONNX file, saved with **FP32 weights** (``compress_to_fp16=False``; the
default would halve them to FP16). Runtime precision is chosen at load time: ``f32`` (exact, used by the parity
check) or ``bf16`` (OpenVINO's default on CPUs with native bf16: about 3x faster, probabilities within ~0.03).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automed.registry import Registry
from automed.runtime.telemetry import openvino_off

RUNTIMES: Registry[type[RuntimeModule]] = Registry("runtime")
OPSET = 20


def export_onnx(
    model: torch.nn.Module, in_channels: int, patch: list[int], divisor: list[int], path: Path
) -> float:
    """Write ``model`` (eval mode, single output) to ``path`` with dynamic batch and spatial axes; returns the
    seconds it took. The TorchScript exporter takes about a second for these convolutional networks where the
    dynamo exporter took 10-15 s each on 2 CPU cores; the export's parity check guards the result either way, and
    the dynamo exporter is the fallback when the TorchScript one is unavailable or fails."""
    import warnings

    t0 = time.perf_counter()
    model = model.eval()
    example = torch.zeros((2, in_channels, *patch), dtype=torch.float32)
    names = "zyx"[-len(patch) :]
    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                dynamo=False,
                input_names=["image"],
                output_names=["logits"],
                dynamic_axes={"image": {0: "batch", **{i + 2: n for i, n in enumerate(names)}}},
                opset_version=OPSET,
            )
        except Exception:  # a torch without the TorchScript exporter, or a model it cannot trace
            _export_dynamo(model, example, divisor, names, tmp)
    tmp.replace(path)
    return time.perf_counter() - t0


def _export_dynamo(
    model: torch.nn.Module, example: torch.Tensor, divisor: list[int], names: str, tmp: Path
) -> None:
    from torch.export import Dim

    axes: dict[int, Any] = {0: Dim("batch", min=1, max=256)}
    for i, (d, n) in enumerate(zip(divisor, names, strict=True)):
        base = Dim(f"{n}_{d}", min=1, max=4096 // d)
        axes[i + 2] = d * base if d > 1 else base
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        input_names=["image"],
        output_names=["logits"],
        dynamic_shapes={"x": axes},
        opset_version=OPSET,
        verbose=False,
    )
    assert program is not None
    program.save(str(tmp))


def export_openvino(onnx_path: Path, xml_path: Path) -> float:
    openvino_off()
    import openvino as ov

    t0 = time.perf_counter()
    model = ov.convert_model(str(onnx_path))
    ov.save_model(model, str(xml_path), compress_to_fp16=False)
    return time.perf_counter() - t0


class RuntimeModule(torch.nn.Module):
    """A network running in another runtime, callable like the torch module it replaces (CPU, float32)."""

    def run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.run(np.ascontiguousarray(x.detach().float().cpu().numpy()))
        return torch.from_numpy(np.asarray(out, dtype=np.float32))


class OnnxModule(RuntimeModule):
    def __init__(self, path: Path, threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.session.run(None, {"image": x})[0]
        return out


class OpenVinoModule(RuntimeModule):
    def __init__(self, path: Path, precision: str = "f32", threads: int | None = None) -> None:
        super().__init__()
        openvino_off()
        import openvino as ov

        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)

    def run(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.compiled(x)[0]
        return out


RUNTIMES.add("onnx", OnnxModule)
RUNTIMES.add("openvino", OpenVinoModule)
