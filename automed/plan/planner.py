"""The default planner: fingerprint + preset -> :class:`Plan`.

Lifecycle: :func:`make_plan` is a pure function of its arguments (no I/O, no clock, no randomness), so the same
fingerprint, preset and device give the same ``plan.json``, byte for byte. Every decision records a one-line reason.
nnU-Net v2's rules are the default where they are sound; each deviation says so in its reason.

The rules live beside it: :mod:`~automed.plan.target` (device and memory target),
:mod:`~automed.plan.spacing` (target spacing, median shape, transpose), :mod:`~automed.plan.configuration`
(patch, topology, memory, batch), :mod:`~automed.plan.preprocessing` (normalization, resampling) and
:mod:`~automed.plan.cascade` (3d_fullres, 3d_lowres and the cascade); this module orders them into a plan and
re-exports their public names.
"""

from __future__ import annotations

import math
from dataclasses import replace

from automed._version import __version__
from automed.artifacts import content_hash
from automed.fingerprint.schema import Fingerprint
from automed.plan.cascade import plan_3d
from automed.plan.configuration import GB, PlanContext, plan_configuration
from automed.plan.image_level import fit_spacing, plan_target, whole_image_input
from automed.plan.preprocessing import DECLARED_SCHEMES, plan_normalization, plan_resampling
from automed.plan.preset import Preset
from automed.plan.schema import ConfigurationPlan, Plan
from automed.plan.spacing import median_shape, target_spacing, transpose_for
from automed.plan.target import Target, resolve_target

__all__ = [
    "DECLARED_SCHEMES",
    "GB",
    "PlanContext",
    "Target",
    "make_plan",
    "median_shape",
    "plan_configuration",
    "plan_normalization",
    "plan_resampling",
    "resolve_target",
    "target_spacing",
    "transpose_for",
]


def _classes(fp: Fingerprint) -> tuple[dict[str, str], int]:
    if fp.task_type == "segmentation":
        labels = {str(lab.value): lab.name for lab in fp.labels}
        if "0" not in labels:
            labels = {"0": "background", **labels}
        return labels, len(labels)
    if fp.task_type == "classification":
        values = sorted({c.value for c in fp.cases if c.value is not None})
        names = fp.class_names or {}
        return {str(int(v)): names.get(str(int(v)), f"class_{int(v)}") for v in values}, len(values)
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
    image_level = fp.task_type != "segmentation"
    if image_level:
        spacing, why = fit_spacing(spacing, median_shape(fp, spacing), preset)
        spacing_reason += f"; {why}"
    fwd, bwd, transpose_reason = (
        transpose_for(spacing) if fp.dimension == 3 else ([0, 1, 2], [0, 1, 2], "2D data: no transpose")
    )
    labels, n_classes = _classes(fp)
    norm = plan_normalization(fp, preset)
    med_full = median_shape(fp, spacing)
    sp_t = [spacing[a] for a in fwd]
    med_t = [med_full[a] for a in fwd]
    # the dataset-coverage cap counts every voxel at full resolution (a 2D batch draws slices of the 3D volumes)
    common = PlanContext(
        fp, preset, target, fp.n_channels, n_classes, norm, float(fp.n_cases * math.prod(med_full))
    )
    configs: dict[str, ConfigurationPlan] = {}
    reasons = {"target_spacing": spacing_reason, "transpose": transpose_reason}
    want_3d = fp.dimension == 3 and med_t[0] > 1
    wanted = list(preset.configurations)
    if image_level:  # one whole-image configuration, no cascade
        wanted = ["3d_fullres"] if want_3d else ["2d"]
        preset = preset.model_copy(update={"lowres": preset.lowres.model_copy(update={"enabled": False})})
        common = replace(common, preset=preset)
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
    if want_3d and "3d_fullres" in wanted:
        configs_3d, reasons["3d_lowres"] = plan_3d(fp, preset, spacing, fwd, sp_t, med_t, common)
        configs.update(configs_3d)
    if image_level:
        configs = {k: whole_image_input(v, preset, fp.n_cases) for k, v in configs.items()}
        reasons["configurations"] = f"{fp.task_type}: one whole-image configuration ({', '.join(configs)})"
    elif not want_3d:
        reasons["configurations"] = "2D data: only the 2d configuration"
    else:
        reasons["configurations"] = f"planned {sorted(configs)} (preset asks for {list(wanted)})"
    plan = Plan(
        automed_version=__version__,
        dataset_name=fp.dataset_name,
        fingerprint_hash=fp.hash,
        preset_name=preset.name,
        preset_hash=content_hash(preset.model_dump(mode="json", exclude={"budget"})),  # training-only rules
        task_type=fp.task_type,
        labels=labels,
        n_channels=fp.n_channels,
        original_median_spacing=fp.median_spacing,
        transpose_forward=fwd,
        transpose_backward=bwd,
        configurations=configs,
        reasons=reasons,
        target=plan_target(fp, preset) if image_level else None,
        data_dimension=3 if want_3d else 2,
    )
    return plan.with_hash()
