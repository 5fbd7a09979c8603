"""The device a plan is made for: ``cuda`` or ``cpu``, its memory target and the bytes one activation costs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from automed.errors import PlanError
from automed.plan.preset import Preset
from automed.registry import check_choice

CONFIGURATION_NAMES = ("2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres")  # every name a planner gives


@dataclass(frozen=True)
class Target:
    """The device a plan is made for."""

    device: Literal["cuda", "cpu"]
    memory_gb: float
    bytes_per_element: float


def resolve_target(
    preset: Preset, device: str | None, memory_gb: float | None, factor: float = 1.0
) -> Target:
    """The target for ``device``/``memory_gb`` (the preset's when ``None``); ``factor`` scales bytes per element
    (a calibration)."""
    dev = device or preset.memory.device
    if dev not in ("cuda", "cpu"):
        raise PlanError.single(
            "--device", "the device must be 'cuda' or 'cpu'", repr(dev), "pass --device cuda|cpu"
        )
    mem = memory_gb if memory_gb is not None else preset.memory.target_gb
    if not 0 < mem < math.inf:  # NaN too: it had crashed planning ("cannot convert float NaN to integer")
        raise PlanError.single(
            "--memory-gb",
            "the memory target must be a positive finite number",
            mem,
            "pass e.g. --memory-gb 8",
        )
    if dev == "cuda":
        return Target("cuda", float(mem), preset.memory.bytes_per_element_cuda * factor)
    return Target("cpu", float(mem), preset.memory.bytes_per_element_cpu * factor)


def check_plan_options(
    preset: Preset,
    device: str | None,
    memory_gb: float | None,
    configurations: list[str] | None,
    calibrate: bool,
) -> None:
    """``automed plan``'s options, refused before the dataset is read (they were after verify and fingerprinting
    had read every image; ``--calibrate`` for CUDA on a machine without it crashed)."""
    resolve_target(preset, device, memory_gb)
    for name in configurations or []:
        check_choice(name, CONFIGURATION_NAMES, what="the configuration", where="--configurations")
    if calibrate:
        from automed.plan.calibrate import check_device

        check_device(device or preset.memory.device)
