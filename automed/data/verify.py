"""``automed verify``: every problem of a dataset in one pass, each as file + rule + value + fix."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from automed.data.dataset import Case, Dataset
from automed.data.io import Geometry, Header, image_to_arrays, read_header, read_sitk
from automed.errors import DatasetError, Problem
from automed.parallel import parallel_map


@dataclass(frozen=True)
class Tolerance:
    """How far channel and label geometries may differ (spacing relative, origin in mm, direction absolute)."""

    spacing_rel: float = 1e-3
    origin_mm: float = 1e-2
    direction_abs: float = 1e-3


def _geometry_problems(
    ref_file: Path, ref: Geometry, other_file: Path, other: Geometry, what: str, tol: Tolerance
) -> list[Problem]:
    out: list[Problem] = []
    fix = (
        f"resample {other_file.name} onto {ref_file.name} (e.g. SimpleITK Resample with the reference image)"
        if what == "channel"
        else "resample the label onto its image with nearest-neighbour interpolation, or fix its header"
    )
    if ref.size != other.size:
        out.append(
            Problem(
                str(other_file), f"{what} size must equal the image size {ref.size}", str(other.size), fix
            )
        )
        return out
    sp_a, sp_b = np.array(ref.spacing), np.array(other.spacing)
    if np.any(np.abs(sp_a - sp_b) > tol.spacing_rel * np.maximum(sp_a, 1e-9)):
        out.append(
            Problem(
                str(other_file),
                f"{what} spacing must equal the image spacing {ref.spacing}",
                str(other.spacing),
                fix,
            )
        )
    if np.any(np.abs(np.array(ref.origin) - np.array(other.origin)) > tol.origin_mm):
        out.append(
            Problem(
                str(other_file),
                f"{what} origin must equal the image origin {ref.origin}",
                str(other.origin),
                fix,
            )
        )
    if np.any(np.abs(np.array(ref.direction) - np.array(other.direction)) > tol.direction_abs):
        out.append(
            Problem(
                str(other_file),
                f"{what} direction must equal the image direction {ref.direction}",
                str(other.direction),
                fix,
            )
        )
    return out


def _header_or_problem(path: Path, problems: list[Problem]) -> Header | None:
    try:
        return read_header(path)
    except DatasetError as exc:
        problems.extend(exc.problems)
        return None


def check_case(
    case: Case,
    *,
    declared_labels: tuple[int, ...] | None,
    images_are_4d: bool,
    n_channels: int,
    tol: Tolerance,
) -> tuple[list[Problem], list[int]]:
    """Check one case. Returns its problems and the label values it contains."""
    problems: list[Problem] = []
    headers: list[tuple[Path, Header]] = []
    for p in case.images:
        if not p.exists():
            problems.append(
                Problem(
                    str(p),
                    "every listed image must exist",
                    "missing file",
                    "fix the path in the dataset description or add the file",
                )
            )
            continue
        h = _header_or_problem(p, problems)
        if h is not None:
            headers.append((p, h))
    if case.label is not None and not case.label.exists():
        problems.append(
            Problem(
                str(case.label),
                "every listed label must exist",
                "missing file",
                "fix the path in the dataset description or add the file",
            )
        )
    for p, h in headers:
        is_2d_rgb = h.geometry.dimension == 2 and h.components in (3, 4)
        if images_are_4d:
            if h.geometry.dimension != 4 and n_channels > 1:
                problems.append(
                    Problem(
                        str(p),
                        f"dataset.json declares 4D images with {n_channels} channels",
                        f"{h.geometry.dimension}D image",
                        "store all channels in one 4D file",
                    )
                )
            elif h.geometry.dimension == 4 and h.geometry.size[3] != n_channels:
                problems.append(
                    Problem(
                        str(p),
                        f"the 4D image must hold {n_channels} channels (dataset.json)",
                        f"{h.geometry.size[3]} volumes",
                        "fix 'modality' or the file",
                    )
                )
        elif h.geometry.dimension > 3 or (h.components > 1 and not is_2d_rgb):
            problems.append(
                Problem(
                    str(p),
                    "images must be 3D (or 2D); a 4D image needs tensorImageSize 4D",
                    f"{h.geometry.dimension}D image, {h.components} component(s), size {h.geometry.size}",
                    "split the volumes into one file per channel (nnU-Net _0000, _0001 naming) "
                    'or declare "tensorImageSize": "4D" in an MSD dataset.json',
                )
            )
    if problems:
        return problems, []
    ref_path, ref = headers[0]
    ref3 = _first3(ref.geometry)
    for p, h in headers[1:]:
        problems += _geometry_problems(ref_path, ref3, p, _first3(h.geometry), "channel", tol)
    label_values: list[int] = []
    if case.label is not None:
        lh = _header_or_problem(case.label, problems)
        if lh is not None:
            if lh.components > 1 or lh.geometry.dimension > 3:
                problems.append(
                    Problem(
                        str(case.label),
                        "a label map must be one 3D (or 2D) integer image",
                        f"{lh.geometry.dimension}D, {lh.components} component(s)",
                        "store one integer label per voxel",
                    )
                )
            else:
                problems += _geometry_problems(ref_path, ref3, case.label, lh.geometry, "label", tol)
    # voxel-level checks
    for p, _ in headers:
        try:
            arrs = image_to_arrays(read_sitk(p))
        except DatasetError as exc:
            problems += exc.problems
            continue
        for a in arrs:
            if np.issubdtype(a.dtype, np.floating):
                bad = int(np.count_nonzero(~np.isfinite(a)))
                if bad:
                    problems.append(
                        Problem(
                            str(p),
                            "image voxels must be finite numbers",
                            f"{bad} NaN/Inf voxels",
                            "replace NaN/Inf (e.g. with 0) before training",
                        )
                    )
                    break
    if (
        case.label is not None
        and case.label.exists()
        and not any(pr.file == str(case.label) for pr in problems)
    ):
        try:
            lab = image_to_arrays(read_sitk(case.label))[0]
        except DatasetError as exc:
            return problems + exc.problems, []
        if np.issubdtype(lab.dtype, np.floating):
            frac = lab[np.isfinite(lab)]
            nonint = int(np.count_nonzero(frac != np.round(frac))) + int(lab.size - frac.size)
            if nonint:
                ex = lab[(lab != np.round(lab)) | ~np.isfinite(lab)].ravel()[:3].tolist()
                problems.append(
                    Problem(
                        str(case.label),
                        "label voxels must be integers",
                        f"{nonint} non-integer voxels, e.g. {ex}",
                        "resample labels with nearest-neighbour interpolation and save as integers",
                    )
                )
                return problems, []
        vals = np.unique(lab).astype(np.int64)
        label_values = [int(v) for v in vals]
        if declared_labels is not None:
            undeclared = sorted(set(label_values) - set(declared_labels))
            if undeclared:
                problems.append(
                    Problem(
                        str(case.label),
                        f"label values must be declared in 'labels' {sorted(declared_labels)}",
                        f"undeclared values {undeclared}",
                        "add them to 'labels' in dataset.json or fix the label map",
                    )
                )
        if any(v < 0 for v in label_values):
            problems.append(
                Problem(
                    str(case.label),
                    "label values must be >= 0 (0 = background)",
                    str([v for v in label_values if v < 0]),
                    "relabel the map",
                )
            )
    return problems, label_values


def _first3(g: Geometry) -> Geometry:
    if g.dimension <= 3:
        return g
    n = g.dimension
    d = tuple(g.direction[r * n + c] for r in range(3) for c in range(3))
    return Geometry(g.size[:3], g.spacing[:3], g.origin[:3], d)


def _dataset_problems(ds: Dataset) -> list[Problem]:
    src = str(ds.source)
    out: list[Problem] = []
    if not ds.cases:
        out.append(
            Problem(
                src,
                "a dataset needs at least one training case",
                "0 cases",
                "list the cases in 'training' (MSD), put files in imagesTr (nnU-Net) or add CSV rows",
            )
        )
    dup = sorted(k for k, n in Counter(c.case_id for c in ds.cases).items() if n > 1)
    if dup:
        out.append(
            Problem(
                src,
                "subject/case IDs must be unique",
                f"duplicates {dup[:10]}",
                "give every case its own ID (use a PatientID column to group cases of one patient)",
            )
        )
    labeled = [c for c in ds.cases if c.label is not None]
    if labeled and len(labeled) != len(ds.cases):
        missing = [c.case_id for c in ds.cases if c.label is None][:10]
        out.append(
            Problem(
                src,
                "either every case has a label or none has",
                f"no label for {missing}",
                "add the missing labels or drop those cases",
            )
        )
    valued = [c for c in ds.cases if c.value is not None]
    if valued and len(valued) != len(ds.cases):
        missing = [c.case_id for c in ds.cases if c.value is None][:10]
        out.append(
            Problem(
                src,
                "either every case has a ValueToPredict or none has",
                f"missing for {missing}",
                "fill in the missing values",
            )
        )
    if ds.labels is not None and labeled and 0 not in ds.labels:
        out.append(
            Problem(
                src,
                "'labels' must declare the background value 0",
                str(sorted(ds.labels)),
                'add "0": "background"',
            )
        )
    if not ds.images_are_4d:
        bad = [c.case_id for c in ds.cases if len(c.images) != ds.n_channels]
        if bad:
            out.append(
                Problem(
                    src,
                    f"every case needs {ds.n_channels} channel image(s)",
                    f"cases {bad[:10]}",
                    "list one image per channel",
                )
            )
    return out


@dataclass(frozen=True)
class VerifyReport:
    n_cases: int
    label_values: tuple[int, ...]


def verify(
    ds: Dataset, *, workers: int = 1, tol: Tolerance | None = None, show_progress: bool = True
) -> VerifyReport:
    """Check a dataset; raise a :class:`DatasetError` listing every problem. Writes nothing."""
    tol = tol or Tolerance()
    problems = _dataset_problems(ds)
    declared = tuple(sorted(ds.labels)) if ds.labels is not None else None
    fn = partial(
        check_case,
        declared_labels=declared,
        images_are_4d=ds.images_are_4d,
        n_channels=ds.n_channels,
        tol=tol,
    )
    seen: set[int] = set()
    for case_problems, values in parallel_map(
        fn, ds.cases, workers=workers, description="verify", show_progress=show_progress
    ):
        problems += case_problems
        seen.update(values)
    if problems:
        raise DatasetError(problems, f"{len(problems)} problem(s) in {ds.source}")
    return VerifyReport(len(ds.cases), tuple(sorted(seen)))
