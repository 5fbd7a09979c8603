"""Per-file safety rules of ``automed verify`` (issue 13): label values automed can store, sane image headers
(spacing, size) checked before any voxel is read, the same image under two case IDs, and DICOM Segmentations given
as images or label maps.

Each rule returns :class:`~automed.errors.Problem` s (file + rule + value + fix); :mod:`automed.data.verify` calls
them and reports everything together.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from automed.data.io import Header, nifti_spatial_pixdim
from automed.data.schema import Case
from automed.errors import Problem
from automed.runtime.io import NOT_IMAGES, VOXEL_MAGNITUDE, not_an_image, sop_class

# Label maps are held as int16 from reading a case on (automed.data.cases.read_case, the preprocessing lookup table,
# the label values of a bundle): a larger value wraps around (40000 becomes -25536).
LABEL_MAX = int(np.iinfo(np.int16).max)
# Preprocessing one case holds about 40 bytes per voxel at its peak: the image as read and as a numpy copy, the
# float32 channel stack, the label as read, as int16 and as the int64 index of the label lookup, and the copies of
# cropping, normalisation and resampling. 500 million voxels (e.g. 1000 x 1000 x 500, larger than a whole-body CT
# at 1 mm) thus need about 20 GB: what a 24 GB machine can spare for one worker. Larger images need a larger
# machine (pass max_voxels) or cropping/downsampling first.
DEFAULT_MAX_VOXELS = 500_000_000
MAX_VOXELS_MEMORY = "about 40 bytes per voxel in preprocessing, so 20 GB for the default"


def voxel_problem(path: Path, a: np.ndarray) -> Problem | None:
    """NaN/Inf, or a magnitude no intensity has, in one channel's voxels (floating types only)."""
    if not np.issubdtype(a.dtype, np.floating):
        return None
    bad = int(np.count_nonzero(~np.isfinite(a)))
    if bad:
        return Problem(str(path), "image voxels must be finite numbers", f"{bad} NaN/Inf voxels",
                       "replace NaN/Inf (e.g. with 0) before training")  # fmt: skip
    huge = np.abs(a) > VOXEL_MAGNITUDE
    if n := int(np.count_nonzero(huge)):
        ex = sorted({float(v) for v in a[huge].ravel()[:1000]}, key=abs, reverse=True)[:2]
        return Problem(
            str(path),
            f"image voxels must be intensities (|value| <= {VOXEL_MAGNITUDE:g})",
            f"{n} voxels beyond it, e.g. {', '.join(f'{v:g}' for v in ex)} (a 'no data' marker?)",
            "replace them with the background intensity (e.g. the lowest of the other voxels) before training",
        )
    return None


def label_range_problem(path: Path, values: list[int]) -> Problem | None:
    """Label values found in a label map that do not fit int16."""
    big = [v for v in values if v > LABEL_MAX]
    if not big:
        return None
    return Problem(
        str(path),
        f"label values must be <= {LABEL_MAX} (automed stores label maps as int16)",
        f"values {big[:10]} (the largest allowed is {LABEL_MAX})",
        f"relabel the map to values 0..{LABEL_MAX} (e.g. consecutive 0, 1, 2, ...) and declare them in 'labels'",
    )


def segmentation_problem(path: Path, what: str) -> Problem | None:
    """A DICOM Segmentation (SOP class 1.2.840.10008.5.1.4.1.1.66.4, or a label map segmentation) given as a
    training ``what`` (``"image"`` or ``"label"``), or a series folder holding one: SimpleITK reads its frames, which
    are segments, as slices (GDCM stacks them on a wrong grid): verify passed one as an image, and refused one as a
    label for its spacing, with a fix that did not apply. Only the files' meta headers are read (4 kB each)."""
    try:
        files = sorted(f for f in path.iterdir() if f.is_file()) if path.is_dir() else [path]
        found = next(((f, k) for f in files if (k := not_an_image(f) or "").endswith("Segmentation")), None)
    except OSError:
        return None  # reading the header reports it
    if found is None:
        return None
    f, kind = found
    uid = next(u for u, name in NOT_IMAGES.items() if kind == f"a DICOM {name}")
    if any((c := sop_class(g)) is not None and c not in NOT_IMAGES for g in files if g != f):
        return Problem(  # a series folder with a segmentation among its slices: the folder is the image
            str(path),
            f"a DICOM series folder holds the slices of one {what}; a DICOM Segmentation among them is not a slice",
            f"{kind} (SOP class {uid}): {f.name}",
            f"move {f.name} out of the series folder (as the case's label, converted to a label map on this "
            "series' grid, e.g. with highdicom.seg.segread(file).get_volume())",
        )
    read = "SimpleITK reads its frames, one per segment and slice, as the slices of a volume on a wrong grid"
    convert = (
        "converted to a label map on the grid of the series it was drawn on (e.g. NIfTI from highdicom: "
        "highdicom.seg.segread(file).get_volume(); automed convert converts image series, not segmentations)"
    )
    return Problem(
        str(path),
        f"a training image must picture the body; a DICOM Segmentation is a label, not an image ({read})"
        if what == "image"
        else f"a training label must be a label map on its image's voxel grid, not a DICOM Segmentation ({read})",
        f"{kind} (SOP class {uid})" + (f": {f.name}" if f != path else ""),
        f"give the series it was drawn on as the case's image, and this segmentation, {convert}, as its label"
        if what == "image"
        else f"give this segmentation, {convert}, as the case's label",
    )


