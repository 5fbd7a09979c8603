"""Reading a case's images and writing label maps for the standalone bundle (SimpleITK only); which files of an
input folder are cases is :mod:`.inputs`'s.

Outputs: ``CASE`` + the input's ending (``.nii.gz`` for DICOM and 2D formats), like ``automed predict``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .nifti_raw import with_non_finite

# the image endings automed reads (``automed.data.io.IMAGE_SUFFIXES`` is this tuple: the bundle reads what training
# reads); 2D pictures and single DICOM files give ``.nii.gz`` outputs. DICOM files end in ``.dcm``, ``.IMA`` as
# Siemens scanners export them (SUBJ.MR.HEAD.0001.0001.2026.IMA) or ``.dicom`` (VinDr-CXR's X-rays); endings are
# matched ignoring letter case
DICOM_SUFFIXES = (".dcm", ".ima", ".dicom")
SUFFIXES = (
    ".nii.gz",
    ".nii",
    ".nrrd",
    ".nhdr",
    ".mha",
    ".mhd",
    ".png",
    ".tif",
    ".tiff",
    ".bmp",
    ".jpg",
    *DICOM_SUFFIXES,
)
_TO_NIFTI = (".png", ".tif", ".tiff", ".bmp", ".jpg", *DICOM_SUFFIXES)
CHANNEL = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})$")


@dataclass(frozen=True)
class Case:
    case_id: str
    paths: tuple[Path, ...]
    suffix: str


def split_suffix(name: str) -> tuple[str, str] | None:
    for s in SUFFIXES:
        if name.lower().endswith(s):
            return name[: -len(s)], ".nii.gz" if s in _TO_NIFTI else s
    return None


def utf8(path: Path) -> bool:
    """Whether ``path`` is UTF-8 text: SimpleITK aborts the whole process (a C++ ``terminate``, no Python error) when
    given a name that is not, such as a Latin-1 ``caf\\xe9.nii.gz`` from an old PACS or a Windows share."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(path: Path | str) -> str:
    """``path`` printable whatever its bytes (a name that is not UTF-8 shows its bytes as ``\\xe9``)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


# no measured intensity comes near it; a "no data" marker (float32's lowest, -3.4e38) or a corrupt voxel does, and
# normalisation statistics overflow on it (a NaN image, predicted without a word, or trained to a null loss)
VOXEL_MAGNITUDE = 1e15
UNUSABLE = f"NaN, infinite or beyond +-{VOXEL_MAGNITUDE:g} (a 'no data' marker?)"


def unusable_voxels(a: np.ndarray) -> np.ndarray:
    """Where ``a`` holds no intensity: NaN, infinite, or a magnitude beyond :data:`VOXEL_MAGNITUDE`."""
    with np.errstate(invalid="ignore"):
        bad: np.ndarray = ~np.isfinite(a) | (np.abs(a) > VOXEL_MAGNITUDE)
    return bad


UTF8_RULE = "file names must be UTF-8 (SimpleITK opens no others)"
UTF8_FIX = "rename them (convmv -f latin1 -t utf8 -r --notest FOLDER renames a folder's Latin-1 names)"


_CODECS = {
    **dict.fromkeys(("50", "51", "57", "70"), "JPEG"),
    **dict.fromkeys(("80", "81"), "JPEG-LS"),
    **dict.fromkeys(("90", "91", "92", "93"), "JPEG 2000"),
    **dict.fromkeys(("100", "101", "102", "103", "104", "105", "106", "107", "108"), "video"),
    **dict.fromkeys(("110", "111", "112"), "JPEG XL"),
    **dict.fromkeys(("201", "202", "203"), "HTJ2K"),
}
DECOMPRESS = "decompress (gdcmconv --raw IN OUT, or dcmdjpeg IN OUT) or convert to NIfTI"


def _meta(path: Path, element: bytes) -> str | None:
    """One UID of a DICOM file's meta header (group 0002, always explicit VR little endian), by its element number
    (little endian: ``b"\\x10\\x00"`` for (0002,0010)); ``None`` for other files or when absent."""
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    at = 132
    while head[128:132] == b"DICM" and at + 8 <= len(head) and head[at : at + 2] == b"\x02\x00":
        long = head[at + 4 : at + 6] in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN")
        size = int.from_bytes(head[at + 8 : at + 12] if long else head[at + 6 : at + 8], "little")
        start = at + (12 if long else 8)
        if head[at + 2 : at + 4] == element:
            return head[start : start + size].rstrip(b"\x00 ").decode("ascii", "replace")
        at = start + size
    return None


def compressed_dicom(path: Path) -> str | None:
    """What compresses a DICOM file's pixels, from its meta header's transfer syntax (0002,0010):
    ``"transfer syntax 1.2.840.10008.1.2.4.201 (HTJ2K)"``; ``None`` for uncompressed DICOM and other files. Said
    when SimpleITK cannot read the file: the fix is to decompress it, not to replace a corrupt file."""
    uid = _meta(path, b"\x10\x00")
    if uid is not None and (uid.startswith("1.2.840.10008.1.2.4.") or uid == "1.2.840.10008.1.2.5"):
        codec = "RLE" if uid.endswith(".5") else _CODECS.get(uid.rsplit(".", 1)[1], "compressed")
        return f"transfer syntax {uid} ({codec})"
    return None


# DICOM objects with pixels that picture no body: a segmentation (predict's own CASE.seg.dcm, or one a PACS export
# holds beside its images) and a radiotherapy dose grid; by their SOP class (the meta header's (0002,0002))
NOT_IMAGES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation",
    "1.2.840.10008.5.1.4.1.1.66.7": "Label Map Segmentation",
    "1.2.840.10008.5.1.4.1.1.481.2": "RT Dose",
}


def sop_class(path: Path) -> str | None:
    """A DICOM file's SOP class UID from its meta header (0002,0002); ``None`` for other files."""
    return _meta(path, b"\x02\x00")


