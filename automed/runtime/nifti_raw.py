"""NaN and infinite voxels of float NIfTI files as they are stored: ITK's NIfTI reader turns them into 0 as it
reads (nnU-Net's reader too), so a scan with NaN outside the brain was trained on, predicted and scored as if those
voxels were 0, and every check of non-finite voxels (verify, ``--nan-to``, metrics, explain) missed them. The
voxels are read again from the file (header, then data, with numpy and gzip only: the bundle ships this) and put
back where ITK wrote 0. Only float files are read again; other files cannot hold them."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import IO

import numpy as np
import SimpleITK as sitk

_FLOATS = {16: "f4", 64: "f8"}  # NIfTI datatype codes of float32 and float64
_CHUNK = 1 << 24  # voxels read at a time


def _header(fh: IO[bytes] | gzip.GzipFile) -> tuple[np.dtype, int, int] | None:
    """(dtype, voxel count, data offset) of a float NIfTI-1 or NIfTI-2 file; ``None`` for another datatype."""
    head = fh.read(540)
    for end in "<>":
        if len(head) >= 348 and struct.unpack(f"{end}i", head[:4])[0] == 348:
            dims = struct.unpack(f"{end}8h", head[40:56])
            code = struct.unpack(f"{end}h", head[70:72])[0]
            offset = (
                int(struct.unpack(f"{end}f", head[108:112])[0]) or 352
            )  # (a single file's data starts there)
        elif len(head) >= 540 and struct.unpack(f"{end}i", head[:4])[0] == 540:
            code = struct.unpack(f"{end}h", head[12:14])[0]
            dims = struct.unpack(f"{end}8q", head[16:80])
            offset = int(struct.unpack(f"{end}q", head[168:176])[0]) or 544
        else:
            continue
        if code not in _FLOATS or not 1 <= dims[0] <= 7:
            return None
        count = int(np.prod([max(int(d), 1) for d in dims[1 : dims[0] + 1]], dtype=np.int64))
        return np.dtype(f"{end}{_FLOATS[code]}"), count, offset
    return None


def non_finite_voxels(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The flat indices (storage order: x fastest, as ``GetArrayFromImage``'s C order) and stored values of the
    NaN and infinite voxels of a float NIfTI file; ``None`` when it has none (or is no float NIfTI)."""
    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return None
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        found = _header(fh)
        if found is None:
            return None
        dtype, count, offset = found
        fh.seek(offset)
        where, values, start = [], [], 0
        while start < count:
            chunk = np.frombuffer(fh.read(min(_CHUNK, count - start) * dtype.itemsize), dtype=dtype)
            if chunk.size == 0:
                break  # a short file: ITK's read has said so already
            bad = np.flatnonzero(~np.isfinite(chunk))
            where.append(bad + start)
            values.append(chunk[bad].astype(np.float64))
            start += chunk.size
    idx = np.concatenate(where) if where else np.zeros(0, np.int64)
    return (idx, np.concatenate(values)) if idx.size else None


def with_non_finite(path: Path, image: sitk.Image) -> sitk.Image:
    """``image`` (read from ``path`` by ITK) with the file's NaN and infinite voxels put back."""
    if image.GetNumberOfComponentsPerPixel() != 1 or "float" not in image.GetPixelIDTypeAsString():
        return image
    found = non_finite_voxels(path)
    if found is None:
        return image
    idx, values = found
    arr = sitk.GetArrayFromImage(image)
    if idx.max() >= arr.size:
        return image  # another layout than the file's storage order: left as ITK read it
    arr.reshape(-1)[idx] = values
    out = sitk.GetImageFromArray(arr, isVector=False)
    out.CopyInformation(image)
    return out
