"""Planning rules of the image-level tasks (classification, regression): one prediction from the whole image.

The network sees the whole image: the target spacing is coarsened until the median image fits the preset's
``image_level.max_input_edge_*`` (X-rays and photographs are thereby resized, volumes keep their physical size when
they fit), and the input shape is the median shape padded up to the network's divisor (smaller images are padded,
larger ones centre-cropped). The loss follows the target: cross-entropy, weighted by inverse class frequency when the
classes are imbalanced; Huber (or MSE) on the standardized value for regression.
"""

from __future__ import annotations

import math

import numpy as np

from automed.fingerprint.schema import Fingerprint
from automed.plan.preset import Preset
from automed.plan.schema import ConfigurationPlan, TargetPlan


def fit_spacing(spacing: list[float], median: list[int], preset: Preset) -> tuple[list[float], str]:
    """``spacing`` coarsened by one factor on every axis so that the median image's longest edge fits the preset's
    maximum input edge (unchanged when it fits)."""
    dim = sum(1 for m in median if m > 1)
    edge = preset.image_level.max_input_edge_3d if dim == 3 else preset.image_level.max_input_edge_2d
    factor = max(1.0, max(median) / edge)
    if factor == 1.0:
        return spacing, f"the median image ({median}) fits the maximum input edge {edge}: spacing kept"
    new = [s * factor if m > 1 else s for s, m in zip(spacing, median, strict=True)]
    return new, (
        f"the median image ({median}) is larger than the maximum input edge {edge} "
        f"(preset image_level): spacing coarsened {factor:.3g}x so the whole image is in view"
    )


def whole_image_input(cfg: ConfigurationPlan, preset: Preset, n_cases: int) -> ConfigurationPlan:
    """The configuration's input: the median shape padded up to the divisor; the batch as large as memory allows,
    up to the preset's cap and half the cases (segmentation's dataset-coverage rule counts voxels of patches; an
    image-level batch sees whole images, and small batches make noisy class statistics)."""
    div = cfg.network.divisor
    shape = [int(math.ceil(m / d) * d) for m, d in zip(cfg.median_shape, div, strict=True)]
    mem = cfg.memory
    per_sample = mem.per_sample_gb * math.prod(shape) / max(1, math.prod(cfg.patch_size))
    by_memory = int((mem.target_gb - mem.fixed_gb) // max(per_sample, 1e-12))
    rules = preset.image_level
    cap = rules.max_batch_size_3d if cfg.network.dimension == 3 else rules.max_batch_size
    batch = max(2, min(by_memory, cap, n_cases // 2))
    bound = min(
        (by_memory, "memory"),
        (cap, f"the preset cap image_level.max_batch_size{'_3d' if cfg.network.dimension == 3 else ''}"),
        (n_cases // 2, "half the cases"),
    )
    reasons = {
        **cfg.reasons,
        "patch_size": (
            f"the whole image: median shape {cfg.median_shape} padded up to multiples of {div} "
            "(smaller images are padded, larger ones centre-cropped)"
        ),
        "batch_size": f"{batch} whole images, bounded by {bound[1]} (memory allows {by_memory})",
    }
    reasons.pop("foreground_oversample", None)
    return cfg.model_copy(
        update={"patch_size": shape, "batch_size": batch, "foreground_oversample": 0.0, "reasons": reasons}
    )


def plan_target(fp: Fingerprint, preset: Preset) -> TargetPlan:
    """Classes (names, counts, loss weights) or the regression target's standardization, and the loss."""
    values = [float(c.value) for c in fp.cases if c.value is not None]
    rules = preset.image_level
    if fp.task_type == "classification":
        classes = sorted(set(values))
        names = fp.class_names or {}
        counts = [values.count(v) for v in classes]
        ratio = max(counts) / max(1, min(counts))
        weights = None
        why = f"class counts {counts}: largest/smallest {ratio:.2g}"
        if ratio > rules.class_weight_ratio:
            inv = np.array([len(values) / (len(classes) * n) for n in counts])
            weights = [round(float(w), 6) for w in inv / inv.mean()]
            why += f" > {rules.class_weight_ratio:g}, so cross-entropy weights inverse to the class frequency"
        else:
            why += f" <= {rules.class_weight_ratio:g}: unweighted cross-entropy"
        return TargetPlan(
            kind="classification",
            class_values=classes,
            class_names=[names.get(str(int(v)), str(int(v))) for v in classes],
            class_counts=counts,
            class_weights=weights,
            loss="cross_entropy",
            dropout=rules.dropout,
            reasons={"classes": f"{len(classes)} classes from ValueToPredict", "loss": why},
        )
    arr = np.array(values, dtype=np.float64)
    mean, std = float(arr.mean()), float(arr.std()) or 1.0
    return TargetPlan(
        kind="regression",
        mean=float(f"{mean:.9g}"),  # significant digits: a target in 1e-7 units must not round to a std of 0
        std=float(f"{std:.9g}"),
        loss=rules.regression_loss,
        dropout=rules.dropout,
        scale_augmentation=rules.regression_scale_augmentation,
        norm=rules.regression_norm,
        reasons={
            "norm": (
                "batch normalization in the encoder: per-image instance normalization followed by average pooling "
                "removes how much of something an image holds (a volume, a count), which a regression target may be "
                "(preset image_level.regression_norm)"
                if rules.regression_norm == "batch"
                else "instance normalization in the encoder (preset image_level.regression_norm)"
            ),
            "scale_augmentation": (
                "images are rescaled in training (preset image_level.regression_scale_augmentation)"
                if rules.regression_scale_augmentation
                else "no rescaling in training: a regression target may be a size (a volume, a length), which "
                "rescaling the image would change while the target stays (preset "
                "image_level.regression_scale_augmentation: true turns it on, e.g. for an age)"
            ),
            "standardization": f"the network predicts (value - {mean:.4g}) / {std:.4g} (mean and standard deviation "
            f"of the {len(values)} training values)",
            "loss": f"{rules.regression_loss} on the standardized value (preset image_level.regression_loss)",
        },
    )
