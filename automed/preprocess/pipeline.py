"""``automed preprocess``: transpose -> crop -> normalize -> resample, per configuration and case.

Output: ``WORKDIR/preprocessed/<data_identifier>/<case>.npz`` (``data`` float32 ``(C, z, y, x)``, ``seg`` int16 class
indices, ``loc_<k>`` foreground voxel coordinates for oversampling; ``target``: an image-level task's ValueToPredict) plus ``<case>.json`` (original geometry, crop box,
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
from automed.runtime.crop import slicer
from automed.runtime.pipeline import Spec, preprocess_image
from automed.runtime.resample import resample_seg

# the cache's version: raise it whenever preprocessing writes something else for the same plan (a cache of another
# version is then redone, never trusted)
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


def spec_for(plan: Plan, cfg: ConfigurationPlan) -> Spec:
    """The runtime's view of one configuration's pre/post-processing (what a bundle's preprocess.json holds)."""
    return Spec(
        transpose_forward=list(plan.transpose_forward),
        transpose_backward=list(plan.transpose_backward),
        spacing=list(cfg.spacing),
        dimension=cfg.network.dimension,
        normalization=[n.model_dump(mode="json", exclude={"reason"}) for n in cfg.normalization],
        image_order=cfg.resampling.image_order,
        z_order=cfg.resampling.z_order,
        separate_z_threshold=cfg.resampling.separate_z_threshold,
        label_values=sorted(int(k) for k in plan.labels),
        n_channels=plan.n_channels,
    )


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
    """Transpose -> crop to non-zero -> normalize -> resample one case held in memory (training and inference).

    The image goes through :func:`automed.runtime.pipeline.preprocess_image` (the code a bundle runs too); the label
    map is mapped to class indices, cropped to the same box and resampled with the plan's label order."""
    data, props, _ = preprocess_image(channels, geometry.spacing_zyx, spec_for(plan, cfg))
    props = {"geometry": geometry.to_json(), **props}
    seg = None if label is None else preprocess_label(label, props, plan, cfg, label_values)
    return Preprocessed(data.astype(np.float32, copy=False), seg, props)


def preprocess_label(
    label: np.ndarray, props: dict[str, Any], plan: Plan, cfg: ConfigurationPlan, label_values: list[int]
) -> np.ndarray:
    """A label map in the original geometry as class indices on the grid of a case preprocessed with ``props``:
    mapped, transposed, cropped to the image's box and resampled with the plan's label order (the training label
    map, and a cascade's previous-stage prediction)."""
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
    seg = mapping[label.astype(np.int64)].transpose(*plan.transpose_forward)
    seg = np.ascontiguousarray(seg[slicer(props["crop_box"])])
    r = cfg.resampling
    return resample_seg(
        seg,
        props["shape_after_resampling"],
        len(label_values),
        r.label_order,
        props["separate_axis"],
        r.z_order,
    ).astype(np.int16)


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
    if job.case.value is not None:  # classification/regression: the raw ValueToPredict (the task maps it)
        arrays["target"] = np.array([job.case.value], dtype=np.float64)
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
    if data.get("schema_version") != MANIFEST_VERSION:
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
