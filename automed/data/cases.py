"""Reading one case (all channels + label) into arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from automed.data.dataset import Case
from automed.data.io import Geometry, read_image, read_sitk
from automed.errors import DatasetError


@dataclass
class CaseData:
    """Voxels of one case: ``channels`` is ``(C, z, y, x)`` float32, ``label`` is ``(z, y, x)`` or ``None``."""

    case_id: str
    channels: np.ndarray
    label: np.ndarray | None
    geometry: Geometry


def read_channels(case: Case, images_are_4d: bool) -> tuple[list[np.ndarray], Geometry]:
    """All channel arrays of a case and the geometry of its first channel."""
    if images_are_4d:
        import SimpleITK as sitk

        img = read_sitk(case.images[0])
        arr = sitk.GetArrayFromImage(img)
        if img.GetDimension() == 4:
            vols = [np.ascontiguousarray(arr[i]) for i in range(arr.shape[0])]
            size, sp = img.GetSize(), img.GetSpacing()
            org, d = img.GetOrigin(), img.GetDirection()
            geo = Geometry(
                tuple(int(v) for v in size[:3]),
                tuple(float(v) for v in sp[:3]),
                tuple(float(v) for v in org[:3]),
                tuple(float(d[r * 4 + c]) for r in range(3) for c in range(3)),
            )
            return vols, geo
    chans: list[np.ndarray] = []
    geo0: Geometry | None = None
    for p in case.images:
        arrs, geo = read_image(p)
        chans.extend(arrs)
        geo0 = geo0 or geo
    assert geo0 is not None
    return chans, geo0


def read_case(case: Case, images_are_4d: bool = False) -> CaseData:
    """Read a case; channels become float32, the label int16 (values are checked by ``verify``)."""
    chans, geo = read_channels(case, images_are_4d)
    shapes = {c.shape for c in chans}
    if len(shapes) != 1:
        raise DatasetError.single(
            case.images[0],
            "all channels of a case must have the same size",
            sorted(shapes),
            "run `automed verify` and resample the channels",
        )
    data = np.stack([c.astype(np.float32, copy=False) for c in chans])
    label = None
    if case.label is not None:
        larrs, _ = read_image(case.label)
        label = larrs[0].astype(np.int16, copy=False)
    return CaseData(case.case_id, data, label, geo)