def not_an_image(path: Path) -> str | None:
    """``"a DICOM Segmentation"`` (and the like, :data:`NOT_IMAGES`) for a DICOM file that SimpleITK would read as
    a picture but holds none: no case to predict; ``None`` for images and other files."""
    kind = NOT_IMAGES.get(sop_class(path) or "")
    return f"a DICOM {kind}" if kind else None


def _dicom_series(folder: Path) -> list[str]:
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def slice_headers(files: list[str]) -> list[sitk.ImageFileReader]:
    """Each file's header (read once for the checks that need them: :func:`series_volume_problem`,
    :func:`read_series`), in order, up to the first file that cannot be read (reading the series reports it)."""
    heads = []
    for f in files:
        head = sitk.ImageFileReader()
        head.SetFileName(f)
        try:
            head.ReadImageInformation()
        except RuntimeError:
            break
        heads.append(head)
    return heads


def read_series(files: list[str], heads: list[sitk.ImageFileReader] | None = None) -> sitk.Image:
    """The slices ``files`` (in this order) as one image. ITK's series reader casts every slice to the first one's
    pixel type, and a slice's type follows its rescale: a PET series (or a CT export) whose slices carry their own
    RescaleSlope/RescaleIntercept has integer slices (slope 1) beside float ones, and 3 x 0.5 was read as 1. When
    the slices' types differ, the series is read as 64-bit float (the type ITK gives a rescaled slice), each slice
    rescaled by its own values. (One header read per slice, only for series of several files; ``heads``: those of
    :func:`slice_headers`, read already.)"""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    types, sizes = set(), Counter[str]()
    if len(files) > 1:
        for head in heads if heads is not None else slice_headers(files):
            types.add(head.GetPixelID())
            sizes[" x ".join(str(v) for v in head.GetSize()[:2])] += 1
    if len(sizes) > 1:  # ITK's own error gives the odd slice's size alone
        found = ", ".join(f"{n} slice(s) of {size}" for size, n in sizes.most_common())
        raise RuntimeError(f"the slices of one series share one size, found {found}: move the slices of the other "
                           "size (a localizer, a scout) into a folder of their own")  # fmt: skip
    if len(types) > 1:
        reader.SetOutputPixelType(sitk.sitkFloat64)
    image: sitk.Image = reader.Execute()
    return image


def series_volume_problem(files: list[str], heads: list[sitk.ImageFileReader] | None = None) -> str | None:
    """:func:`series_volume_issue` in one line (``None`` when the series is one volume)."""
    issue = series_volume_issue(files, heads)
    return None if issue is None else f"{issue[0]}, found {issue[1]}; {issue[2]}"


