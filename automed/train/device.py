"""Device choice and mixed precision: fp16 autocast (with a grad scaler) on CUDA, bf16 on CPUs with native bf16."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import torch


def pick_device(requested: str | None) -> torch.device:
    if requested in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        from automed.errors import ConfigError

        raise ConfigError.single("--device", "a device is cpu, cuda, cuda:N or auto", requested,
                                 "write e.g. --device cuda or --device cpu")  # fmt: skip
    return device


def usable_device(requested: str | None) -> torch.device:
    """:func:`pick_device`, and one this machine has: CUDA asked where torch sees no such device is refused with
    the fix (torch says "Torch not compiled with CUDA enabled" once the network moves). Planning may name a device
    the machine lacks (a CUDA plan made on a CPU node): it calls :func:`pick_device`."""
    device = pick_device(requested)
    count = torch.cuda.device_count() if device.type == "cuda" and torch.cuda.is_available() else 0
    if device.type == "cuda" and (device.index or 0) >= count:
        from automed.errors import ConfigError

        found = f"{count} CUDA device(s) visible to torch {torch.__version__}"
        if torch.version.cuda is None:
            found += " (a build without CUDA)"
        raise ConfigError.single(
            "--device", f"--device {requested} needs a CUDA device torch can use here", found,
            "pass --device cpu (or auto: CUDA where there is one), or run on a machine with that GPU",
        )  # fmt: skip
    return device


@cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU has AVX512-BF16 or AMX-BF16 (bf16 matmuls then run about 2x faster than fp32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The autocast dtype for ``device``, or ``None`` for full fp32."""
    if not amp:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


@contextlib.contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """With ``enabled`` (``deterministic: true`` in the training config): torch's deterministic algorithms (an op
    without one is an error naming it), cuDNN without autotuning and cuBLAS with a fixed workspace, so a CUDA fold is
    as repeatable as a CPU one (slower). CPU training is deterministic either way. The earlier settings come back
    afterwards."""
    if not enabled:
        yield
        return
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[1], before[2]
