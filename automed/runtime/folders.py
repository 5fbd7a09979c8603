"""Which folders under an input folder discovery reads for DICOM (:mod:`.inputs`), at any depth: a PACS or CD export
nests its series as ``PATIENT/STUDY/SERIES/IM0001``. Each folder is read once: a sub-folder that is a link to the
input folder or a folder above it would loop, and one to a folder read already would predict its cases twice; such
links are not followed, and named with why (as are folders that cannot be listed). The walk stops at
:data:`MAX_FOLDERS` folders or a thousand times as many entries (:class:`InputTooLargeError`): ``-i ~`` given by
mistake would read a whole home folder."""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

# a PACS or CD export is tens to a few thousand folders (PATIENT/STUDY/SERIES) of up to thousands of files each; a
# home folder or a disk is far more. AUTOMED_MAX_INPUT_FOLDERS raises the limit for an export larger still
MAX_FOLDERS = 10_000
MAX_FOLDERS_VAR = "AUTOMED_MAX_INPUT_FOLDERS"
ENTRIES_PER_FOLDER = (
    1_000  # the entries limit: this many times the folder limit (a CT series: hundreds of files)
)


class InputTooLargeError(ValueError):
    """The input folder holds more folders or entries than an image export does; ``rule``, ``value`` and ``fix``
    for callers that report problems in those parts, ``str()`` the whole sentence."""

    def __init__(self, where: Path | str, rule: str, value: str, fix: str) -> None:
        super().__init__(f"{where}: {rule}; found {value}; {fix}")
        self.where, self.rule, self.value, self.fix = where, rule, value, fix


def max_folders() -> int:
    """The folder limit: :data:`MAX_FOLDERS`, or ``AUTOMED_MAX_INPUT_FOLDERS`` when set (a positive whole number)."""
    text = os.environ.get(MAX_FOLDERS_VAR, "").strip()
    if not text:
        return MAX_FOLDERS
    if not text.isdigit() or int(text) < 1:
        raise InputTooLargeError(
            MAX_FOLDERS_VAR,
            "the most folders input discovery reads must be a positive whole number",
            repr(text),
            f"set e.g. {MAX_FOLDERS_VAR}={2 * MAX_FOLDERS}, or unset it for {MAX_FOLDERS}",
        )
    return int(text)


def entries(folder: Path) -> list[Path]:
    """``folder``'s entries, sorted, without hidden ones: macOS writes ``.DS_Store`` and an AppleDouble ``._NAME`` (not
    an image) beside each file copied to a foreign disk, and these are no inputs."""
    return sorted(f for f in folder.iterdir() if not f.name.startswith("."))


def folder_id(root: Path, folder: Path, *more: str) -> str:
    """The case ID of ``folder`` (under ``root``) or of a file in it (``more``): the relative path's parts joined by
    ``_`` (``patient1/study1/series1`` -> ``patient1_study1_series1``): one file name, never a path, deterministic.
    Two folders joining to one ID (``a_b/c``, ``a/b_c``) are refused by the callers' check of unique IDs."""
    return "_".join((*folder.relative_to(root).parts, *more))


# names of files, not folders: an output given one (nnU-Net's `-o seg.nii.gz`) would become a folder of that name
FILE_SUFFIXES = (
    # images automed reads (runtime.io.SUFFIXES: one -o seg.nii.gz, nnU-Net's habit, is a file name too), tables,
    # reports, models and archives
    *(".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg"),
    *(".dcm", ".ima", ".dicom", ".npz", ".npy"),
    *(".csv", ".tsv", ".json", ".xlsx", ".txt", ".html", ".htm", ".pdf", ".onnx", ".zip", ".tar.gz", ".tgz"),
)


def file_suffix(path: Path) -> str | None:
    """The file-name ending of ``path`` (:data:`FILE_SUFFIXES`, any letter case), or None."""
    return next((s for s in FILE_SUFFIXES if path.name.lower().endswith(s)), None)


def folder_fix(given: Path, suffix: str) -> str:
    """The fix for an output folder ``given`` named like a file (``suffix``): its name without the ending (or
    ``results``), or the folder made first, which keeps the name (an existing folder of that name is taken)."""
    stem = given.name[: -len(suffix)]
    return (
        f"pass a folder, e.g. -o {given.with_name(stem) if stem else given.with_name('results')}, or create the "
        f"folder first (mkdir {given}) to keep that name"
    )


