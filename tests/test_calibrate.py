"""--calibrate on the CPU: a real forward/backward pass corrects the memory model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from automed import api
from automed.plan.schema import NetworkPlan
from automed.testing.synthetic import make_dataset
from automed.train.networks import build_network


def test_network_matches_plan_topology(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", n_cases=3, shape=(16, 40, 40), spacing=(3.0, 1.0, 1.0))
    api.plan_dataset(root, tmp_path / "W", workers=1, show_progress=False, run_preprocess=False)
    plan = api.plan(tmp_path / "W")
    cfg = plan.configurations["3d_fullres"]
    net = build_network(cfg.network)
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == cfg.memory.parameters  # the planner's parameter count is exact
    x = torch.zeros(
        1, cfg.network.in_channels, *cfg.patch_size
    )  # the shapes checked need no batch or gradient
    net.train()
    with torch.no_grad():
        outs = net(x)
        assert isinstance(outs, list) and outs[0].shape == (1, cfg.network.n_classes, *cfg.patch_size)
        net.eval()
        assert net(x).shape == (1, cfg.network.n_classes, *cfg.patch_size)


def test_unknown_architecture_did_you_mean() -> None:
    from automed.errors import ConfigError

    net = NetworkPlan(
        architecture="unett",
        dimension=3,
        in_channels=1,
        n_classes=2,
        n_stages=2,
        features_per_stage=[4, 8],
        kernel_sizes=[[3, 3, 3]] * 2,
        strides=[[1, 1, 1], [2, 2, 2]],
        convs_per_stage=1,
        convs_per_stage_decoder=1,
    )
    with pytest.raises(ConfigError, match="Did you mean 'unet'"):
        build_network(net)


def test_calibrate_on_cpu(tmp_path: Path) -> None:
    # a patch of 12 x 16 x 12 (two stages): memory still grows clearly from batch 1 to 2 (0.0044 -> 0.0078 GB,
    # factor 0.60 as with 24 x 32 x 32 images), and the measured steps cost a quarter of theirs
    root = make_dataset(tmp_path / "d", n_cases=3, shape=(16, 20, 20))
    api.plan_dataset(root, tmp_path / "W", workers=1, show_progress=False, run_preprocess=False)
    plan = api.plan(tmp_path / "W", device="cpu", memory_gb=2, calibrate=True)
    cal = plan.calibration
    assert cal is not None and cal.device == "cpu"
    assert cal.measured_gb["2"] > cal.measured_gb["1"] > 0
    assert 0.05 < cal.factor < 20
    cfg = plan.configurations["3d_fullres"]
    assert cfg.memory.calibrated
    assert cfg.memory.bytes_per_element == pytest.approx(14.3 * cal.factor, rel=1e-3)
    # re-running reuses the stored calibration (same fingerprint, preset and device)
    again = api.plan(tmp_path / "W", device="cpu", memory_gb=2, calibrate=True)
    assert again.calibration == cal and again.hash == plan.hash
