"""Fingerprint extraction: stream cases over worker processes and pool bounded per-case samples."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import ndimage

from automed._version import __version__
from automed.artifacts import canonical_json
from automed.data.cases import CaseData, read_case
from automed.data.dataset import Case, Dataset
from automed.fingerprint.schema import (
    CaseFingerprint,
    ChannelFingerprint,
    Fingerprint,
    IntensityStats,
    LabelFingerprint,
)
from automed.parallel import parallel_map
from automed.records import readable_patches_mpp
from automed.runtime.crop import bbox_of, box_shape, nonzero_mask, slicer

DEFAULT_SAMPLE_BUDGET = 10_000_000  # foreground intensity samples in total, split equally over cases
RAW_SAMPLES_PER_CASE = 20_000
MAX_COMPONENTS_KEPT = 50
# how ``inputs_hash`` stamps the files: 1 by size and modification time (fingerprints written before 2 existed),
# 2 with the status-change time too (an edit whose size and modification time were kept, or set back, is seen)
INPUTS_VERSION = 2


@dataclass
class _CaseResult:
    fp: CaseFingerprint
    fg_samples: np.ndarray  # (C, n) float32
    raw_samples: np.ndarray  # (C, m) float32
    raw_min: np.ndarray
    raw_max: np.ndarray
    integer_valued: np.ndarray
    digest: str  # of the voxels and geometry read (_digest)


def _case_worker(item: tuple[int, Case], *, images_are_4d: bool, n_samples: int, seed: int) -> _CaseResult:
    idx, case = item
    data = read_case(case, images_are_4d)
    ch = data.channels
    box = bbox_of(nonzero_mask(ch))
    sl = (slice(None), *slicer(box))
    cropped = ch[sl]
    rng = np.random.default_rng([seed, idx])
    label_voxels: dict[str, int] = {}
    comp_sizes: dict[str, list[int]] = {}
    if data.label is not None:
        lab = data.label[slicer(box)]
        fg = lab > 0
        values, counts = np.unique(lab, return_counts=True)
        for v, n in zip(values.tolist(), counts.tolist(), strict=True):
            label_voxels[str(v)] = int(n)
            if v != 0:
                cc, ncc = ndimage.label(lab == v)
                sizes = np.bincount(cc.ravel())[1:] if ncc else np.zeros(0, dtype=np.int64)
                comp_sizes[str(v)] = sorted((int(s) for s in sizes), reverse=True)[:MAX_COMPONENTS_KEPT]
    else:
        fg = np.any(cropped != 0, axis=0)
    fg_samples = np.zeros((ch.shape[0], n_samples), dtype=np.float32)
    if fg.any():
        flat = np.flatnonzero(fg)
        pick = rng.choice(flat, size=n_samples, replace=True)
        for c in range(ch.shape[0]):
            fg_samples[c] = cropped[c].ravel()[pick]
    else:
        fg_samples = np.full((ch.shape[0], 0), np.nan, dtype=np.float32)
    m = min(RAW_SAMPLES_PER_CASE, ch[0].size)
    raw_pick = rng.choice(ch[0].size, size=m, replace=False)
    raw = np.stack([ch[c].ravel()[raw_pick] for c in range(ch.shape[0])])
    fp = CaseFingerprint(
        case_id=case.case_id,
        spacing=list(data.geometry.spacing_zyx),
        shape=list(ch.shape[1:]),
        shape_after_crop=box_shape(box),
        relative_size_after_crop=float(np.prod(box_shape(box))) / float(max(1, int(np.prod(ch.shape[1:])))),
        label_voxels=label_voxels,
        component_sizes=comp_sizes,
        value=case.value,
    )
    return _CaseResult(
        fp,
        fg_samples,
        raw,
        ch.reshape(ch.shape[0], -1).min(axis=1),
        ch.reshape(ch.shape[0], -1).max(axis=1),
        np.array([bool(np.all(np.mod(ch[c], 1) == 0)) for c in range(ch.shape[0])]),
        _digest(data),
    )


def _digest(data: CaseData) -> str:
    """SHA-256 of a case as preprocessing reads it: its voxels (channels, label) and geometry. The fingerprint's
    statistics may stay the same over an edit (background voxels edited, a label moved); the digest of the cases'
    digests does not, so the plan and the preprocessed cache that hash the fingerprint are redone."""
    h = hashlib.sha256()
    for arr in (data.channels, data.label):
        if arr is None:
            h.update(b"none|")
            continue
        h.update(f"{arr.dtype}|{arr.shape}|".encode())
        h.update(np.ascontiguousarray(arr).data)
    h.update(canonical_json(data.geometry.to_json()).encode())
    return h.hexdigest()


def inputs_hash(ds: Dataset, samples_per_case: int, seed: int, version: int = INPUTS_VERSION) -> str:
    """Cheap hash of what the fingerprint depends on: description, file sizes and times, sampling settings (the
    files are not read: a changed stamp has the fingerprint recomputed, whose voxel digest tells a real change)."""
    h = hashlib.sha256()
    # the description file; a folder-per-class dataset has none (its classes and files are the paths below)
    h.update(ds.source.read_bytes() if not ds.source.is_dir() else f"{ds.layout}|{ds.source}".encode())
    h.update(f"{samples_per_case}|{seed}|{ds.images_are_4d}".encode())
    if ds.extra.get("task"):  # --task: another task is another fingerprint (a plain dataset hashes as before)
        h.update(f"task|{ds.extra['task']}".encode())
    for c in ds.cases:
        for p in (*c.images, *([c.label] if c.label else [])):
            st = p.stat() if p.exists() else None
            h.update(f"{p}|{st.st_size if st else -1}|{st.st_mtime_ns if st else -1}".encode())
            if version >= 2:  # any write, or a modification time set back, sets the status-change time to now
                h.update(f"|{st.st_ctime_ns if st else -1}".encode())
        h.update(f"{c.case_id}|{c.value}|{c.group}".encode())
    return h.hexdigest()[:16]


def inputs_unchanged(ds: Dataset, fp: Fingerprint) -> bool:
    """Whether ``ds``'s files are as they were when ``fp`` was taken (stamped the way ``fp`` stamped them)."""
    return fp.inputs_hash == inputs_hash(ds, fp.samples_per_case, fp.seed, fp.inputs_version)


