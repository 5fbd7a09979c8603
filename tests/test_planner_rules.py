"""Planner rules on synthetic datasets: thick-axis spacing, in-plane-first topology, 3d_lowres, contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from automed import api
from automed.plan.planner import make_plan
from automed.plan.preset import load_preset
from automed.testing.contracts import check_planner_contract, contract_fingerprints
from automed.testing.fingerprints import synthetic_fingerprint
from automed.testing.synthetic import make_dataset


def test_anisotropic_thick_axis_and_in_plane_first(tmp_path: Path) -> None:
    # 0.8 x 0.8 mm in-plane, 3.0-4.0 mm slices (median 3.5): spacing ratio 4.4 > 3 and 18 slices vs 128 in-plane
    ds = make_dataset(
        tmp_path / "aniso",
        n_cases=5,
        shape=(18, 128, 128),
        spacing=(3.5, 0.8, 0.8),
        spacings=[(3.0, 0.8, 0.8), (3.25, 0.8, 0.8), (3.5, 0.8, 0.8), (3.75, 0.8, 0.8), (4.0, 0.8, 0.8)],
        shape_jitter=0,
    )
    wd = tmp_path / "W"
    res = api.plan_dataset(ds, wd, workers=1, show_progress=False, configurations=["3d_fullres"])
    plan = res.plan
    full = plan.configurations["3d_fullres"]
    # thick axis (z, array axis 0) gets its 10th-percentile spacing (3.1), not the median 3.5
    assert full.spacing[0] == pytest.approx(np.percentile([3.0, 3.25, 3.5, 3.75, 4.0], 10))
    assert full.spacing[1:] == [0.8, 0.8]
    assert "thick axis 0" in plan.reasons["target_spacing"]
    assert plan.transpose_forward == [0, 1, 2]
    # in-plane first: kernel 1 and no pooling along z in the first stages
    net = full.network
    assert net.kernel_sizes[0] == [1, 3, 3]
    assert net.strides[1] == [1, 2, 2]
    assert any(s[0] == 2 for s in net.strides[2:]), "z is pooled once in-plane resolution caught up"
    assert "in-plane first" in full.reasons["topology"]
    # resampling treats the thick axis separately in the cache (ratio 4/0.8 > 3)
    props = json.loads((wd / "preprocessed" / "3d_fullres" / "case_004.json").read_text())
    assert props["separate_axis"] == 0
    assert props["shape_after_resampling"][0] == round(props["shape_after_crop"][0] * 4.0 / full.spacing[0])
    with np.load(wd / "preprocessed" / "3d_fullres" / "case_004.npz") as z:
        assert z["data"].shape[1:] == z["seg"].shape
        assert set(np.unique(z["seg"]).tolist()) == {0, 1, 2}


def test_transpose_moves_thick_axis_first(tmp_path: Path) -> None:
    # thick axis stored last in the array (x): it must be moved first
    fp = synthetic_fingerprint((0.8, 0.8, 3.5), (256, 256, 40), spacing_jitter=0.0)
    plan = make_plan(fp, load_preset("default"))
    assert plan.transpose_forward == [2, 0, 1]
    assert plan.transpose_backward == [1, 2, 0]
    assert plan.configurations["3d_fullres"].spacing[0] == pytest.approx(3.5)


def test_large_image_triggers_lowres(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "big", n_cases=2, shape=(160, 160, 160), shape_jitter=0)
    wd = tmp_path / "W"
    res = api.plan_dataset(ds, wd, memory_gb=1.0, run_preprocess=False, workers=1, show_progress=False)
    cfgs = res.plan.configurations
    assert set(cfgs) == {"2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres"}
    full, low = cfgs["3d_fullres"], cfgs["3d_lowres"]
    assert np.prod(full.patch_size) / np.prod(full.median_shape) < 0.25
    assert np.prod(low.patch_size) / np.prod(low.median_shape) >= 0.25
    assert all(lo > fu for lo, fu in zip(low.spacing, full.spacing, strict=True))
    assert low.next_stage == "3d_cascade_fullres" and cfgs["3d_cascade_fullres"].previous_stage == "3d_lowres"
    assert cfgs["3d_cascade_fullres"].network.in_channels == 1 + 3
    assert full.batch_dice and not low.batch_dice
    assert "coarsened" in res.plan.reasons["3d_lowres"]
    assert not (wd / "preprocessed").exists()


def test_large_fingerprint_triggers_lowres_at_default_memory() -> None:
    plan = make_plan(synthetic_fingerprint((1.0, 1.0, 1.0), (512, 512, 512)), load_preset("default"))
    assert "3d_lowres" in plan.configurations


@pytest.mark.parametrize("preset", ["default", "cpu"])
def test_planner_contract(preset: str) -> None:
    check_planner_contract(make_plan, load_preset(preset))


def test_contract_catches_a_bad_planner() -> None:
    def oversized(fp, preset):  # type: ignore[no-untyped-def]
        p = make_plan(fp, preset)
        cfg = p.configurations["3d_fullres"]
        big = cfg.model_copy(update={"patch_size": [s * 2 for s in cfg.median_shape]})
        return p.model_copy(update={"configurations": {**p.configurations, "3d_fullres": big}}).with_hash()

    with pytest.raises(AssertionError, match="exceeds median shape"):
        check_planner_contract(oversized, load_preset("default"), contract_fingerprints()[:1])


def test_plan_memory_target_and_device() -> None:
    fp = synthetic_fingerprint((1.0, 0.8, 0.8), (300, 512, 512), modality="CT")
    pre = load_preset("default")
    small = make_plan(fp, pre, device="cuda", memory_gb=4)
    big = make_plan(fp, pre, device="cuda", memory_gb=24)
    cpu = make_plan(fp, pre, device="cpu", memory_gb=8)
    gpu = make_plan(fp, pre, device="cuda", memory_gb=8)
    vol = [np.prod(p.configurations["3d_fullres"].patch_size) for p in (small, big)]
    assert vol[0] < vol[1]
    assert (
        cpu.configurations["3d_fullres"].memory.bytes_per_element
        > gpu.configurations["3d_fullres"].memory.bytes_per_element
    )
    assert np.prod(cpu.configurations["3d_fullres"].patch_size) <= np.prod(
        gpu.configurations["3d_fullres"].patch_size
    )
    for p in (small, big, cpu, gpu):
        for c in p.configurations.values():
            assert c.memory.estimate_gb <= c.memory.target_gb


def test_masked_zscore_when_cropping_removes_a_lot() -> None:
    pre = load_preset("default")
    cropped = make_plan(synthetic_fingerprint((1, 1, 1), (100, 100, 100), relative_size=0.5), pre)
    full = make_plan(synthetic_fingerprint((1, 1, 1), (100, 100, 100), relative_size=0.95), pre)
    assert cropped.configurations["3d_fullres"].normalization[0].use_nonzero_mask
    assert not full.configurations["3d_fullres"].normalization[0].use_nonzero_mask


def test_kernel_rule_is_strict_at_twice_the_finest_spacing() -> None:
    from automed.plan.topology import derive_topology

    topo = derive_topology([2.0, 1.0, 1.0], [32, 64, 64], min_edge=4, max_stages=10)
    assert topo.kernel_sizes[0] == [1, 3, 3] and topo.strides[1] == [1, 2, 2]
    odd = derive_topology([1.0, 1.0, 1.0], [15, 15, 15], min_edge=4, max_stages=10)
    assert odd.pools_per_axis == [2, 2, 2]  # 15 -> 8 -> 4 (sizes round up, as nnU-Net)


def test_patch_rounding_inside_or_past_the_median_image() -> None:
    # the hippocampus geometry: a 36 x 50 x 36 median image at 1 mm; nnU-Net plans 40 x 56 x 40 (one window per case)
    fp = synthetic_fingerprint((1.0, 1.0, 1.0), (36, 50, 36), n_cases=60)
    preset = load_preset("default")
    inside = make_plan(fp, preset).configurations["3d_fullres"]
    assert inside.median_shape == [36, 50, 36]
    assert inside.patch_size == [32, 48, 32] and "round_up_past_median: false" in inside.reasons["patch_size"]
    up = preset.model_copy(update={"patch": preset.patch.model_copy(update={"round_up_past_median": True})})
    past = make_plan(fp, up).configurations["3d_fullres"]
    assert past.patch_size == [40, 56, 40] and "one window covers a median case" in past.reasons["patch_size"]
    assert past.network.n_stages == inside.network.n_stages == 4


def test_the_data_dimension_is_the_datas_not_the_planned_networks() -> None:
    """A 2d-only preset on volumes plans a 2D network, but the model takes volumes: its registry contract says 3D,
    as a 3d_fullres model of the same data does (they are versions of one registered model), and a plan written
    before the field existed (None) keeps its old reading and its hash."""
    from automed.select.register import contract

    volumes, pictures = contract_fingerprints()[0], contract_fingerprints()[3]
    preset = load_preset("default")
    only_2d = preset.model_copy(update={"configurations": ["2d"]})
    full, flat = make_plan(volumes, preset), make_plan(volumes, only_2d)
    assert list(flat.configurations) == ["2d"] and flat.image_dimension == 3 == full.image_dimension
    assert contract(flat) == contract(full) and contract(flat)["images"] == "3D"
    assert make_plan(pictures, preset).image_dimension == 2
    old = flat.model_copy(update={"data_dimension": None})
    assert old.compute_hash() == flat.hash and old.image_dimension == 2  # the earlier reading


def test_a_wider_training_config_keeps_the_presets_feature_cap() -> None:
    """The cap on features per stage is the preset's (recorded in the plan), not a constant of the variant code:
    base_features 64 on a preset capped at 128 stops at 128; the recorded cap leaves the plan's hash alone."""
    from automed.plan.variants import effective_plan
    from automed.train.config import TrainConfig

    preset = load_preset("default")
    capped = preset.model_copy(update={"network": preset.network.model_copy(update={"max_features_3d": 128})})
    plan = make_plan(contract_fingerprints()[4], capped)
    net = plan.configurations["3d_fullres"].network
    assert net.max_features == 128 and max(net.features_per_stage) == 128
    wide = effective_plan(plan, TrainConfig(base_features=64)).configurations["3d_fullres"].network
    assert wide.features_per_stage[0] == 64 and max(wide.features_per_stage) == 128
    legacy = plan.model_copy(
        update={
            "configurations": {
                k: c.model_copy(update={"network": c.network.model_copy(update={"max_features": None})})
                for k, c in plan.configurations.items()
            }
        }
    )
    assert legacy.compute_hash() == plan.hash


