"""Preprocessing choices of a plan: the normalization scheme of each channel and the resampling orders."""

from __future__ import annotations

from automed.fingerprint.schema import Fingerprint
from automed.plan.preset import Preset
from automed.plan.schema import ChannelNormalization, ResamplingPlan

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
