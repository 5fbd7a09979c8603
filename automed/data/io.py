"""Image reading and writing through SimpleITK.

Arrays are always 3D in numpy axis order ``(z, y, x)``, as ``SimpleITK.GetArrayFromImage`` returns them; a 2D image
becomes ``(1, y, x)``. Per-axis values in automed's artifacts (spacing, shape, patch size) follow that order.
:class:`Geometry` keeps SimpleITK's own ``(x, y, z)`` order so an output can be written back exactly.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from automed.data.paths import os_problem
from automed.errors import DatasetError
from automed.runtime.io import (
    DECOMPRESS,
    SUFFIXES,
    UTF8_FIX,
    UTF8_RULE,
    compressed_dicom,
    grey_palette_bmp,
    image_io,
    read_picture,
    read_series,
    series_volume_issue,
    shown,
    slice_headers,
    utf8,
    write_atomic,
)

# the endings automed reads (one DICOM file: an X-ray, a slice or a multi-frame volume; a series is a folder)
IMAGE_SUFFIXES = SUFFIXES
SUFFIXES_2D = (".png", ".tif", ".tiff", ".bmp", ".jpg")


@dataclass(frozen=True)
class Geometry:
    """Physical geometry of an image in SimpleITK order (x, y, z)."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @property
    def dimension(self) -> int:
        return len(self.size)

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """Spacing in array axis order, padded to 3 axes (a 2D image gets 1.0 out of plane)."""
        sp = tuple(float(s) for s in reversed(self.spacing))
        return (1.0, sp[0], sp[1]) if len(sp) == 2 else (sp[0], sp[1], sp[2])

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        sh = tuple(int(s) for s in reversed(self.size))
        return (1, sh[0], sh[1]) if len(sh) == 2 else (sh[0], sh[1], sh[2])

    def to_json(self) -> dict[str, list[float] | list[int]]:
        return {
            "size": list(self.size),
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": list(self.direction),
        }

    @classmethod
    def from_json(cls, d: dict[str, list[float] | list[int]]) -> Geometry:
        return cls(
            tuple(int(v) for v in d["size"]),
            tuple(float(v) for v in d["spacing"]),
            tuple(float(v) for v in d["origin"]),
            tuple(float(v) for v in d["direction"]),
        )


@dataclass(frozen=True)
class Header:
    geometry: Geometry
    pixel_type: str
    components: int


def has_image_suffix(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in IMAGE_SUFFIXES)


def _geometry(img: sitk.Image) -> Geometry:
    return Geometry(
        tuple(int(v) for v in img.GetSize()),
        tuple(float(v) for v in img.GetSpacing()),
        tuple(float(v) for v in img.GetOrigin()),
        tuple(float(v) for v in img.GetDirection()),
    )


def dicom_series_files(folder: Path) -> list[str]:
    """File names of the one DICOM series in ``folder``, sorted by slice position (GDCM; its warning about a folder
    without a series, printed by ITK to the console, is not shown: the error below says it)."""
    shown_before = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown_before)
    if not ids:
        raise DatasetError.single(
            folder,
            "an image folder must hold one DICOM series",
            "no DICOM series",
            "point to a folder of .dcm files of one series, or to an image file",
        )
    if len(ids) > 1:
        raise DatasetError.single(
            folder,
            "an image folder must hold exactly one DICOM series",
            f"{len(ids)} series: {', '.join(ids)}",
            "move each series into its own folder (a Siemens .IMA export keeps a study's series in one), or convert "
            f"them to NIfTI (`automed convert {shown(folder)} -o OUT`) and use those files",
        )
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), ids[0]))


def read_sitk(path: Path) -> sitk.Image:
    """Read an image file or a DICOM series folder, with a clear error for unreadable input."""
    try:
        return _read_sitk(path)
    except OSError as exc:  # a symlink loop or a folder without permission on the way
        raise DatasetError([os_problem(path, exc, "image")]) from exc


def _not_utf8(path: Path) -> DatasetError:
    return DatasetError.single(shown(path), UTF8_RULE, "another encoding", UTF8_FIX)


def _read_sitk(path: Path) -> sitk.Image:
    if not utf8(path):
        raise _not_utf8(path)
    if path.is_dir():
        files = dicom_series_files(path)
        heads = slice_headers(files)
        if issue := series_volume_issue(files, heads):  # as automed predict refuses it: one volume, no gap
            raise DatasetError.single(path, *issue)
        try:
            return read_series(files, heads)
        except RuntimeError as exc:
            if how := compressed_dicom(Path(files[0])):
                raise _undecodable(path, how, exc) from exc
            raise DatasetError.single(
                path, "a DICOM series must be readable", _first_line(exc), "check the series is complete"
            ) from exc
    if not path.exists():
        raise _missing(path)
    try:
        return read_picture(path)
    except RuntimeError as exc:
        raise _unreadable(path, exc) from exc


def read_header(path: Path) -> Header:
    """Geometry, pixel type and components without reading the voxels (files only; DICOM folders are read)."""
    try:
        return _read_header(path)
    except OSError as exc:
        raise DatasetError([os_problem(path, exc, "image")]) from exc


