"""Reading inputs and writing label maps for the standalone bundle (SimpleITK only).

Inputs: a folder of images, one file per case, or ``CASE_0000``, ``CASE_0001``, ... per channel (nnU-Net naming);
single 4D or RGB files holding every channel; DICOM series folders (the input folder itself or its sub-folders); a
sub-folder of single-file DICOM (X-rays) gives a case per file, ``FOLDER_FILE``.
Outputs: ``CASE`` + the input's ending (``.nii.gz`` for DICOM and 2D formats), like ``automed predict``.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

# the image endings automed reads (``automed.data.io.IMAGE_SUFFIXES`` is this tuple: the bundle reads what training
# reads); 2D pictures and single DICOM files give ``.nii.gz`` outputs
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
    ".dcm",
)
_TO_NIFTI = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".dcm")
CHANNEL = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})$")


@dataclass(frozen=True)
class Case:
    case_id: str
    paths: tuple[Path, ...]
    suffix: str


def _split(name: str) -> tuple[str, str] | None:
    for s in SUFFIXES:
        if name.lower().endswith(s):
            return name[: -len(s)], ".nii.gz" if s in _TO_NIFTI else s
    return None


def entries(folder: Path) -> list[Path]:
    """``folder``'s entries, sorted, without hidden ones: macOS writes ``.DS_Store`` and an AppleDouble ``._NAME`` (not
    an image) beside each file copied to a foreign disk, and these are no inputs."""
    return sorted(f for f in folder.iterdir() if not f.name.startswith("."))


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


def not_utf8(root: Path) -> list[Path]:
    """What input discovery would give SimpleITK under ``root`` (itself, its entries and theirs) that is not UTF-8
    (:func:`utf8`): refused before any of it is opened."""
    if not utf8(root):
        return [root]
    if not root.is_dir():
        return []
    found = []
    for f in entries(root):
        if not utf8(f):
            found.append(f)
        elif f.is_dir():
            found += [g for g in entries(f) if not utf8(g)]
    return found


UTF8_RULE = "file names must be UTF-8 (SimpleITK opens no others)"
UTF8_FIX = "rename them (convmv -f latin1 -t utf8 -r --notest FOLDER renames a folder's Latin-1 names)"


def listed(paths: list[Path]) -> str:
    """The first five of ``paths``, printable (:func:`shown`), and how many more."""
    return ", ".join(shown(f) for f in paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")


def _dicom_series(folder: Path) -> list[str]:
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def _series_uid(path: Path) -> str | None:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:  # not an image (a notes file, a DICOMDIR)
        return None
    return reader.GetMetaData("0020|000e").strip() if reader.HasMetaDataKey("0020|000e") else None


def dicom_series_in(folder: Path) -> dict[str, list[Path]]:
    """The DICOM series directly in ``folder``, each with its files. One series takes one GDCM scan; several are
    grouped by each file's SeriesInstanceUID (one header read per file, not one folder scan per series). Scanned
    once per folder listing: telling a series folder, its strays and its lone files apart asks several times."""
    return {uid: list(files) for uid, files in _scanned(str(folder), folder.stat().st_mtime_ns).items()}


@functools.lru_cache(maxsize=8)
def _scanned(folder_text: str, _mtime_ns: int) -> dict[str, tuple[Path, ...]]:
    folder = Path(folder_text)
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        ids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
        if len(ids) == 1:
            files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), ids[0])
            return {ids[0]: tuple(Path(f) for f in files)}
        series: dict[str, list[Path]] = {}
        for f in entries(folder) if ids else []:
            other_image = _split(f.name) is not None and not f.name.lower().endswith(".dcm")
            if f.is_file() and not other_image and (uid := _series_uid(f)):
                series.setdefault(uid, []).append(f)
        return {uid: tuple(files) for uid, files in series.items()}
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def is_series_folder(folder: Path, dimension: int | None = None) -> bool:
    """Whether ``folder`` is one case read as a DICOM series volume: it holds a series of several files (several
    such series are refused when read). A folder of single-file series (X-rays, one series per file) holds one case
    per file, and so does any folder given to a model on pictures (``dimension`` 2)."""
    if dimension == 2 or not folder.is_dir():
        return False
    return any(len(files) > 1 for files in dicom_series_in(folder).values())


def _one_per_file(folder: Path, dimension: int | None) -> list[Path]:
    """The DICOM files of ``folder`` that are a case each: single-file series (X-rays), or every file of every series
    for a model on pictures (``dimension`` 2), as :func:`is_series_folder` tells."""
    series = dicom_series_in(folder).values()
    return sorted(f for files in series if len(files) == 1 or dimension == 2 for f in files)


def lone_dicom_files(folder: Path, dimension: int | None = None) -> list[Path]:
    """DICOM files without an image suffix that are a case each (PACS exports name files IM0001 or by UID), like
    ``.dcm`` files: each a series of its own, or, for a model on pictures (``dimension`` 2), each slice of a series."""
    if not any(f.is_file() and _split(f.name) is None for f in entries(folder)):
        return []
    return [f for f in _one_per_file(folder, dimension) if _split(f.name) is None]


def subfolder_files(folder: Path, dimension: int | None = None) -> list[tuple[str, Path]]:
    """``(case ID, file)`` for the DICOM files of a sub-folder of the input that are a case each (a ward's X-rays,
    one series per file; any slice for a model on pictures); none when the sub-folder is one series volume
    (:func:`is_series_folder`). An ID is ``FOLDER_FILE`` (without the image suffix): two folders' IM0001 stay
    apart."""
    if is_series_folder(folder, dimension):
        return []
    return [(f"{folder.name}_{_stem(f)}", f) for f in _one_per_file(folder, dimension)]


def unread(root: Path, used: set[Path]) -> list[str]:
    """What the input folder holds that no case reads (``used``: the cases' files and folders), named so that it is
    not dropped unseen: files neither images nor DICOM, broken links, sub-folders with no DICOM directly in them (a
    series two levels deep, a folder of NIfTI) and what a sub-folder read file by file holds besides its DICOM.
    Hidden entries (``.DS_Store``) and empty folders are left out."""
    out = []
    for f in entries(root):
        if f in used:
            continue
        if not f.is_dir():
            out.append(f.name + ("" if f.exists() else " (a broken link)"))
            continue
        inside = entries(f)
        if any(g in used for g in inside):
            out += [f"{f.name}/{g.name}" for g in inside if g not in used]
        elif inside:
            out.append(f"{f.name}/")
    return out


def unread_note(names: list[str]) -> str:
    """``names`` (from :func:`unread`), a few of them, with what the input folder's entries must be."""
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return (
        f"{len(names)} not read, neither images ({' '.join(SUFFIXES)}) nor DICOM: {shown} (a sub-folder is read "
        "for the DICOM directly in it: pass a deeper folder itself)"
    )


def _stem(f: Path) -> str:
    parts = _split(f.name)
    return parts[0] if parts else f.name


def series_strays(folder: Path) -> list[Path]:
    """Images in a DICOM series folder outside its multi-file series (a PNG, a single-file X-ray): they would be
    dropped unseen, since the folder is read as one volume."""
    series = dicom_series_in(folder)
    inside = {f for files in series.values() if len(files) > 1 for f in files}
    singles = {f for files in series.values() if len(files) == 1 for f in files}
    return sorted(
        f
        for f in entries(folder)
        if f.is_file() and f not in inside and (f in singles or _split(f.name) is not None)
    )


def find_cases(root: Path, n_channels: int, dimension: int | None = None) -> list[Case]:
    if bad := not_utf8(root):
        raise SystemExit(f"{shown(root)}: {UTF8_RULE}, found {listed(bad)}; {UTF8_FIX}")
    if root.is_file():
        parts = _split(root.name)
        if parts is None:
            raise SystemExit(f"{root}: not an image file (expected one of {', '.join(SUFFIXES)})")
        m = CHANNEL.match(parts[0])  # CASE_0000.nii.gz alone writes CASE.nii.gz, as from a folder
        return [
            Case(m["case"] if m and m["ch"] == "0000" and n_channels == 1 else parts[0], (root,), parts[1])
        ]
    if is_series_folder(root, dimension):
        if strays := series_strays(root):
            raise SystemExit(
                f"{root}: a DICOM series folder is read as one volume, but it also holds "
                f"{', '.join(f.name for f in strays[:5])}{' ...' if len(strays) > 5 else ''}; move those into "
                "another folder"
            )
        return [Case(root.name, (root,), ".nii.gz")]
    groups: dict[str, dict[int, Path]] = {}
    suffix: dict[str, str] = {}
    for f in entries(root):
        parts = _split(f.name) if f.is_file() else None
        if parts is None:
            continue
        m = CHANNEL.match(parts[0])
        cid, ch = (m["case"], int(m["ch"])) if m and (n_channels > 1 or m["ch"] == "0000") else (parts[0], -1)
        if ch in groups.get(cid, {}):
            raise SystemExit(
                f"{f} and {groups[cid][ch]}: both would write the prediction {cid}{parts[1]}; rename one of them"
            )
        groups.setdefault(cid, {})[ch] = f
        suffix[cid] = parts[1]
    for cid in groups:
        m = CHANNEL.match(cid)
        if n_channels == 1 and m and m["case"] in groups and 0 in groups[m["case"]]:
            raise SystemExit(
                f"{groups[cid][-1]}: a second channel file beside {groups[m['case']][0].name}, but the model takes "
                "1 channel; remove it, or predict with a model trained on these channels"
            )
    for f in lone_dicom_files(root, dimension):
        groups.setdefault(f.name, {})[-1], suffix[f.name] = f, ".nii.gz"
    cases = []
    for cid, chans in sorted(groups.items()):
        if -1 in chans:
            cases.append(Case(cid, (chans[-1],), suffix[cid]))
        elif sorted(chans) == list(range(n_channels)):
            cases.append(Case(cid, tuple(chans[c] for c in range(n_channels)), suffix[cid]))
        else:
            raise SystemExit(
                f"{root / cid}: needs channels 0..{n_channels - 1} (CASE_0000 naming), found {sorted(chans)}"
            )
    for d in entries(root):
        if d.is_dir() and is_series_folder(d, dimension):
            cases.append(Case(d.name, (d,), ".nii.gz"))
        elif d.is_dir():
            cases += [Case(cid, (f,), ".nii.gz") for cid, f in subfolder_files(d, dimension)]
    skipped = unread(root, {p for c in cases for p in c.paths})
    if not cases:
        raise SystemExit(f"{root}: no images found" + (f"; {unread_note(skipped)}" if skipped else ""))
    if skipped:
        print(f"warning: {root}: {unread_note(skipped)}", file=sys.stderr, flush=True)
    outputs: dict[str, Case] = {}
    for c in cases:
        name = c.case_id + c.suffix
        if name in outputs:
            raise SystemExit(
                f"{c.paths[0]} and {outputs[name].paths[0]}: both would write the prediction {name}; rename one"
            )
        outputs[name] = c
    return cases


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
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series[0]))
        try:
            image: sitk.Image = reader.Execute()
        except RuntimeError as exc:
            raise SystemExit(f"{path}: the DICOM series is not readable ({_last_line(exc)}); decompress it or "
                             "convert it to NIfTI") from exc  # fmt: skip
        return image
    try:
        single = read_picture(path)
    except RuntimeError as exc:
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


def read_picture(path: Path) -> sitk.Image:
    """``sitk.ReadImage``, with a grey-palette BMP read as one channel."""
    image: sitk.Image = sitk.ReadImage(str(path))
    if image.GetNumberOfComponentsPerPixel() > 1 and grey_palette_bmp(path):
        image = sitk.VectorIndexSelectionCast(image, 0)
    return image


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
