"""``automed verify``: every problem of a dataset in one pass, each as file + rule + value + fix."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from automed.data.dataset import Case, Dataset
from automed.data.io import SUFFIXES_2D, Geometry, Header, image_to_arrays, read_header, read_sitk
from automed.data.paths import access_problem
from automed.data.verify_dataset import DEFAULT_FOLDS, dataset_problems, dataset_warnings, label_presence
from automed.data.verify_rules import (
    DEFAULT_MAX_VOXELS,
    content_hash,
    duplicate_content_problems,
    header_problems,
    label_range_problem,
    segmentation_problem,
    voxel_problem,
)
from automed.errors import DatasetError, Problem
from automed.parallel import parallel_map
from automed.runtime.grid import DIRECTION_ABS, ORIGIN_MM, SPACING_REL

log = logging.getLogger("automed")


@dataclass(frozen=True)
class Tolerance:
    """How far channel and label geometries may differ (spacing relative, origin in mm, direction absolute)."""

    spacing_rel: float = SPACING_REL  # the bundle's channel check (runtime/grid.py) uses the same numbers
    origin_mm: float = ORIGIN_MM
    direction_abs: float = DIRECTION_ABS


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


def channel_grid_problems(images: Sequence[Path], tol: Tolerance | None = None) -> list[Problem]:
    """The channel files of one case (``CASE_0000``, ``CASE_0001``, ... in order) that are not on the first one's
    voxel grid: stacked voxel by voxel, channels of other sizes, spacings, origins or directions pair intensities of
    different places of the body. The rule ``verify`` applies to a training case, for the inputs of ``predict``
    (headers only; unreadable files are left to the reading that follows)."""
    if len(images) < 2:  # one file (a 4D, RGB or one-channel image) is one grid
        return []
    grids: list[tuple[Path, Geometry]] = []
    for p in images:
        try:
            grids.append((p, _first3(read_header(p).geometry)))
        except DatasetError:
            return []
    (ref_path, ref), others = grids[0], grids[1:]
    return [
        q for p, g in others for q in _geometry_problems(ref_path, ref, p, g, "channel", tol or Tolerance())
    ]


def check_channel_grids(cases: Iterable[Sequence[Path]]) -> None:
    """Refuse, listing them all, the channel files of any case (one sequence of files each) off its first file's
    grid: what ``predict`` and ``explain`` check before anything is written."""
    off_grid = [q for images in cases for q in channel_grid_problems(images)]
    if off_grid:
        raise DatasetError(off_grid, "the channels of a case must lie on one voxel grid")


def _header_or_problem(path: Path, problems: list[Problem], what: str = "image") -> Header | None:
    if (seg := segmentation_problem(path, what)) is not None:
        problems.append(seg)
        return None
    try:
        return read_header(path)
    except DatasetError as exc:
        problems.extend(exc.problems)
        return None


@dataclass(frozen=True)
class CaseCheck:
    problems: list[Problem]
    label_values: list[int]
    n_channels: int  # channels this case yields (components of RGB images and 4D volumes counted)
    content: str | None = None  # digest of the first channel's voxels (the same image under two IDs)
    flat: bool | None = None  # 2D (a picture, or a volume of one slice); None: no readable header
    # in-plane spacing of a 2D case's first image, None for a picture format without one (PNG, TIFF, ...: 1 mm)
    plane_spacing: float | None = None


def _image_problems(p: Path, h: Header, images_are_4d: bool, n_channels: int) -> list[Problem]:
    is_2d_rgb = h.geometry.dimension == 2 and h.components == 3
    if h.geometry.dimension == 2 and h.components in (2, 4):  # the alpha would be trained as a channel
        return [
            Problem(
                str(p),
                "a 2D image must be grayscale or RGB, without an alpha channel",
                f"{h.components} components ({'gray + alpha' if h.components == 2 else 'RGBA'})",
                "save it without the alpha channel (e.g. PIL: Image.open(f).convert('RGB') or 'L')",
            )
        ]
    if images_are_4d:
        if h.geometry.dimension != 4 and n_channels > 1:
            return [
                Problem(
                    str(p),
                    f"dataset.json declares 4D images with {n_channels} channels",
                    f"{h.geometry.dimension}D image",
                    "store all channels in one 4D file",
                )
            ]
        if h.geometry.dimension == 4 and h.geometry.size[3] != n_channels:
            return [
                Problem(
                    str(p),
                    f"the 4D image must hold {n_channels} channels (dataset.json)",
                    f"{h.geometry.size[3]} volumes",
                    "fix 'modality' or the file",
                )
            ]
        return []
    if h.geometry.dimension > 3 or (h.components > 1 and not is_2d_rgb):
        return [
            Problem(
                str(p),
                "images must be 3D (or 2D); a 4D image needs tensorImageSize 4D",
                f"{h.geometry.dimension}D image, {h.components} component(s), size {h.geometry.size}",
                "split the volumes into one file per channel (nnU-Net _0000, _0001 naming) "
                'or declare "tensorImageSize": "4D" in an MSD dataset.json',
            )
        ]
    return []


def _label_voxel_problems(path: Path, declared: tuple[int, ...] | None) -> tuple[list[Problem], list[int]]:
    try:
        lab = image_to_arrays(read_sitk(path))[0]
    except DatasetError as exc:
        return exc.problems, []
    out: list[Problem] = []
    if np.issubdtype(lab.dtype, np.floating):
        bad = (lab != np.round(lab)) | ~np.isfinite(lab)
        n_bad = int(np.count_nonzero(bad))
        if n_bad:
            ex = lab[bad].ravel()[:3].tolist()
            return [
                Problem(
                    str(path),
                    "label voxels must be integers",
                    f"{n_bad} non-integer voxels, e.g. {ex}",
                    "resample labels with nearest-neighbour interpolation and save as integers",
                )
            ], []
    values = [int(v) for v in np.unique(lab).astype(np.int64)]
    if declared is not None:
        undeclared = sorted(set(values) - set(declared))
        if undeclared:
            out.append(
                Problem(
                    str(path),
                    f"label values must be declared in 'labels' {sorted(declared)}",
                    f"undeclared values {undeclared}",
                    "add them to 'labels' in dataset.json or fix the label map",
                )
            )
    negative = [v for v in values if v < 0]
    if negative:
        out.append(
            Problem(str(path), "label values must be >= 0 (0 = background)", str(negative), "relabel the map")
        )
    if too_big := label_range_problem(path, values):
        out.append(too_big)
    return out, values


def check_case(
    case: Case,
    *,
    declared_labels: tuple[int, ...] | None,
    images_are_4d: bool,
    n_channels: int,
    tol: Tolerance,
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> CaseCheck:
    """Check one case: every image and label problem it has, the label values it holds, its channel count.

    Headers come first (existence, readability, spacing, size); voxels are read only when they are sound."""
    problems: list[Problem] = []
    headers: list[tuple[Path, Header]] = []
    for p in case.images:
        if (missing := access_problem(p, "image")) is not None:
            problems.append(missing)
            continue
        h = _header_or_problem(p, problems)
        if h is not None:
            headers.append((p, h))
            problems += header_problems(p, h, "image", max_voxels)
    image_ok = not problems and len(headers) == len(case.images)
    for p, h in headers:
        problems += _image_problems(p, h, images_are_4d, n_channels)
    image_ok = image_ok and not problems
    content: str | None = None
    g0 = headers[0][1].geometry if headers else None
    flat = None if g0 is None else g0.dimension == 2 or g0.size[2] == 1
    plane = None
    if flat and not headers[0][0].name.lower().endswith(SUFFIXES_2D):
        plane = min(headers[0][1].geometry.spacing_zyx[1:])
    channels = 0
    for _, h in headers:
        channels += h.geometry.size[3] if h.geometry.dimension == 4 else h.components
    if image_ok:
        ref_path, ref = headers[0]
        ref3 = _first3(ref.geometry)
        for p, h in headers[1:]:
            problems += _geometry_problems(ref_path, ref3, p, _first3(h.geometry), "channel", tol)
        for p, _ in headers:
            try:
                arrs = image_to_arrays(read_sitk(p))
            except DatasetError as exc:
                problems += exc.problems
                continue
            # every component of the first file: an RGB picture's red channel alone may be empty (a green stain)
            content = content or content_hash(arrs[0] if len(arrs) == 1 else np.stack(arrs))
            for a in arrs:
                if problem := voxel_problem(p, a):
                    problems.append(problem)
                    break
    label_values: list[int] = []
    if case.label is not None:
        if (missing := access_problem(case.label, "label")) is not None:
            return CaseCheck([*problems, missing], [], channels, content, flat)
        # a column mix-up (realpath: a symlink loop is reported by the image's own checks, never raised here)
        if same := [p for p in case.images if os.path.realpath(p) == os.path.realpath(case.label)]:
            rule = "a case's label map is its own file, not one of its images"
            fix = "point Label at the label map (a CSV's columns mixed up?)"
            problems.append(Problem(str(case.label), rule, f"the image {same[0]} given as the label", fix))
            return CaseCheck(problems, [], channels, content, flat)
        lh = _header_or_problem(case.label, problems, "label")
        if lh is None:
            return CaseCheck(problems, [], channels, content, flat)
        if bad_header := header_problems(case.label, lh, "label", max_voxels):
            return CaseCheck(problems + bad_header, [], channels, content, flat)
        if lh.components > 1 or lh.geometry.dimension > 3:
            problems.append(
                Problem(
                    str(case.label),
                    "a label map must be one 3D (or 2D) integer image",
                    f"{lh.geometry.dimension}D, {lh.components} component(s)",
                    "store one integer label per voxel",
                )
            )
            return CaseCheck(problems, [], channels, content, flat)
        if image_ok:
            problems += _geometry_problems(
                headers[0][0], _first3(headers[0][1].geometry), case.label, lh.geometry, "label", tol
            )
        label_problems, label_values = _label_voxel_problems(case.label, declared_labels)
        problems += label_problems
    return CaseCheck(problems, label_values, channels, content, flat, plane)


def _spacing_mix_warnings(ds: Dataset, results: list[CaseCheck]) -> list[Problem]:
    """2D pictures without a pixel spacing (read as 1 mm) beside images whose spacing is far from 1 mm: resampling
    to one spacing shows the two kinds to the network at different scales."""
    flat = [(c.case_id, r.plane_spacing) for c, r in zip(ds.cases, results, strict=True) if r.flat]
    pictures = [cid for cid, sp in flat if sp is None]
    far = [(cid, sp) for cid, sp in flat if sp is not None and not 0.8 <= sp <= 1.25]
    if not pictures or not far:
        return []
    return [
        Problem(
            str(ds.source),
            "2D pictures without a pixel spacing (PNG, TIFF, JPEG, BMP: read as 1 mm) and images that carry one "
            "(DICOM, NIfTI) are resampled to one spacing, so the two kinds reach the network at different scales",
            f"{len(pictures)} picture(s) (e.g. {pictures[:3]}) and {len(far)} image(s) with another spacing (e.g. "
            + ", ".join(f"{cid}: {sp:g} mm" for cid, sp in far[:3])
            + ")",
            "convert every image to one format (the pictures to NIfTI with their real pixel spacing, or the others "
            "to pictures)",
        )
    ]


def _first3(g: Geometry) -> Geometry:
    if g.dimension <= 3:
        return g
    n = g.dimension
    d = tuple(g.direction[r * n + c] for r in range(3) for c in range(3))
    return Geometry(g.size[:3], g.spacing[:3], g.origin[:3], d)


@dataclass(frozen=True)
class VerifyReport:
    n_cases: int
    label_values: tuple[int, ...]
    warnings: tuple[Problem, ...] = ()
    targets: str = ""  # what the cases are to be trained on, in words


def targets_in_words(ds: Dataset, label_values: tuple[int, ...]) -> str:
    """What ``ds``'s cases are to be trained on, in words (verify's summary line)."""
    if label_values:
        return f"label values {list(label_values)}"
    if not any(c.label is not None or c.value is not None for c in ds.cases):
        return "images only (no label maps, no ValueToPredict): enough to check or predict, not to train"
    if ds.task_type == "classification":
        where = "class folders" if ds.layout == "folders" else "ValueToPredict"
        return f"{len(ds.labels or {})} classes from {where}"
    return f"{ds.task_type} targets from ValueToPredict"


def verify(
    ds: Dataset,
    *,
    workers: int = 1,
    tol: Tolerance | None = None,
    show_progress: bool = True,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    folds: int = DEFAULT_FOLDS,
) -> VerifyReport:
    """Check a dataset; raise a :class:`DatasetError` listing every problem. Writes nothing. ``folds``: those the
    dataset is to be trained with (a class with fewer cases is warned about).

    ``max_voxels`` bounds the voxels of one image file (all components counted), checked from its header before
    any voxel is read: a tiny compressed file can claim a huge image. The default, 500 million, is sized for a
    24 GB machine: preprocessing holds about 40 bytes per voxel at its peak (the image as read and as a numpy copy,
    float32 channels, the label as int16 and as an int64 lookup index, cropping and resampling copies), so about
    20 GB for one image of that size; raise it on a larger machine."""
    tol = tol or Tolerance()
    problems = dataset_problems(ds)
    declared = tuple(sorted(ds.labels)) if ds.labels is not None else None
    fn = partial(
        check_case,
        declared_labels=declared,
        images_are_4d=ds.images_are_4d,
        n_channels=ds.n_channels,
        tol=tol,
        max_voxels=max_voxels,
    )
    seen: set[int] = set()
    hashed: list[tuple[Case, str]] = []
    counts: dict[int, list[str]] = {}
    by_flat: dict[bool, list[str]] = {}
    results = list(
        parallel_map(fn, ds.cases, workers=workers, description="verify", show_progress=show_progress)
    )
    for case, res in zip(ds.cases, results, strict=True):
        problems += res.problems
        seen.update(res.label_values)
        if res.content is not None:
            hashed.append((case, res.content))
        if not res.problems:
            counts.setdefault(res.n_channels, []).append(case.case_id)
        if res.flat is not None:
            by_flat.setdefault(res.flat, []).append(case.case_id)
    if len(counts) > 1:
        common = max(counts, key=lambda k: len(counts[k]))
        odd = {k: v[:5] for k, v in counts.items() if k != common}
        problems.append(
            Problem(
                str(ds.source),
                f"every case must give the same number of channels ({common})",
                f"other counts: {odd}",
                "convert RGB images to grayscale (or all to RGB) so the cases agree",
            )
        )
    if len(by_flat) > 1:  # a picture among volumes would train as a volume of one slice
        problems.append(
            Problem(
                str(ds.source),
                "every case must be 2D (pictures, volumes of one slice) or every case 3D",
                f"{len(by_flat[True])} 2D case(s) (e.g. {by_flat[True][:5]}) and {len(by_flat[False])} 3D "
                f"(e.g. {by_flat[False][:5]})",
                "train the 2D and the 3D images as two datasets, or remove the odd ones",
            )
        )
    duplicates, warns = duplicate_content_problems(hashed)
    problems += duplicates
    warns += _spacing_mix_warnings(ds, results)
    warns += dataset_warnings(ds, folds)
    if not problems:
        errors, absent = label_presence(ds, seen)
        problems += errors
        warns += absent
    if problems:
        raise DatasetError(problems, f"{len(problems)} problem(s) in {ds.source}")
    for w in warns:
        log.warning("warning: %s", w)
    values = tuple(sorted(seen))
    return VerifyReport(len(ds.cases), values, tuple(warns), targets_in_words(ds, values))
