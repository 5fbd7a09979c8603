"""The 3D configurations: 3d_fullres and, when its patch covers too little of the median image, the lower
resolution 3d_lowres stage with the 3d_cascade_fullres stage that refines it (nnU-Net's cascade)."""

from __future__ import annotations

import math

import numpy as np

from automed.fingerprint.schema import Fingerprint
from automed.plan.configuration import PlanContext, plan_configuration
from automed.plan.preprocessing import plan_resampling
from automed.plan.preset import Preset
from automed.plan.schema import ConfigurationPlan
from automed.plan.spacing import median_shape


def plan_3d(
    fp: Fingerprint,
    preset: Preset,
    spacing: list[float],
    fwd: list[int],
    sp_t: list[float],
    med_t: list[int],
    common: PlanContext,
) -> tuple[dict[str, ConfigurationPlan], str]:
    """Plan 3d_fullres (at ``sp_t``, median shape ``med_t``, both transposed) and decide on the cascade.

    Returns the configurations in plan order (``3d_fullres`` and, with a cascade, ``3d_lowres`` and
    ``3d_cascade_fullres``) and the reason for the ``3d_lowres`` decision.
    """
    wanted = preset.configurations
    n_classes = common.n_classes
    configs: dict[str, ConfigurationPlan] = {}
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
    elif lowres_needed:
        why = "needed by coverage but disabled in the preset"
    else:
        why = (
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
    return configs, why


def _plan_lowres(
    fp: Fingerprint,
    preset: Preset,
    spacing: list[float],
    fwd: list[int],
    med_full_t: list[int],
    common: PlanContext,
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
