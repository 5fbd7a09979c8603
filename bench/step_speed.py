"""Training-step speed options (issue 14 item 6) on the hippocampus plan's 3d_fullres network, this machine.

Times forward + backward + optimizer step of the planned network at the planned patch and batch (random input,
the real loss) for: automed's default (autocast bf16 where the CPU has it natively, else float32), channels-last
3D memory format, and ``torch.compile``. Each variant: warm-up steps, then the median of timed steps. An option is
kept only with a measured gain; the table goes to bench/RESULTS.md.

    .venv/bin/python bench/step_speed.py [--steps 20]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from automed import api
from automed.train.config import TrainConfig
from automed.train.device import autocast_dtype
from automed.train.losses import build_loss
from automed.train.networks import segmentation_network

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "msd_hippocampus_dev"


def _variant(name: str, model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.nn.Module, torch.Tensor]:
    if name == "channels_last_3d":
        return model.to(memory_format=torch.channels_last_3d), x.to(memory_format=torch.channels_last_3d)
    if name == "torch_compile":
        return torch.compile(model), x  # type: ignore[return-value]
    return model, x


def time_steps(step: Callable[[], None], warmup: int, steps: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    work = ROOT / "bench" / "work" / "step_speed"
    plan = api.plan_dataset(DATA, work, preset="cpu", run_preprocess=False, show_progress=False).plan
    cfg = plan.configurations["3d_fullres"]
    config = TrainConfig()
    dev = torch.device("cpu")
    amp = autocast_dtype(dev, True)
    print(
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(f"patch {cfg.patch_size}, batch {cfg.batch_size}, autocast {amp}")
    results = {}
    for name in ("default", "channels_last_3d", "torch_compile"):
        torch.manual_seed(0)
        model = segmentation_network(cfg, config).to(dev).train()
        loss_fn = build_loss(config.loss, cfg.batch_dice, cfg.network.strides)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        x = torch.randn(cfg.batch_size, plan.n_channels, *cfg.patch_size)
        y = torch.randint(0, cfg.network.n_classes, (cfg.batch_size, 1, *cfg.patch_size))
        model, x = _variant(name, model, x)

        def step(
            model: torch.nn.Module = model,
            x: torch.Tensor = x,
            y: torch.Tensor = y,
            opt: torch.optim.Optimizer = opt,
            loss_fn: torch.nn.Module = loss_fn,
        ) -> None:
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
                out = model(x)
            loss = loss_fn(out, y)
            loss.backward()
            opt.step()

        try:
            results[name] = time_steps(step, args.warmup, args.steps)
        except Exception as exc:  # a variant this torch/CPU cannot run is reported, not fatal
            print(f"{name}: failed ({type(exc).__name__}: {str(exc)[:200]})")
            continue
        print(f"{name}: {results[name]:.3f} s/step ({results['default'] / results[name]:.2f}x default)")


if __name__ == "__main__":
    main()