def series_volume_issue(
    files: list[str], heads: list[sitk.ImageFileReader] | None = None
) -> tuple[str, str, str] | None:
    """What keeps one series' files (single-frame slices) from being one volume, from their headers, as ``automed
    predict`` checks it (:func:`automed.tools.dicom_convert.series_volume_problems`, with pydicom): several volumes
    (echoes, temporal positions, a localizer's other orientation: they would be stacked into one), two slices at
    one position, a missing slice (the others would be spread evenly), or slices shifted across their plane (gantry
    tilt: :func:`tilt_issue`). (rule, found, fix); ``None`` when it is one volume."""
    kinds: dict[tuple[str, str, tuple[float, ...]], list[float]] = {}
    origins: list[tuple[float, ...]] = []
    heads = heads if heads is not None else slice_headers(files)
    if len(heads) < len(files):
        return None  # reading the series reports the broken file
    for head in heads:
        if len(head.GetSize()) > 2 and head.GetSize()[2] > 1:
            return None  # a multi-frame file is read as it is
        tag = [
            head.GetMetaData(k).strip() if head.HasMetaDataKey(k) else "" for k in ("0018|0086", "0020|0100")
        ]
        axes = np.asarray(head.GetDirection(), float).reshape(3, 3)
        key = (tag[0], tag[1], tuple(np.round(axes[:, :2].ravel(), 3)))
        kinds.setdefault(key, []).append(float(np.dot(head.GetOrigin(), axes[:, 2])))
        origins.append(head.GetOrigin())
    if len(kinds) > 1:
        return (
            "a DICOM series folder must hold one volume",
            f"{len(kinds)} (echoes, temporal positions or orientations, such as a localizer)",
            "move each volume's files into a folder of its own",
        )
    gaps = np.diff(np.sort(next(iter(kinds.values()), [])))
    if len(gaps) and gaps.min() < 1e-3:
        return (
            "the slices of a volume must lie at distinct positions",
            f"{int((gaps < 1e-3).sum())} repeated",
            "remove the duplicate files",
        )
    if len(gaps) > 1 and gaps.max() - gaps.min() > max(0.05, 0.05 * float(np.median(gaps))):
        return (
            "the slices of a volume must be evenly spaced",
            f"gaps from {gaps.min():.3f} to {gaps.max():.3f} mm (a slice missing?)",
            "add the missing files",
        )
    if heads:
        axes = np.asarray(heads[0].GetDirection(), float).reshape(3, 3)
        return tilt_issue(np.asarray(origins, float), axes, min(heads[0].GetSpacing()[:2]))
    return None


TILT_RULE = "the slices of a volume must be stacked along their normal"
TILT_FIX = (
    "resample the series to an untilted volume first (dcm2niix corrects gantry tilt) and give its NIfTI file, or "
    "reconstruct the series without tilt"
)


def tilt_issue(origins: np.ndarray, axes: np.ndarray, pixel: float) -> tuple[str, str, str] | None:
    """Slices shifted across their own plane from one to the next (a CT acquired with gantry tilt): a volume's grid
    is orthogonal, so ITK would stack them straight above the first, each up to that shift away from where it was
    scanned (and the slice distance read along the slant); (rule, found, fix) when the shift reaches a quarter of a
    pixel, ``None`` otherwise. ``origins``: each slice's position; ``axes``: columns row, column and normal."""
    if len(origins) < 2:
        return None
    o = origins[np.argsort(origins @ axes[:, 2], kind="stable")]
    across = (o - o[0]) @ axes[:, :2]
    shift = float(np.linalg.norm(across, axis=1).max())
    if shift <= max(0.01, 0.25 * pixel):
        return None
    along = float((o[-1] - o[0]) @ axes[:, 2])
    tilt = float(np.degrees(np.arctan2(float(np.linalg.norm(across[-1])), along)))
    found = (
        f"slices shifted up to {shift:.2f} mm across their plane (a gantry tilt of about {tilt:.1f} degrees)"
    )
    return TILT_RULE, found, TILT_FIX


def _read(path: Path) -> sitk.Image:
    if not utf8(path):
        raise SystemExit(f"{shown(path)}: {UTF8_RULE}; {UTF8_FIX}")
    if path.is_dir():
        series = _dicom_series(path)
        if len(series) != 1:
            raise SystemExit(
                f"{path}: an image folder must hold exactly one DICOM series, found {len(series)}"
                + (f" ({', '.join(series)})" if series else "")
                + "; move each series into its own folder"
            )
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), series[0])
        heads = slice_headers(list(files))
        if problem := series_volume_problem(list(files), heads):
            raise SystemExit(f"{path}: {problem}")
        try:
            image = read_series(list(files), heads)
        except RuntimeError as exc:
            how = compressed_dicom(Path(files[0]))
            raise SystemExit(f"{path}: the DICOM series is not readable ({how + ': ' if how else ''}"
                             f"{_last_line(exc)}){'; ' + DECOMPRESS if how else ''}") from exc  # fmt: skip
        return image
    try:
        single = read_picture(path)
    except RuntimeError as exc:
        if how := compressed_dicom(path):
            raise SystemExit(f"{path}: SimpleITK cannot decode its pixels ({how}: {_last_line(exc)}); "
                             f"{DECOMPRESS}") from exc  # fmt: skip
        raise SystemExit(f"{path}: not readable as an image ({_last_line(exc)}); give NIfTI, NRRD, MHA, PNG, TIFF "
                         "or DICOM, or move the file out") from exc  # fmt: skip
    return single


