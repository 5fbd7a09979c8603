"""``--calibrate``: measure one forward/backward pass of the planned network and correct the memory model.

On CUDA the peak comes from ``torch.cuda.max_memory_allocated`` under autocast (as training uses AMP); on CPU from
the allocation timeline of PyTorch's profiler (each op's own allocations and frees, in order) plus the weights,
because resident memory on CPU mostly shows the allocator's caching. Two batch sizes give per-sample and fixed
memory; the ratio of measured to estimated per-sample memory rescales the model.
"""

from __future__ import annotations

from typing import Any

from automed.errors import PlanError
from automed.plan.schema import Calibration, ConfigurationPlan

GB = 1024**3


def _measure(net_json: dict[str, Any], patch: list[int], batch: int, device: str) -> float:
    import torch

    from automed.plan.schema import NetworkPlan
    from automed.train.networks import build_network

    torch.manual_seed(0)
    net = NetworkPlan.model_validate(net_json)
    model = build_network(net).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.99, nesterov=True)
    x = torch.randn(batch, net.in_channels, *patch, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.autocast("cuda", dtype=torch.float16):
            outs = model(x)
            loss = sum(o.float().mean() for o in outs) if isinstance(outs, list) else outs.float().mean()
        loss.backward()
        opt.step()
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - base) / GB
    del x
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True
    ) as prof:
        x = torch.randn(batch, net.in_channels, *patch)
        outs = model(x)
        loss = sum(o.mean() for o in outs) if isinstance(outs, list) else outs.mean()
        loss.backward()
        opt.step()
    # allocation timeline: each op's own allocations (+) and frees (-), in start order; the peak is the step's
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    current = peak = 0
    for e in events:
        current += e.self_cpu_memory_usage
        peak = max(peak, current)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return float(peak + weights) / GB


def measure(cfg: ConfigurationPlan, device: str, batches: tuple[int, int] = (1, 2)) -> dict[int, float]:
    """Peak training-step memory (GB) of ``cfg``'s network and patch at each batch size."""
    net_json = cfg.network.model_dump(mode="json")
    return {b: _measure(net_json, cfg.patch_size, b, device) for b in batches}


def check_device(device: str) -> None:
    """``--calibrate`` measures on the device the plan is for: CUDA asked for on a machine without it is refused
    before any work (it crashed after verify and fingerprinting: "Torch not compiled with CUDA enabled")."""
    if device != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        raise PlanError.single(
            "--calibrate", "calibration measures on the device the plan is for", "--device cuda (the preset's "
            "device unless --device is given) on a machine without a CUDA device",
            "calibrate on the machine that trains, or plan for this one with --device cpu",
        )  # fmt: skip


def calibrate(cfg: ConfigurationPlan, device: str) -> Calibration:
    """Measure ``cfg`` on ``device`` and return the correction of the per-sample memory estimate."""
    m = measure(cfg, device)
    per_sample = m[2] - m[1]
    if per_sample <= 0:
        raise PlanError.single(
            f"configuration {cfg.name}",
            "calibration must see memory grow from batch 1 to batch 2",
            f"{m[1]:.4f} GB then {m[2]:.4f} GB",
            "the network is too small to measure; plan without --calibrate",
        )
    fixed = max(m[1] - per_sample, 0.0)
    factor = per_sample / max(cfg.memory.per_sample_gb, 1e-9)
    return Calibration(
        device=device,
        patch_size=cfg.patch_size,
        measured_gb={str(k): round(v, 4) for k, v in m.items()},
        estimated_per_sample_gb=cfg.memory.per_sample_gb,
        measured_per_sample_gb=round(per_sample, 4),
        measured_fixed_gb=round(fixed, 4),
        factor=round(factor, 4),
        note=(
            f"measured on {device} with the {cfg.name} network and patch {cfg.patch_size}; the planner re-ran "
            f"with bytes per element x {factor:.3g}"
        ),
    )