def _read_header(path: Path) -> Header:
    if not utf8(path):
        raise _not_utf8(path)
    if path.is_dir():
        img = read_sitk(path)
        return Header(_geometry(img), img.GetPixelIDTypeAsString(), img.GetNumberOfComponentsPerPixel())
    if not path.exists():
        raise _missing(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO(image_io(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise _unreadable(path, exc) from exc
    geo = Geometry(
        tuple(int(v) for v in reader.GetSize()),
        tuple(float(v) for v in reader.GetSpacing()),
        tuple(float(v) for v in reader.GetOrigin()),
        tuple(float(v) for v in reader.GetDirection()),
    )
    pixel = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    components = 1 if grey_palette_bmp(path) else int(reader.GetNumberOfComponents())
    if components == 1 and reader.GetNumberOfComponents() > 1:  # read as one channel (see read_picture)
        pixel = sitk.GetPixelIDValueAsString(sitk.sitkUInt8)
    return Header(geo, pixel, components)


def nifti_spatial_pixdim(path: Path) -> tuple[float, ...] | None:
    """The spatial voxel sizes (``pixdim[1..3]``, at most ``dim[0]`` of them) as stored in a NIfTI-1 or NIfTI-2
    header, or ``None`` for other files and unparsable headers. Only the header is read (348 or 540 bytes).

    ITK does not report these as stored: it takes the absolute value of a negative one when reading the voxels
    (mirroring the image) and replaces zero or NaN by 1, so a broken spacing is only visible here."""
    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return None
    try:
        if name.endswith(".gz"):
            with gzip.open(path, "rb") as gz:
                raw = gz.read(540)
        else:
            with path.open("rb") as fh:
                raw = fh.read(540)
    except (OSError, EOFError, zlib.error):
        return None
    for endian in "<>":
        if len(raw) >= 348 and struct.unpack(endian + "i", raw[:4])[0] == 348:  # NIfTI-1
            ndim = int(struct.unpack(endian + "h", raw[40:42])[0])
            pixdim = struct.unpack(endian + "8f", raw[76:108])
            break
        if len(raw) >= 540 and struct.unpack(endian + "i", raw[:4])[0] == 540:  # NIfTI-2
            ndim = int(struct.unpack(endian + "q", raw[16:24])[0])
            pixdim = struct.unpack(endian + "8d", raw[104:168])
            break
    else:
        return None
    return tuple(float(v) for v in pixdim[1 : 1 + max(1, min(ndim, 3))])


def _missing(path: Path) -> DatasetError:
    return DatasetError.single(
        path, "every listed image must exist", "missing file", "fix the path or add it"
    )


def _undecodable(path: Path, how: str, exc: Exception) -> DatasetError:
    return DatasetError.single(
        path,
        "DICOM pixels must be uncompressed or in a compression SimpleITK decodes",
        f"{how}: {_first_line(exc)}",
        DECOMPRESS,
    )


def _unreadable(path: Path, exc: Exception) -> DatasetError:
    if how := compressed_dicom(path):
        return _undecodable(path, how, exc)
    photo = path.suffix.lower() in (".png", ".tif", ".tiff", ".jpg", ".jpeg")
    return DatasetError.single(
        path,
        "images must be readable by SimpleITK (NIfTI, NRRD, MHA, DICOM, PNG, TIFF)",
        _first_line(exc),
        # SimpleITK cannot read a gray + alpha PNG at all: the likeliest cause of an unreadable picture
        "save it as grayscale or RGB without an alpha channel (e.g. PIL: Image.open(f).convert('L') or 'RGB'), "
        "or replace the corrupt file"
        if photo
        else "re-export the file in one of these formats or replace the corrupt file",
    )


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def image_to_arrays(img: sitk.Image) -> list[np.ndarray]:
    """Voxels as one ``(z, y, x)`` array per component (an RGB PNG gives three)."""
    arr = sitk.GetArrayFromImage(img)
    ncomp = img.GetNumberOfComponentsPerPixel()
    chans = [arr[..., c] for c in range(ncomp)] if ncomp > 1 else [arr]
    out = []
    for a in chans:
        if a.ndim == 2:
            a = a[None]
        out.append(np.ascontiguousarray(a))
    return out


def read_image(path: Path) -> tuple[list[np.ndarray], Geometry]:
    """Read ``path`` as a list of ``(z, y, x)`` arrays (one per component) and its geometry."""
    img = read_sitk(path)
    return image_to_arrays(img), _geometry(img)


def _sitk_image(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    arr = array[0] if geometry.dimension == 2 and array.ndim == 3 else array
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(geometry.spacing)
    img.SetOrigin(geometry.origin)
    img.SetDirection(geometry.direction)
    return img


def write_image(array: np.ndarray, geometry: Geometry, path: Path) -> None:
    """Write a ``(z, y, x)`` array with ``geometry`` (2D geometries drop the leading axis)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(_sitk_image(array, geometry), str(path), useCompression=True)


def write_image_atomic(array: np.ndarray, geometry: Geometry, path: Path) -> list[Path]:
    """:func:`write_image` with no half-written file under a final name (a killed run); the files written (a
    ``.mhd`` header and its data file)."""
    return write_atomic(_sitk_image(array, geometry), path)