def _stats(x: np.ndarray) -> IntensityStats:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return IntensityStats(
            mean=0, std=1, median=0, min=0, max=0, percentile_00_5=0, percentile_99_5=0, n_samples=0
        )
    x64 = x.astype(np.float64)
    p = np.percentile(x64, [0.5, 50.0, 99.5])
    return IntensityStats(
        mean=float(x64.mean()),
        std=float(x64.std()),
        median=float(p[1]),
        min=float(x64.min()),
        max=float(x64.max()),
        percentile_00_5=float(p[0]),
        percentile_99_5=float(p[2]),
        n_samples=int(x.size),
    )


CT_NAMES = {"ct"}


def guess_modality(declared: str, raw_min: float, frac_air: float, integer_valued: bool) -> tuple[str, str]:
    """Modality of a channel: the declared name, or CT when intensities look like Hounsfield units."""
    if declared:
        if declared.strip().lower() in CT_NAMES:
            return "CT", f"declared '{declared}'"
        return declared, f"declared '{declared}' (not CT: per-image normalization)"
    if raw_min >= -3100 and raw_min <= -500 and frac_air >= 0.01 and integer_valued:
        return "CT", (
            f"guessed CT: integer intensities down to {raw_min:.0f} with {100 * frac_air:.1f}% of voxels "
            "below -500, as Hounsfield units (air is -1000)"
        )
    return "unknown", (
        f"guessed non-CT: minimum {raw_min:.4g} and {100 * frac_air:.1f}% of voxels below -500 do not "
        "look like Hounsfield units"
    )