def header_problems(path: Path, header: Header, what: str, max_voxels: int) -> list[Problem]:
    """Spacing and size problems of one image or label header, found before any voxel is read."""
    out: list[Problem] = []
    g = header.geometry
    spatial = g.spacing[: min(g.dimension, 3)]
    stored = nifti_spatial_pixdim(path)
    for found in (spatial, stored):
        if found is not None and not all(math.isfinite(s) and s > 0 for s in found):
            out.append(
                Problem(
                    str(path),
                    f"{what} spacing must be finite and > 0 on every axis (ITK would silently mirror a negative "
                    "spacing or replace a zero or NaN one by 1)",
                    f"spacing {tuple(found)}" + (" (NIfTI pixdim)" if found is stored else ""),
                    "write the true voxel size (positive, in mm) into the header, e.g. with SimpleITK SetSpacing; "
                    "a flipped axis belongs in the direction matrix",
                )
            )
            break
    n = math.prod(g.size) * max(1, header.components)
    if n > max_voxels:
        out.append(
            Problem(
                str(path),
                f"each {what} may hold at most {max_voxels:,} voxels (verify's max_voxels; the default "
                f"{DEFAULT_MAX_VOXELS:,} is sized for a 24 GB machine: {MAX_VOXELS_MEMORY})",
                f"{n:,} voxels (size {g.size}, {header.components} component(s))",
                "crop or downsample the image first, or on a machine with the memory pass a larger limit "
                "(`--max-voxels N` of automed verify, plan, train and sweep, or max_voxels= in the Python API)",
            )
        )
    return out


def content_hash(arr: np.ndarray) -> str:
    """A digest of an array's voxels, shape and type (two cases with equal digests hold the same image), prefixed
    ``blank:`` when every voxel has the same value (such images are equal by nature, see
    :func:`duplicate_content_problems`)."""
    a = np.ascontiguousarray(arr)
    h = hashlib.blake2b(f"{a.dtype.str}{a.shape}".encode(), digest_size=16)
    h.update(a.data)
    blank = a.size == 0 or bool(a.min() == a.max())
    return ("blank:" if blank else "") + h.hexdigest()


_BLANK_FIX = "check that these are the right files: a constant image holds nothing to learn from"


def duplicate_content_problems(hashed: list[tuple[Case, str]]) -> tuple[list[Problem], list[Problem]]:
    """Errors and warnings about cases of different subjects whose first channel file holds identical voxels in
    every component (``hashed``: each case with its :func:`content_hash`).

    The same image would be trained on and validated against in cross-validation: an error. Cases of one subject
    (CSV ``PatientID``) stay in one fold and may share an image (e.g. two raters' labels). Blank (constant) images
    are only a warning, each of them, alone or not: they are equal whoever they belong to and carry nothing to leak,
    but rarely the right files (a single one had gone through without a word, its label map trained on)."""
    groups: defaultdict[str, list[Case]] = defaultdict(list)
    for case, digest in hashed:
        groups[digest].append(case)
    errors: list[Problem] = []
    warnings: list[Problem] = []
    for digest, cases in groups.items():
        blank = digest.startswith("blank:")
        if len({c.subject for c in cases}) < 2:
            if blank:
                warnings += [
                    Problem(
                        str(c.images[0]),
                        "every case should hold an image to learn from",
                        f"case {c.case_id!r} is blank (every voxel the same value)",
                        _BLANK_FIX,
                    )
                    for c in cases
                ]
            continue
        first, *rest = cases
        for c in rest:
            (warnings if blank else errors).append(
                Problem(
                    str(c.images[0]),
                    "every case should hold its own image; these are blank (every voxel the same value)"
                    if blank
                    else "every case must hold its own image: the same image under two case IDs leaks between "
                    "cross-validation folds",
                    f"case {c.case_id!r} has the same voxels as case {first.case_id!r} ({first.images[0]})",
                    _BLANK_FIX
                    if blank
                    else "remove the duplicate case, or (CSV) give both the same PatientID so they stay in one fold",
                )
            )
    return errors, warnings
