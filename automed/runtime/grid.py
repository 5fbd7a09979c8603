"""The bundle's check that a case's channel files lie on one voxel grid (``automed predict`` applies the same rule
through ``automed.data.verify.channel_grid_problems``, with the same tolerances): stacked voxel by voxel, channels
of other sizes, spacings, origins or directions would pair intensities of different places of the body."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .io import image_io

# as automed.data.verify.Tolerance: spacing relative, origin in mm, direction absolute
SPACING_REL, ORIGIN_MM, DIRECTION_ABS = 1e-3, 1e-2, 1e-3


def _grid(path: Path) -> tuple[tuple[int, ...], np.ndarray, np.ndarray, np.ndarray]:
    """Size, spacing, origin and direction of the first three axes, from the header alone."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO(image_io(path))
    reader.ReadImageInformation()
    n = reader.GetDimension()
    k = min(n, 3)
    direction = np.asarray(reader.GetDirection(), dtype=np.float64).reshape(n, n)[:k, :k]
    return (
        tuple(int(s) for s in reader.GetSize()[:k]),
        np.asarray(reader.GetSpacing()[:k], dtype=np.float64),
        np.asarray(reader.GetOrigin()[:k], dtype=np.float64),
        direction.ravel(),
    )


def channel_grid_mismatch(paths: Sequence[Path]) -> str | None:
    """One line naming the first channel file of a case that is off the first file's grid (the rule, the values
    and the fix), or ``None``. A case of one file (or a DICOM series folder) has one grid."""
    files = [p for p in paths if not p.is_dir()]
    if len(files) < 2 or len(files) != len(paths):
        return None
    size, spacing, origin, direction = _grid(files[0])
    for other in files[1:]:
        o_size, o_spacing, o_origin, o_direction = _grid(other)
        found = None
        if o_size != size:
            found = ("size", size, o_size)
        elif np.any(np.abs(o_spacing - spacing) > SPACING_REL * np.maximum(spacing, 1e-9)):
            found = ("spacing", tuple(spacing), tuple(o_spacing))
        elif np.any(np.abs(o_origin - origin) > ORIGIN_MM):
            found = ("origin", tuple(origin), tuple(o_origin))
        elif o_direction.shape != direction.shape or np.any(np.abs(o_direction - direction) > DIRECTION_ABS):
            found = ("direction", tuple(direction), tuple(o_direction))
        if found is not None:
            what, want, got = found
            kind = int if what == "size" else float
            return (
                f"{other}: channel {what} must equal that of {files[0].name} {tuple(kind(v) for v in want)}, "
                f"found {tuple(kind(v) for v in got)}; resample {other.name} onto {files[0].name} (e.g. "
                "SimpleITK Resample with the reference image)"
            )
    return None