def extract_fingerprint(
    ds: Dataset,
    *,
    workers: int = 1,
    seed: int = 1234,
    sample_budget: int = DEFAULT_SAMPLE_BUDGET,
    show_progress: bool = True,
) -> Fingerprint:
    """Compute the fingerprint of ``ds`` (which should have passed :func:`automed.data.verify.verify`)."""
    n = max(1, len(ds.cases))
    per_case = max(1, sample_budget // n)
    fn = partial(_case_worker, images_are_4d=ds.images_are_4d, n_samples=per_case, seed=seed)
    case_fps: list[CaseFingerprint] = []
    fg_parts: list[np.ndarray] = []
    raw_parts: list[np.ndarray] = []
    mins, maxs, ints = [], [], []
    voxels = hashlib.sha256()
    for r in parallel_map(
        fn, list(enumerate(ds.cases)), workers=workers, description="fingerprint", show_progress=show_progress
    ):
        case_fps.append(r.fp)
        fg_parts.append(r.fg_samples)
        raw_parts.append(r.raw_samples)
        mins.append(r.raw_min)
        maxs.append(r.raw_max)
        ints.append(r.integer_valued)
        voxels.update(f"{r.fp.case_id}|{r.digest}|".encode())
    fg = np.concatenate(fg_parts, axis=1)
    raw = np.concatenate(raw_parts, axis=1)
    cmin, cmax = np.min(np.stack(mins), axis=0), np.max(np.stack(maxs), axis=0)
    cint = np.all(np.stack(ints), axis=0)
    channels = []
    for c in range(fg.shape[0]):
        declared = ds.channels[c] if c < len(ds.channels) else ""
        frac_air = float(np.mean(raw[c] < -500))
        modality, reason = guess_modality(declared, float(cmin[c]), frac_air, bool(cint[c]))
        channels.append(
            ChannelFingerprint(
                index=c,
                declared=declared,
                modality=modality,
                modality_reason=reason,
                foreground=_stats(fg[c]),
                raw_min=float(cmin[c]),
                raw_max=float(cmax[c]),
                raw_fraction_below_minus_500=frac_air,
                integer_valued=bool(cint[c]),
            )
        )
    labels = _label_fingerprints(ds, case_fps)
    shapes = np.array([c.shape for c in case_fps])
    dimension: Literal[2, 3] = 2 if bool(np.all(shapes[:, 0] == 1)) else 3
    task = ds.task_type
    fp = Fingerprint(
        automed_version=__version__,
        dataset_name=ds.name,
        source=str(ds.source),
        layout=ds.layout,
        task_type=task,
        task_type_reason=task_reason(ds),
        dimension=dimension,
        n_cases=len(case_fps),
        n_channels=fg.shape[0],
        samples_per_case=per_case,
        seed=seed,
        inputs_hash=inputs_hash(ds, per_case, seed),
        inputs_version=INPUTS_VERSION,
        median_spacing=[float(v) for v in np.median(np.array([c.spacing for c in case_fps]), axis=0)],
        median_shape_after_crop=[
            int(v) for v in np.median(np.array([c.shape_after_crop for c in case_fps]), axis=0)
        ],
        median_relative_size_after_crop=float(np.median([c.relative_size_after_crop for c in case_fps])),
        channels=channels,
        labels=labels,
        cases=case_fps,
        class_names=class_names(ds),
        voxels_digest=voxels.hexdigest(),
        slide_mpp=readable_patches_mpp(Path(ds.source)),
    )
    return fp.with_hash()


def task_reason(ds: Dataset) -> str:
    """Why ``ds`` has its task type, in words."""
    task = ds.task_type
    if ds.extra.get("task"):
        return f"chosen by the user (--task {task})"
    if not any(c.label is not None or c.value is not None for c in ds.cases):
        return "no label maps and no ValueToPredict (images only): segmentation by default; training needs targets"
    if task != "classification":
        return {
            "segmentation": "label maps are given",
            "regression": "ValueToPredict holds continuous values",
        }[task]
    if ds.layout == "folders":
        return "one folder of images per class"
    if any(name != str(v) for v, name in (ds.labels or {}).items()):
        return "ValueToPredict holds class names"
    return "ValueToPredict holds few distinct integer values"


def class_names(ds: Dataset) -> dict[str, str] | None:
    """Classification: class index (as ``str(int(value))``) to class name, from ``Dataset.labels``; else None."""
    if ds.task_type != "classification" or ds.labels is None:
        return None
    return {str(v): name for v, name in sorted(ds.labels.items())}


def _label_fingerprints(ds: Dataset, cases: list[CaseFingerprint]) -> list[LabelFingerprint]:
    found: set[int] = {int(k) for c in cases for k in c.label_voxels}
    if ds.task_type != "segmentation" or (not found and ds.labels is None):  # class names are no label values
        return []
    values = sorted(found | set(ds.labels or {}))
    out = []
    for v in values:
        key = str(v)
        per_case_counts = [c.label_voxels.get(key, 0) for c in cases]
        comps = [c.component_sizes.get(key, []) for c in cases if c.label_voxels.get(key, 0) > 0]
        all_sizes = [s for cs in comps for s in cs]
        present = sum(1 for n in per_case_counts if n > 0)
        name = (ds.labels or {}).get(v, "background" if v == 0 else f"label_{v}")
        out.append(
            LabelFingerprint(
                value=v,
                name=name,
                total_voxels=int(sum(per_case_counts)),
                cases_present=present,
                fraction_of_cases=present / max(1, len(cases)),
                components_per_case_median=float(np.median([len(cs) for cs in comps])) if comps else 0.0,
                components_per_case_max=max((len(cs) for cs in comps), default=0),
                component_size_median_voxels=float(np.median(all_sizes)) if all_sizes else 0.0,
                component_size_min_voxels=min(all_sizes, default=0),
                component_size_max_voxels=max(all_sizes, default=0),
            )
        )
    return out
