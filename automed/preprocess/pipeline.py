"""``automed preprocess``: transpose -> crop -> normalize -> resample, per configuration and case.

Output: ``WORKDIR/preprocessed/<data_identifier>/<case>.npz`` (``data`` float32 ``(C, z, y, x)``, ``seg`` int16 class
indices, ``loc_<k>`` foreground voxel coordinates for oversampling) plus ``<case>.json`` (original geometry, crop box,
shapes) and ``manifest.json``. A configuration is skipped when its manifest carries the same configuration hash.
The new folder replaces the old one only once complete.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from automed.artifacts import atomic_directory, read_json, write_json_atomic
from automed.data.cases import read_case
from automed.data.dataset import Case, Dataset
from automed.data.io import Geometry
from automed.errors import DatasetError
from automed.parallel import parallel_map
from automed.plan.schema import ConfigurationPlan, Plan
from automed.preprocess.crop import bbox_of, nonzero_mask, slicer
from automed.preprocess.normalize import normalize
from automed.preprocess.resample import new_shape, resample_data, resample_seg, separate_axis

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class _Job:
    case: Case
    images_are_4d: bool
    plan: Plan
    config: ConfigurationPlan
    label_values: list[int]
    out_dir: str
    loc_max: int
    loc_min_fraction: float
    seed: int
    index: int


def target_spacing_for_case(cfg: ConfigurationPlan, case_spacing: list[float]) -> list[float]:
    """3D configurations resample all axes; 2D ones only in-plane (the first axis keeps its spacing)."""
    if cfg.network.dimension == 2:
        return [case_spacing[0], *cfg.spacing]
    return list(cfg.spacing)


def _class_locations(
    seg: np.ndarray, n_classes: int, rng: np.random.Generator, loc_max: int, min_frac: float
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for k in range(1, n_classes):
        idx = np.flatnonzero(seg == k)
        if idx.size == 0:
            continue
        n = min(idx.size, max(loc_max, math.ceil(min_frac * idx.size)))
        pick = np.sort(rng.choice(idx, size=n, replace=False))
        out[f"loc_{k}"] = np.stack(np.unravel_index(pick, seg.shape), axis=1).astype(np.int32)
    return out


@dataclass
class Preprocessed:
    """One case after preprocessing: ``data`` ``(C, z, y, x)`` at the target spacing, ``seg`` class indices, and the
    properties needed to map a prediction back to the original image."""

    data: np.ndarray
    seg: np.ndarray | None
    properties: dict[str, Any]


def preprocess_arrays(
    channels: np.ndarray,
    label: np.ndarray | None,
    geometry: Geometry,
    plan: Plan,
    cfg: ConfigurationPlan,
    label_values: list[int],
) -> Preprocessed:
    """Transpose -> crop to non-zero -> normalize -> resample one case held in memory (training and inference)."""
    t = plan.transpose_forward
    data = np.ascontiguousarray(channels.transpose(0, *[a + 1 for a in t]))
    spacing_t = [geometry.spacing_zyx[a] for a in t]
    seg = None
    if label is not None:
        lut = {v: i for i, v in enumerate(label_values)}
        found = np.unique(label)
        unknown = [int(v) for v in found if int(v) not in lut]
        if unknown:
            raise DatasetError.single(
                "label map",
                "label values must be in the plan's labels",
                unknown,
                "re-run `automed plan` so the fingerprint sees every label",
            )
        mapping = np.zeros(int(found.max()) + 1, dtype=np.int16)
        for v in found:
            mapping[int(v)] = lut[int(v)]
        seg = mapping[label.astype(np.int64)].transpose(*t)
    shape_before = list(data.shape[1:])
    mask = nonzero_mask(data)
    box = bbox_of(mask)
    sl = slicer(box)
    data = np.ascontiguousarray(data[(slice(None), *sl)])
    mask = mask[sl]
    if seg is not None:
        seg = np.ascontiguousarray(seg[sl])
    data = normalize(data, cfg.normalization, mask)
    target = target_spacing_for_case(cfg, spacing_t)
    shape_crop = list(data.shape[1:])
    out_shape = new_shape(tuple(shape_crop), spacing_t, target)
    r = cfg.resampling
    axis = separate_axis(spacing_t, target, r.separate_z_threshold) if cfg.network.dimension == 3 else None
    data = resample_data(data, out_shape, r.image_order, axis, r.z_order)
    if seg is not None:
        seg = resample_seg(seg, out_shape, len(label_values), r.label_order, axis, r.z_order).astype(np.int16)
    props = {
        "geometry": geometry.to_json(),
        "original_spacing": list(geometry.spacing_zyx),
        "transpose_forward": t,
        "shape_before_crop": shape_before,
        "crop_box": box,
        "shape_after_crop": shape_crop,
        "spacing_after_crop": spacing_t,
        "target_spacing": target,
        "shape_after_resampling": out_shape,
        "separate_axis": axis,
    }
    return Preprocessed(data.astype(np.float32, copy=False), seg, props)


def preprocess_case(job: _Job) -> dict[str, Any]:
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    cd = read_case(job.case, job.images_are_4d)
    try:
        pre = preprocess_arrays(cd.channels, cd.label, cd.geometry, job.plan, job.config, job.label_values)
    except DatasetError as exc:
        raise DatasetError.single(
            job.case.label or job.case.case_id,
            exc.problems[0].rule,
            exc.problems[0].value,
            exc.problems[0].fix,
        ) from exc
    arrays: dict[str, np.ndarray] = {"data": pre.data}
    n_loc = {}
    if pre.seg is not None:
        arrays["seg"] = pre.seg
        rng = np.random.default_rng([job.seed, job.index])
        locs = _class_locations(pre.seg, len(job.label_values), rng, job.loc_max, job.loc_min_fraction)
        arrays.update(locs)
        n_loc = {k: int(v.shape[0]) for k, v in locs.items()}
    out = Path(job.out_dir)
    np.savez_compressed(out / f"{job.case.case_id}.npz", allow_pickle=False, **arrays)
    props = {"case_id": job.case.case_id, **pre.properties, "class_locations": n_loc}
    write_json_atomic(out / f"{job.case.case_id}.json", props)
    return {"case_id": job.case.case_id, "shape": pre.properties["shape_after_resampling"]}


def _manifest_ok(folder: Path, config_hash: str, case_ids: list[str]) -> bool:
    m = folder / "manifest.json"
    if not m.is_file():
        return False
    try:
        data = read_json(m, what="manifest.json")
    except Exception:
        return False
    if data.get("configuration_hash") != config_hash or data.get("cases") != case_ids:
        return False
    return all((folder / f"{c}.npz").is_file() and (folder / f"{c}.json").is_file() for c in case_ids)


def preprocess(
    plan: Plan,
    ds: Dataset,
    workdir: Path,
    *,
    configurations: list[str] | None = None,
    workers: int = 1,
    show_progress: bool = True,
) -> dict[str, str]:
    """Preprocess the plan's configurations. Returns ``{data_identifier: "written" | "skipped"}``."""
    names = configurations or list(plan.configurations)
    for n in names:
        if n not in plan.configurations:
            from automed.registry import check_choice

            check_choice(n, plan.configurations, what="the configuration", where="--configurations")
    idents: dict[str, str] = {}
    for n in names:
        idents.setdefault(plan.configurations[n].data_identifier, n)  # identifier -> a configuration using it
    label_values = sorted(int(k) for k in plan.labels) if plan.task_type == "segmentation" else []
    status: dict[str, str] = {}
    case_ids = [c.case_id for c in ds.cases]
    for ident, name in idents.items():
        cfg = plan.configurations[name]
        chash = plan.configuration_hash(name)
        final = workdir / "preprocessed" / ident
        if _manifest_ok(final, chash, case_ids):
            status[ident] = "skipped"
            continue
        with atomic_directory(final) as tmp:
            jobs = [
                _Job(
                    c,
                    ds.images_are_4d,
                    plan,
                    cfg,
                    label_values,
                    str(tmp),
                    cfg.class_locations.max_per_class,
                    cfg.class_locations.min_fraction,
                    cfg.class_locations.seed,
                    i,
                )
                for i, c in enumerate(ds.cases)
            ]
            results = list(
                parallel_map(
                    preprocess_case,
                    jobs,
                    workers=workers,
                    description=f"preprocess {ident}",
                    show_progress=show_progress,
                )
            )
            write_json_atomic(
                tmp / "manifest.json",
                {
                    "schema_version": MANIFEST_VERSION,
                    "configuration": name,
                    "configuration_hash": chash,
                    "plan_hash": plan.hash,
                    "cases": case_ids,
                    "shapes": {r["case_id"]: r["shape"] for r in results},
                },
            )
        status[ident] = "written"
    return status
