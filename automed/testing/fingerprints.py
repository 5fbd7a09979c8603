"""Synthetic fingerprints: plan without images (for planner tests and contract checks)."""

from __future__ import annotations

from automed.fingerprint.schema import (
    CaseFingerprint,
    ChannelFingerprint,
    Fingerprint,
    IntensityStats,
    LabelFingerprint,
)


def synthetic_fingerprint(
    spacing: tuple[float, float, float],
    shape: tuple[int, int, int],
    *,
    n_cases: int = 20,
    modality: str = "MRI",
    n_channels: int = 1,
    n_labels: int = 2,
    relative_size: float = 1.0,
    spacing_jitter: float = 0.0,
) -> Fingerprint:
    """A fingerprint of ``n_cases`` cases of ``shape`` at ``spacing`` (``(z, y, x)``), with small deterministic
    variation between cases (``spacing_jitter`` spreads the spacings by that fraction)."""
    cases = []
    for i in range(n_cases):
        f = 1.0 + spacing_jitter * ((i % 5) - 2) / 2
        sp = [spacing[0] * f, spacing[1], spacing[2]]
        sh = [max(1, s + (i % 3) - 1) if s > 1 else 1 for s in shape]
        cases.append(
            CaseFingerprint(
                case_id=f"case_{i:03d}",
                spacing=sp,
                shape=sh,
                shape_after_crop=[max(1, round(s * relative_size ** (1 / 3))) if s > 1 else 1 for s in sh],
                relative_size_after_crop=relative_size,
                label_voxels={str(k): 100 for k in range(n_labels + 1)},
                component_sizes={str(k): [100] for k in range(1, n_labels + 1)},
            )
        )
    stats = IntensityStats(
        mean=50.0,
        std=20.0,
        median=48.0,
        min=-1000.0,
        max=1500.0,
        percentile_00_5=-900.0,
        percentile_99_5=1200.0,
        n_samples=1000,
    )
    channels = [
        ChannelFingerprint(
            index=c,
            declared=modality,
            modality="CT" if modality.upper() == "CT" else modality,
            modality_reason=f"declared '{modality}'",
            foreground=stats,
            raw_min=-1000.0,
            raw_max=1500.0,
            raw_fraction_below_minus_500=0.2,
            integer_valued=True,
        )
        for c in range(n_channels)
    ]
    labels = [
        LabelFingerprint(
            value=k,
            name="background" if k == 0 else f"label_{k}",
            total_voxels=100 * n_cases,
            cases_present=n_cases,
            fraction_of_cases=1.0,
            components_per_case_median=1.0,
            components_per_case_max=1,
            component_size_median_voxels=100.0,
            component_size_min_voxels=100,
            component_size_max_voxels=100,
        )
        for k in range(n_labels + 1)
    ]
    import numpy as np

    fp = Fingerprint(
        automed_version="test",
        dataset_name="synthetic",
        source="<synthetic>",
        layout="msd",
        task_type="segmentation",
        task_type_reason="label maps are given",
        dimension=2 if shape[0] == 1 else 3,
        n_cases=n_cases,
        n_channels=n_channels,
        samples_per_case=1000,
        seed=0,
        inputs_hash="synthetic",
        median_spacing=[float(v) for v in np.median([c.spacing for c in cases], axis=0)],
        median_shape_after_crop=[int(v) for v in np.median([c.shape_after_crop for c in cases], axis=0)],
        median_relative_size_after_crop=relative_size,
        channels=channels,
        labels=labels,
        cases=cases,
    )
    return fp.with_hash()
