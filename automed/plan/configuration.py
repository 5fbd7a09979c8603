"""One configuration (2d, 3d_fullres, 3d_lowres): patch size, network topology, memory estimate and batch size.

The patch starts as a fixed-volume box shaped by 1/spacing, is clipped to the median image and rounded to its
pooling divisor, then shrunk until the minimum batch fits the memory target; the batch is the largest that fits,
capped by dataset coverage and the preset. Each choice records its reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from automed.errors import PlanError
from automed.fingerprint.schema import Fingerprint
from automed.plan.preset import Preset
from automed.plan.schema import (
    ChannelNormalization,
    ClassLocations,
    ConfigurationPlan,
    MemoryEstimate,
    NetworkPlan,
    ResamplingPlan,
)
from automed.plan.target import Target
from automed.plan.topology import (
    Topology,
    derive_topology,
    feature_map_elements,
    features_per_stage,
    parameter_count,
)

GB = 1024**3


@dataclass(frozen=True)
class PlanContext:
    """What every configuration of one plan shares."""

    fp: Fingerprint
    preset: Preset
    target: Target
    in_channels: int
    n_classes: int
    normalization: list[ChannelNormalization]
    dataset_voxels: float


def _fit_patch(spacing: list[float], patch: list[int], median: list[int], preset: Preset) -> Topology:
    """Topology for ``patch`` clipped to ``median`` and rounded up to its pooling divisor (down where that would
    exceed ``median``, unless the preset's ``patch.round_up_past_median``)."""
    rules = preset.network
    past = preset.patch.round_up_past_median
    wanted = cur = [max(1, min(p, m)) for p, m in zip(patch, median, strict=True)]
    topo = derive_topology(spacing, cur, min_edge=rules.min_bottleneck_edge, max_stages=rules.max_stages)
    for _ in range(8):
        div = topo.divisor
        new = []
        for c, d, m in zip(cur, div, median, strict=True):
            up = int(math.ceil(c / d) * d)
            new.append(up if up <= m or past else max(d, int(c // d) * d))
        nxt = derive_topology(spacing, new, min_edge=rules.min_bottleneck_edge, max_stages=rules.max_stages)
        if nxt.patch_size == new:
            return _grown(spacing, nxt, wanted, preset)
        cur, topo = new, nxt
    return topo


def _grown(spacing: list[float], topo: Topology, wanted: list[int], preset: Preset) -> Topology:
    """``topo`` grown back towards ``wanted`` along axes rounded down: they were rounded with the divisor of the
    larger patch asked for, and the smaller patch's own divisor may take more (a median [15, 61, 52] was given
    [12, 48, 48] by the divisor [4, 16, 8], where [14, 56, 48] has a topology of its own, divisor [2, 8, 8])."""
    rules = preset.network
    for _ in range(8):
        more = [max(p, (w // d) * d) for p, w, d in zip(topo.patch_size, wanted, topo.divisor, strict=True)]
        if more == topo.patch_size:
            return topo
        nxt = derive_topology(spacing, more, min_edge=rules.min_bottleneck_edge, max_stages=rules.max_stages)
        if nxt.patch_size != more:
            return topo
        topo = nxt
    return topo


def _memory(
    topo: Topology, dim: int, in_ch: int, n_classes: int, preset: Preset, target: Target
) -> tuple[int, int, list[int], float, float]:
    r = preset.network
    maxf = r.max_features_3d if dim == 3 else r.max_features_2d
    feats = features_per_stage(topo.n_stages, r.base_features, maxf)
    elems = feature_map_elements(topo, feats, in_ch, n_classes, r.convs_per_stage, r.convs_per_stage_decoder)
    params = parameter_count(topo, feats, in_ch, n_classes, r.convs_per_stage, r.convs_per_stage_decoder)
    per_sample = elems * target.bytes_per_element / GB
    fixed = params * preset.memory.bytes_per_parameter / GB + preset.memory.fixed_overhead_gb
    return elems, params, feats, per_sample, fixed


def plan_configuration(
    name: str,
    spacing: list[float],
    median: list[int],
    ctx: PlanContext,
    *,
    resampling: ResamplingPlan,
    batch_dice: bool,
    data_identifier: str,
) -> ConfigurationPlan:
    preset, target = ctx.preset, ctx.target
    in_channels, n_classes, normalization = ctx.in_channels, ctx.n_classes, ctx.normalization
    dim = len(spacing)
    edge = preset.patch.initial_edge_3d if dim == 3 else preset.patch.initial_edge_2d
    inv = 1.0 / np.array(spacing)
    initial = np.round(inv * (edge**dim / np.prod(inv)) ** (1.0 / dim)).astype(int).tolist()
    topo = _fit_patch(spacing, initial, median, preset)
    min_bs = preset.batch.min_batch_size
    elems, params, feats, per_sample, fixed = _memory(topo, dim, in_channels, n_classes, preset, target)
    shrunk = 0
    while fixed + min_bs * per_sample > target.memory_gb:
        ratio = [p / m for p, m in zip(topo.patch_size, median, strict=True)]
        order = list(np.argsort(ratio)[::-1])
        for ax in order:
            if (
                topo.patch_size[ax] > topo.divisor[ax]
                and topo.patch_size[ax] > 2 * preset.network.min_bottleneck_edge
            ):
                new = list(topo.patch_size)
                new[ax] -= topo.divisor[ax]
                topo = _fit_patch(spacing, new, median, preset)
                shrunk += 1
                break
        else:
            raise PlanError.single(
                f"configuration {name}",
                f"batch {min_bs} of the smallest patch must fit in {target.memory_gb:g} GB",
                f"{fixed + min_bs * per_sample:.2f} GB for patch {topo.patch_size}",
                "raise --memory-gb, lower network.base_features in the preset, or plan for another device",
            )
        elems, params, feats, per_sample, fixed = _memory(topo, dim, in_channels, n_classes, preset, target)
    patch = topo.patch_size
    bs_mem = int((target.memory_gb - fixed) // per_sample)
    bs_data = round(preset.batch.max_dataset_fraction * ctx.dataset_voxels / math.prod(patch))
    bs = max(min_bs, min(bs_mem, bs_data, preset.batch.max_batch_size))
    bound = min((bs_mem, "memory"), (bs_data, "dataset"), (preset.batch.max_batch_size, "cap"))[1]
    batch_reason = {
        "memory": f"largest batch whose estimate fits {target.memory_gb:g} GB on {target.device}",
        "dataset": (
            f"one batch may cover at most {preset.batch.max_dataset_fraction:g} of the dataset's voxels "
            f"(nnU-Net rule; memory would allow {bs_mem})"
        ),
        "cap": f"preset cap batch.max_batch_size={preset.batch.max_batch_size}",
    }[bound]
    if bs == min_bs and min(bs_mem, bs_data) < min_bs:
        batch_reason += f"; raised to the minimum {min_bs}"
    estimate = fixed + bs * per_sample
    rounding = (
        "up, past the median image where needed, so one window covers a median case (nnU-Net's rule; training "
        "pads; preset patch.round_up_past_median)"
        if preset.patch.round_up_past_median
        else "down where rounding up would exceed the median image (preset patch.round_up_past_median: false)"
    )
    patch_reason = (
        f"started from {initial} (a {edge}^{dim} volume shaped by 1/spacing), clipped to the median shape "
        f"{median} and rounded to multiples of {topo.divisor}: {rounding}"
    )
    if shrunk:
        patch_reason += f"; shrunk {shrunk} step(s) along the axes most oversized vs the median to fit memory"
    thick = [a for a, k in enumerate(topo.kernel_sizes[0]) if k == 1]
    topo_reason = (
        f"{topo.n_stages} stages; pools per axis {topo.pools_per_axis} stop at edge "
        f"{preset.network.min_bottleneck_edge}"
    )
    if thick:
        topo_reason += (
            f"; axis {thick} is coarse, so early stages use kernel 1 and no pooling on it until the "
            "in-plane resolution catches up (in-plane first)"
        )
    network = NetworkPlan(
        architecture=preset.network.architecture,
        dimension=3 if dim == 3 else 2,
        in_channels=in_channels,
        n_classes=n_classes,
        n_stages=topo.n_stages,
        features_per_stage=feats,
        kernel_sizes=topo.kernel_sizes,
        strides=topo.strides,
        convs_per_stage=preset.network.convs_per_stage,
        convs_per_stage_decoder=preset.network.convs_per_stage_decoder,
        max_features=preset.network.max_features_3d if dim == 3 else preset.network.max_features_2d,
    )
    memory = MemoryEstimate(
        device=target.device,
        target_gb=target.memory_gb,
        estimate_gb=round(estimate, 4),
        per_sample_gb=round(per_sample, 6),
        fixed_gb=round(fixed, 6),
        feature_map_elements=elems,
        parameters=params,
        bytes_per_element=round(target.bytes_per_element, 4),
        calibrated=target.bytes_per_element
        not in (preset.memory.bytes_per_element_cuda, preset.memory.bytes_per_element_cpu),
    )
    return ConfigurationPlan(
        name=name,
        data_identifier=data_identifier,
        spacing=[round(s, 6) for s in spacing],
        median_shape=median,
        patch_size=patch,
        batch_size=int(bs),
        batch_dice=batch_dice,
        network=network,
        normalization=normalization,
        resampling=resampling,
        foreground_oversample=preset.sampling.foreground_oversample,
        class_locations=ClassLocations(
            max_per_class=preset.sampling.class_locations_max,
            min_fraction=preset.sampling.class_locations_min_fraction,
            seed=preset.sampling.seed,
        ),
        memory=memory,
        reasons={
            "patch_size": patch_reason,
            "batch_size": batch_reason,
            "topology": topo_reason,
            "memory": (
                f"estimate {estimate:.3g} GB = {fixed:.3g} GB weights/optimizer + {bs} x {per_sample:.3g} GB "
                f"activations ({elems:.3g} feature-map elements x {target.bytes_per_element:.3g} B); model "
                "scaled to nnU-Net's 3D reference (560e6 elements at batch 2 = 8 GB with AMP), "
                "which also matches its 2D one (85e6 at batch 12) within 10 %"
            ),
            "foreground_oversample": (
                f"at least {preset.sampling.foreground_oversample:.0%} of each batch is centred "
                "on a foreground voxel"
            ),
        },
    )