UNSAFE = re.compile(r"[^\w.-]")  # \w: the letters and digits of every script, and "_"


def safe_id(text: str) -> str:
    """``text`` in one Unicode spelling (NFC: a macOS file name spells ``Ö`` as ``O`` and a combining mark) with every
    character other than letters (of any script), digits, ``.``, ``_`` and ``-`` replaced by ``_``: the case IDs of a
    folder-per-class dataset (``automed.data.class_folders``), in training and in prediction alike. (Letters had
    been ASCII only: ``Ödem`` became ``_dem``, and classes named in another script all ``__``, clashing.)"""
    return UNSAFE.sub("_", unicodedata.normalize("NFC", text))


def _identity(path: Path) -> tuple[int, int] | str:
    """The folder itself, whatever the path to it (a link, a bind mount): device and inode; its resolved path where
    the file system gives no inode numbers (0: some network and Windows shares)."""
    st = path.stat()
    return (st.st_dev, st.st_ino) if st.st_ino else str(path.resolve())


def sub_folders(root: Path) -> tuple[list[Path], dict[Path, str]]:
    """The folders under ``root`` at any depth (not ``root``), sorted (each before what it holds), each folder once;
    and the sub-folders not read, each with why. Folders reached without a link come first, so a folder keeps its own
    name when a link elsewhere points to it too; links are then followed in name order unless they point to ``root``
    or a folder above it (a loop) or to a folder read already (its cases twice)."""
    if not root.is_dir():
        return [], {}
    top = _identity(root)
    above = {_identity(p) for p in root.resolve().parents}
    read_as: dict[tuple[int, int] | str, Path] = {top: root}
    found: list[Path] = []
    skipped: dict[Path, str] = {}
    links: list[Path] = []

    def not_read(e: Path) -> str | None:  # why the folder at e is not read (again)
        key = _identity(e)
        if key == top or key in above:
            return "a link to the input folder or a folder above it: not followed, it would loop"
        if (same := read_as.get(key)) is not None:
            return _same(root, same)
        read_as[key] = e
        return None

    limit = max_folders()
    seen = [0]  # entries listed so far

    def visit(folder: Path) -> None:
        try:
            listing = entries(folder)
            inside = [e for e in listing if e.is_dir()]
        except OSError as exc:
            skipped[folder] = f"cannot be listed: {exc.strerror or exc}"
            return
        found.append(folder)
        seen[0] += len(listing)
        if len(found) > limit or seen[0] > ENTRIES_PER_FOLDER * limit:
            raise _too_large(root, folder, len(found), seen[0], limit)
        for e in inside:
            if e.is_symlink():
                links.append(e)
            elif (why := not_read(e)) is not None:  # a bind mount
                skipped[e] = why
            else:
                visit(e)

    visit(root)
    while links:
        link = min(links)
        links.remove(link)
        if (why := not_read(link)) is not None:
            skipped[link] = why
        else:
            visit(link)
    return sorted(f for f in found if f != root), skipped


def _too_large(root: Path, folder: Path, folders: int, listed: int, limit: int) -> InputTooLargeError:
    return InputTooLargeError(
        root,
        f"an input folder holds images or DICOM (a PACS export: PATIENT/STUDY/SERIES folders), at most {limit} "
        f"folders or {ENTRIES_PER_FOLDER * limit} files and folders in all",
        f"{folders} folder(s) and {listed} entries so far (discovery stopped at "
        f"{folder.relative_to(root).as_posix() or '.'}/)",
        "pass the folder that holds the images (was a home folder or a disk given?); for an export this large, "
        f"predict it in parts or set {MAX_FOLDERS_VAR} to more than {limit}",
    )


def _same(root: Path, folder: Path) -> str:
    where = "the input folder" if folder == root else f"{folder.relative_to(root).as_posix()}/"
    return f"the same folder as {where}, read once there"


def symbolic_links(folder: Path) -> list[Path]:
    """The symbolic links inside ``folder`` at any depth (links to folders are not followed), sorted; none if it is
    missing. An output written into in place must hold none (what is written there would land where they point)."""
    found: list[Path] = []
    for top, dirs, files in os.walk(folder):
        found += [Path(top, n) for n in (*dirs, *files) if Path(top, n).is_symlink()]
    return sorted(found)
