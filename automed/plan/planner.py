"""The default planner: fingerprint + preset -> :class:`Plan`.

Lifecycle: :func:`make_plan` is a pure function of its arguments (no I/O, no clock, no randomness), so the same
fingerprint, preset and device give the same ``plan.json``, byte for byte. Every decision records a one-line reason.
nnU-Net v2's rules are the default where they are sound; each deviation says so in its reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from automed._version import __version__
from automed.artifacts import content_hash
from automed.errors import PlanError
from automed.fingerprint.schema import Fingerprint
from automed.plan.preset import Preset
from automed.plan.schema import (
    ChannelNormalization,
    ClassLocations,
    ConfigurationPlan,
    MemoryEstimate,
    NetworkPlan,
    Plan,
    ResamplingPlan,
)
from automed.plan.topology import (
    Topology,
    derive_topology,
    feature_map_elements,
    features_per_stage,
    parameter_count,
)

GB = 1024**3


@dataclass(frozen=True)
class Target:
    """The device a plan is made for."""

    device: Literal["cuda", "cpu"]
    memory_gb: float
    bytes_per_element: float


def resolve_target(
    preset: Preset, device: str | None, memory_gb: float | None, factor: float = 1.0
) -> Target:
    dev = device or preset.memory.device
    if dev not in ("cuda", "cpu"):
        raise PlanError.single(
            "--device", "the device must be 'cuda' or 'cpu'", repr(dev), "pass --device cuda|cpu"
        )
    mem = memory_gb if memory_gb is not None else preset.memory.target_gb
    if mem <= 0:
        raise PlanError.single(
            "--memory-gb", "the memory target must be positive", mem, "pass e.g. --memory-gb 8"
        )
    if dev == "cuda":
        return Target("cuda", float(mem), preset.memory.bytes_per_element_cuda * factor)
    return Target("cpu", float(mem), preset.memory.bytes_per_element_cpu * factor)


# --- spacing and shapes -------------------------------------------------------------------------------------------


def target_spacing(fp: Fingerprint, preset: Preset) -> tuple[list[float], str]:
    spacings = np.array(fp.spacings, dtype=np.float64)
    target = np.median(spacings, axis=0)
    sizes = np.median(np.array([c.shape_after_crop for c in fp.cases], dtype=np.float64), axis=0)
    if fp.dimension == 2:
        return [
            float(v) for v in target
        ], "median spacing of the cases (2D data: out-of-plane spacing unused)"
    worst = int(np.argmax(target))
    others = [a for a in range(3) if a != worst]
    thr = preset.spacing.anisotropy_threshold
    aniso_spacing = target[worst] > thr * max(target[a] for a in others)
    aniso_size = sizes[worst] * thr < min(sizes[a] for a in others)
    if aniso_spacing and aniso_size:
        pct = float(np.percentile(spacings[:, worst], preset.spacing.thick_axis_percentile))
        floor = max(target[a] for a in others)
        new = pct if pct >= floor else floor + 1e-5
        median_thick = float(target[worst])
        target[worst] = new
        return [float(v) for v in target], (
            f"median spacing, except thick axis {worst}: median spacing ratio {median_thick:.3g}/"
            f"{floor:.3g} > {thr:g} and it has under 1/{thr:g} of the voxels of the other axes, so its "
            f"{preset.spacing.thick_axis_percentile:g}th-percentile spacing {pct:.4g} is used "
            f"(kept >= the in-plane spacing) to avoid interpolating thick slices too much (nnU-Net rule)"
        )
    why = "median spacing of the cases (nnU-Net rule)"
    if aniso_spacing:
        why += f"; axis {worst} is thick but not short enough (< 1/{thr:g} of the voxels) for the percentile rule"
    return [float(v) for v in target], why


def median_shape(fp: Fingerprint, spacing: list[float]) -> list[int]:
    """Median over cases of the cropped shape resampled to ``spacing`` (original axis order)."""
    shapes = np.array([c.shape_after_crop for c in fp.cases], dtype=np.float64)
    sp = np.array(fp.spacings, dtype=np.float64)
    resampled = np.round(shapes * sp / np.array(spacing, dtype=np.float64))
    return [max(1, int(v)) for v in np.median(resampled, axis=0)]


def transpose_for(spacing: list[float]) -> tuple[list[int], list[int], str]:
    worst = int(np.argmax(spacing))
    fwd = [worst] + [a for a in range(len(spacing)) if a != worst]
    bwd = [fwd.index(a) for a in range(len(spacing))]
    if fwd == list(range(len(spacing))):
        return fwd, bwd, "the coarsest axis is already first; no transpose"
    return fwd, bwd, f"axis {worst} has the coarsest spacing and is moved first so 2D slices are in-plane"


@dataclass(frozen=True)
class _Context:
    """What every configuration of one plan shares."""

    fp: Fingerprint
    preset: Preset
    target: Target
    in_channels: int
    n_classes: int
    normalization: list[ChannelNormalization]
    dataset_voxels: float


# --- one configuration --------------------------------------------------------------------------------------------


def _fit_patch(spacing: list[float], patch: list[int], median: list[int], preset: Preset) -> Topology:
    """Topology for ``patch`` with the patch rounded to its pooling divisor without exceeding ``median``."""
    rules = preset.network
    cur = [max(1, min(p, m)) for p, m in zip(patch, median, strict=True)]
    topo = derive_topology(spacing, cur, min_edge=rules.min_bottleneck_edge, max_stages=rules.max_stages)
    for _ in range(8):
        div = topo.divisor
        new = []
        for c, d, m in zip(cur, div, median, strict=True):
            up = int(math.ceil(c / d) * d)
            new.append(up if up <= m else max(d, int(c // d) * d))
        nxt = derive_topology(spacing, new, min_edge=rules.min_bottleneck_edge, max_stages=rules.max_stages)
        if nxt.patch_size == new:
            return nxt
        cur, topo = new, nxt
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
    ctx: _Context,
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
    patch_reason = (
        f"started from {initial} (a {edge}^{dim} volume shaped by 1/spacing), clipped to the median shape "
        f"{median} and rounded to multiples of {topo.divisor} (down where rounding up would exceed the median "
        "image; nnU-Net pads past it)"
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


# --- normalization and resampling ---------------------------------------------------------------------------------


# nnU-Net's declared scheme names (channel_names values) that are not modalities
DECLARED_SCHEMES = {
    "nonorm": "none",
    "zscore": "zscore",
    "rescale_to_0_1": "rescale_0_1",
    "rgb_to_0_1": "rgb_0_1",
}


def plan_normalization(fp: Fingerprint, preset: Preset) -> list[ChannelNormalization]:
    out = []
    rel = fp.median_relative_size_after_crop
    thr = preset.normalization.mask_if_relative_size_below
    for ch in fp.channels:
        declared = DECLARED_SCHEMES.get(ch.declared.strip().lower())
        if ch.modality == "CT":
            f = ch.foreground
            out.append(
                ChannelNormalization(
                    channel=ch.index,
                    scheme="ct",
                    use_nonzero_mask=False,
                    clip_low=f.percentile_00_5,
                    clip_high=f.percentile_99_5,
                    mean=f.mean,
                    std=max(f.std, 1e-8),
                    reason=(
                        f"CT ({ch.modality_reason}): clip to the dataset's foreground p0.5/p99.5 "
                        f"[{f.percentile_00_5:.4g}, {f.percentile_99_5:.4g}] then z-score with its foreground "
                        f"mean {f.mean:.4g} and std {f.std:.4g}, so HU keep their meaning across cases"
                    ),
                )
            )
        elif declared in ("none", "rescale_0_1", "rgb_0_1"):
            what = {
                "none": "no normalization",
                "rescale_0_1": "min-max to [0, 1] per image",
                "rgb_0_1": "divide by 255",
            }[declared]
            out.append(
                ChannelNormalization(
                    channel=ch.index,
                    scheme=declared,
                    use_nonzero_mask=False,
                    reason=f"declared '{ch.declared}': {what} (nnU-Net scheme name)",
                )
            )
        else:
            mask = rel < thr
            why = f"{ch.modality_reason}: z-score per image" + (
                f", inside the non-zero mask because cropping removed {1 - rel:.0%} of the voxels (> {1 - thr:.0%})"
                if mask
                else f"; cropping removed {1 - rel:.0%} of the voxels (<= {1 - thr:.0%}), so no mask"
            )
            out.append(
                ChannelNormalization(channel=ch.index, scheme="zscore", use_nonzero_mask=mask, reason=why)
            )
    return out


def plan_resampling(preset: Preset, spacing: list[float]) -> ResamplingPlan:
    r = preset.resampling
    ratio = max(spacing) / min(spacing)
    why = (
        f"images order {r.image_order}, labels order {r.label_order} on one-hot maps; when a case's or the "
        f"target's spacing ratio exceeds {r.separate_z_threshold:g} the thick axis is resampled separately with "
        f"order {r.z_order}"
    )
    why += f" (target ratio {ratio:.2f})"
    return ResamplingPlan(
        image_order=r.image_order,
        label_order=r.label_order,
        separate_z_threshold=r.separate_z_threshold,
        z_order=r.z_order,
        reason=why,
    )


# --- the plan -----------------------------------------------------------------------------------------------------


def _classes(fp: Fingerprint) -> tuple[dict[str, str], int]:
    if fp.task_type == "segmentation":
        labels = {str(lab.value): lab.name for lab in fp.labels}
        if "0" not in labels:
            labels = {"0": "background", **labels}
        return labels, len(labels)
    if fp.task_type == "classification":
        values = sorted({c.value for c in fp.cases if c.value is not None})
        return {str(int(v)): f"class_{int(v)}" for v in values}, len(values)
    return {}, 1


def make_plan(
    fp: Fingerprint,
    preset: Preset,
    *,
    device: str | None = None,
    memory_gb: float | None = None,
    memory_factor: float = 1.0,
) -> Plan:
    """Plan every configuration the preset asks for. Pure and deterministic."""
    target = resolve_target(preset, device, memory_gb, memory_factor)
    spacing, spacing_reason = target_spacing(fp, preset)
    fwd, bwd, transpose_reason = (
        transpose_for(spacing) if fp.dimension == 3 else ([0, 1, 2], [0, 1, 2], "2D data: no transpose")
    )
    labels, n_classes = _classes(fp)
    norm = plan_normalization(fp, preset)
    med_full = median_shape(fp, spacing)
    sp_t = [spacing[a] for a in fwd]
    med_t = [med_full[a] for a in fwd]
    # the dataset-coverage cap counts every voxel at full resolution (a 2D batch draws slices of the 3D volumes)
    common = _Context(
        fp, preset, target, fp.n_channels, n_classes, norm, float(fp.n_cases * math.prod(med_full))
    )
    configs: dict[str, ConfigurationPlan] = {}
    reasons = {"target_spacing": spacing_reason, "transpose": transpose_reason}
    wanted = preset.configurations
    want_3d = fp.dimension == 3 and med_t[0] > 1
    if "2d" in wanted or not want_3d:
        configs["2d"] = plan_configuration(
            "2d",
            sp_t[1:],
            med_t[1:],
            common,
            resampling=plan_resampling(preset, sp_t[1:]),
            batch_dice=True,
            data_identifier="2d",
        )
    lowres_needed = False
    if want_3d and "3d_fullres" in wanted:
        full = plan_configuration(
            "3d_fullres",
            sp_t,
            med_t,
            common,
            resampling=plan_resampling(preset, sp_t),
            batch_dice=False,
            data_identifier="3d_fullres",
        )
        coverage = math.prod(full.patch_size) / math.prod(med_t)
        lowres_needed = coverage < preset.lowres.coverage_threshold
        lowres = None
        if lowres_needed and "3d_lowres" in wanted and preset.lowres.enabled:
            lowres, why = _plan_lowres(fp, preset, spacing, fwd, med_t, common)
            reasons["3d_lowres"] = why
        elif lowres_needed:
            reasons["3d_lowres"] = "needed by coverage but disabled in the preset"
        else:
            reasons["3d_lowres"] = (
                f"not needed: the full-resolution patch covers {coverage:.0%} of the median "
                f"image (>= {preset.lowres.coverage_threshold:.0%})"
            )
        if lowres is not None:
            configs["3d_fullres"] = full.model_copy(update={"batch_dice": True})
            configs["3d_lowres"] = lowres.model_copy(update={"next_stage": "3d_cascade_fullres"})
            casc_net = full.network.model_copy(update={"in_channels": fp.n_channels + n_classes})
            configs["3d_cascade_fullres"] = full.model_copy(
                update={
                    "name": "3d_cascade_fullres",
                    "previous_stage": "3d_lowres",
                    "network": casc_net,
                    "batch_dice": True,
                    "reasons": {
                        **full.reasons,
                        "cascade": "inputs are the image plus the one-hot 3d_lowres prediction",
                    },
                }
            )
        else:
            configs["3d_fullres"] = full
    if not want_3d:
        reasons["configurations"] = "2D data: only the 2d configuration"
    else:
        reasons["configurations"] = f"planned {sorted(configs)} (preset asks for {list(wanted)})"
    plan = Plan(
        automed_version=__version__,
        dataset_name=fp.dataset_name,
        fingerprint_hash=fp.hash,
        preset_name=preset.name,
        preset_hash=content_hash(preset.model_dump(mode="json")),
        task_type=fp.task_type,
        labels=labels,
        n_channels=fp.n_channels,
        original_median_spacing=fp.median_spacing,
        transpose_forward=fwd,
        transpose_backward=bwd,
        configurations=configs,
        reasons=reasons,
    )
    return plan.with_hash()


def _plan_lowres(
    fp: Fingerprint,
    preset: Preset,
    spacing: list[float],
    fwd: list[int],
    med_full_t: list[int],
    common: _Context,
) -> tuple[ConfigurationPlan | None, str]:
    lo = np.array(spacing, dtype=np.float64)
    cfg: ConfigurationPlan | None = None
    for _ in range(500):
        mx = lo.max()
        finer = (mx / lo) > 2
        if finer.any():
            lo[finer] *= preset.lowres.spacing_step
        else:
            lo *= preset.lowres.spacing_step
        sp = [float(lo[a]) for a in fwd]
        med = [median_shape(fp, [float(v) for v in lo])[a] for a in fwd]
        cfg = plan_configuration(
            "3d_lowres",
            sp,
            med,
            common,
            resampling=plan_resampling(preset, sp),
            batch_dice=False,
            data_identifier="3d_lowres",
        )
        if math.prod(cfg.patch_size) / math.prod(med) >= preset.lowres.coverage_threshold:
            break
    assert cfg is not None
    reduction = math.prod(med_full_t) / math.prod(cfg.median_shape)
    if reduction < preset.lowres.min_size_reduction:
        return None, (
            f"dropped: the low-resolution median image is only {reduction:.2f}x smaller than full "
            f"resolution (< {preset.lowres.min_size_reduction:g}x)"
        )
    return cfg, (
        f"the full-resolution patch covers under {preset.lowres.coverage_threshold:.0%} of the median image, "
        f"so spacing was coarsened by {preset.lowres.spacing_step:g}x steps to {cfg.spacing} where the "
        f"patch covers it ({reduction:.1f}x fewer voxels); 3d_cascade_fullres refines it"
    )