def grey_palette_bmp(path: Path) -> bool:
    """Whether ``path`` is a BMP of at most 8 bits per pixel whose palette holds only greys: ITK expands it to RGB,
    but the picture has one channel (as Pillow and every viewer read it)."""
    if not path.name.lower().endswith(".bmp"):
        return False
    try:
        with path.open("rb") as f:
            head = f.read(14 + 40)
            if len(head) < 54 or head[:2] != b"BM":
                return False
            dib = int.from_bytes(head[14:18], "little")
            bits = int.from_bytes(head[28:30], "little")
            if bits > 8 or dib < 40:
                return False
            n_colours = int.from_bytes(head[46:50], "little") or 1 << bits
            f.seek(14 + dib)
            palette = f.read(4 * n_colours)
    except OSError:
        return False
    entries = [palette[i : i + 3] for i in range(0, len(palette) - 3, 4)]
    return bool(entries) and all(e[0] == e[1] == e[2] for e in entries)


def image_io(path: Path) -> str:
    """The ImageIO to read ``path`` with: ``MetaImageIO`` for ``.MHA``/``.MHD`` in another letter case (ITK picks
    MetaImage by the lower-case ending alone: ``A.MHA`` was found as an input, then "Unable to determine ImageIO
    reader"), else ``""``, ITK's own choice (the other formats are told by their content or either case)."""
    name = path.name
    meta = name.lower().endswith((".mha", ".mhd")) and not name.endswith((".mha", ".mhd"))
    return "MetaImageIO" if meta else ""


def read_picture(path: Path) -> sitk.Image:
    """``sitk.ReadImage``, with a grey-palette BMP read as one channel."""
    image: sitk.Image = sitk.ReadImage(str(path), imageIO=image_io(path))
    if image.GetNumberOfComponentsPerPixel() > 1 and grey_palette_bmp(path):
        image = sitk.VectorIndexSelectionCast(image, 0)
    return with_non_finite(path, image)  # NaN in a NIfTI file: ITK reads it as 0


def _last_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1][:200] if lines else type(exc).__name__


def _as_3d(arr: np.ndarray, dim: int) -> np.ndarray:
    return arr[None] if dim == 2 else arr


def read_case(case: Case) -> tuple[np.ndarray, sitk.Image]:
    """``(C, z, y, x)`` float32 channels and a reference image carrying the geometry of the first channel."""
    chans: list[np.ndarray] = []
    ref: sitk.Image | None = None
    for p in case.paths:
        img = _read(p)
        arr = sitk.GetArrayFromImage(img).astype(np.float32)
        if img.GetDimension() == 4:  # (t, z, y, x): every channel in one file
            ref = ref or sitk.Extract(img, [*img.GetSize()[:3], 0], [0, 0, 0, 0])
            chans += list(arr)
            continue
        ref = ref or img
        if img.GetNumberOfComponentsPerPixel() > 1:  # RGB: components are channels
            chans += [_as_3d(arr[..., k], img.GetDimension()) for k in range(arr.shape[-1])]
        else:
            chans.append(_as_3d(arr, img.GetDimension()))
    assert ref is not None
    return np.stack(chans), ref


def spacing_zyx(ref: sitk.Image) -> list[float]:
    sp = [float(s) for s in reversed(ref.GetSpacing()[:3])]
    return [1.0, *sp] if len(sp) == 2 else sp


def write_labels(labels: np.ndarray, ref: sitk.Image, path: Path) -> None:
    arr = labels[0] if ref.GetDimension() == 2 and labels.ndim == 3 else labels
    out = sitk.GetImageFromArray(np.ascontiguousarray(arr.astype(np.uint8 if arr.max() < 256 else np.int16)))
    out.SetSpacing(ref.GetSpacing()[: out.GetDimension()])
    out.SetOrigin(ref.GetOrigin()[: out.GetDimension()])
    d = ref.GetDirection()
    n = ref.GetDimension()
    if n == out.GetDimension():
        out.SetDirection(d)
    write_atomic(out, path)


def write_atomic(image: sitk.Image, path: Path) -> list[Path]:
    """Write ``image`` to ``path`` so that a killed run leaves no half-written file under a final name; the files
    written (a MetaImage ``.mhd`` or NRRD ``.nhdr`` header names its data file, so both are written under their
    final names in a temporary folder beside them and moved, the data first, the header last)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.lower().endswith((".mhd", ".nhdr")):  # a header naming its data file
        tmpdir = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent))
        try:
            sitk.WriteImage(image, str(tmpdir / path.name), useCompression=True)
            moved = []
            for f in sorted(tmpdir.iterdir(), key=lambda f: f.name == path.name):
                f.replace(path.parent / f.name)
                moved.append(path.parent / f.name)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        return moved
    tmp = path.with_name(".tmp-" + path.name)
    sitk.WriteImage(image, str(tmp), useCompression=True)
    tmp.replace(path)
    return [path]
