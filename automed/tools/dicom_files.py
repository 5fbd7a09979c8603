"""Finding and reading the DICOM files of a folder, with one clear problem per file that is not a usable image."""

from __future__ import annotations

import os
from pathlib import Path

import pydicom
from pydicom.dataset import FileDataset

from automed.artifacts import OUTPUT_MARKER
from automed.errors import Problem

NIFTI_SUFFIXES = (".nii", ".nii.gz")
# files a DICOM export commonly carries beside the images; never patient data of their own
IGNORED_NAMES = {"DICOMDIR", ".DS_Store", "Thumbs.db", "desktop.ini"}
DEID_REPORT = "deidentification.json"  # automed anonymize's report, at the top of its output


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def input_files(root: Path) -> list[Path]:
    """Every file under ``root`` (a folder or one file), sorted, without the ignored names and hidden files."""
    if root.is_file():
        return [root]
    own = {root / DEID_REPORT} if (root / OUTPUT_MARKER).is_file() else set()  # an anonymize output as input
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.name not in IGNORED_NAMES and not p.name.startswith(".") and p not in own
    )


def skipped_files(root: Path) -> list[str]:
    """The files under ``root`` that :func:`input_files` leaves out (relative names, for a warning)."""
    if root.is_file():
        return []
    kept = set(input_files(root))
    own = {root / DEID_REPORT, root / OUTPUT_MARKER}
    return sorted(
        relative(p, root) for p in root.rglob("*") if p.is_file() and p not in kept and p not in own
    )


def linked_folders(root: Path) -> list[str]:
    """The links to folders under ``root`` (relative names): :func:`input_files` does not follow them (a link may
    loop or lead out of the input), so they are named in a warning, never left out without a word."""
    if root.is_file():
        return []
    out = []
    for folder, dirs, _ in os.walk(root):
        out += [relative(Path(folder) / d, root) + "/" for d in dirs if (Path(folder) / d).is_symlink()]
    return sorted(out)


def _native_length(ds: pydicom.Dataset) -> int | None:
    """Bytes of uncompressed pixel data the header promises (``None`` for compressed data)."""
    if ds.file_meta.get("TransferSyntaxUID") is None or ds.file_meta.TransferSyntaxUID.is_compressed:
        return None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    bits = int(ds.get("BitsAllocated", 0))
    n = int(ds.get("Rows", 0)) * int(ds.get("Columns", 0)) * int(ds.get("SamplesPerPixel", 1)) * frames
    return (n * bits + 7) // 8


def read_image(path: Path, shown: str) -> tuple[FileDataset | None, Problem | None]:
    """Read one DICOM image file fully; a non-DICOM file, a truncated file or one without pixel data is a problem
    (``shown`` is the file's name in the message: relative to the input, never a value from inside it)."""
    try:
        ds = pydicom.dcmread(path)
    except pydicom.errors.InvalidDicomError:
        return None, Problem(
            shown,
            "every file in the input folder must be a DICOM file (Part 10, with the DICM prefix)",
            "not DICOM",
            "move the file out of the folder",
        )
    except (OSError, EOFError, ValueError, KeyError) as exc:
        return None, Problem(
            shown,
            "a DICOM file must be readable to its end",
            f"unreadable ({type(exc).__name__})",
            "copy it again",
        )
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        if "Rows" in ds and "Columns" in ds:  # an image whose file ends before its pixels
            return None, Problem(
                shown,
                "an image (Rows and Columns given) must hold its pixel data",
                f"no pixel data in its {path.stat().st_size} bytes (the file may be truncated)",
                "copy the file again from its source",
            )
        return None, Problem(
            shown,
            "automed handles DICOM images; objects without pixel data (SR, PR, RT, KOS) may carry identifying "
            "structured content it does not clean",
            f"no pixel data (SOP class {ds.get('SOPClassUID', 'unknown')})",
            "move the file out of the folder",
        )
    want = _native_length(ds) if "PixelData" in ds else None
    if want is not None and len(ds.PixelData) < want:
        return None, Problem(
            shown,
            "the pixel data must be as long as Rows x Columns x frames x samples x bits say",
            f"{len(ds.PixelData)} of {want} bytes (truncated)",
            "copy the file again from its source",
        )
    return ds, None


def relative(path: Path, root: Path) -> str:
    """The name of ``path`` shown in messages: relative to the input root."""
    return str(path.relative_to(root)) if root.is_dir() else path.name