def test_a_patch_rounded_down_takes_all_its_own_divisor_allows() -> None:
    """A patch rounded down to fit the median was rounded with the divisor of the larger patch asked for, and kept
    there: a median [15, 61, 52] got [12, 48, 48] where [14, 56, 48] has a topology of its own (65 of 200 random
    datasets were planned up to 1.6x too small)."""
    import math

    import numpy as np

    from automed.plan.topology import derive_topology

    rng = np.random.default_rng(1)
    preset = load_preset("default")
    checked = 0
    for _ in range(60):
        spacing = (float(rng.choice([1.0, 1.5, 3.0, 5.0])), 0.8, 0.8)
        shape = (int(rng.integers(20, 80)), int(rng.integers(40, 140)), int(rng.integers(40, 140)))
        plan = make_plan(synthetic_fingerprint(spacing, shape, n_cases=6), preset)
        for name, c in plan.configurations.items():
            if "shrunk" in c.reasons["patch_size"] or name == "3d_cascade_fullres":
                continue
            div = c.network.divisor
            larger = [max(p, (m // d) * d) for p, m, d in zip(c.patch_size, c.median_shape, div, strict=True)]
            topo = derive_topology(c.spacing, larger, min_edge=preset.network.min_bottleneck_edge,
                                   max_stages=preset.network.max_stages)  # fmt: skip
            assert topo.patch_size != larger or math.prod(larger) == math.prod(c.patch_size), (name, shape, c)
            checked += 1
    assert checked >= 60
