"""Which files of an input folder are cases, for the standalone bundle (SimpleITK only) and ``automed predict``
(:mod:`automed.infer.inputs`).

Inputs: a folder of images, one file per case, or ``CASE_0000``, ``CASE_0001``, ... per channel (nnU-Net naming);
single 4D or RGB files holding every channel; DICOM series folders (the input folder itself or its sub-folders at any
depth, ``PATIENT/STUDY/SERIES``, a case ``PATIENT_STUDY_SERIES``); a sub-folder of single-file DICOM (X-rays) gives a
case per file, ``FOLDER_FILE``; for an image-level model, other images in a sub-folder are a case each too (a
folder-per-class test set, ``<class>_<file stem>``). Hidden files are no inputs; what else is not read is named, and so are links that
would loop or read a folder twice (:mod:`.folders`).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import SimpleITK as sitk

from .folders import InputTooLargeError, entries, folder_id, safe_id, sub_folders
from .io import (
    CHANNEL,
    DECOMPRESS,
    DICOM_SUFFIXES,
    SUFFIXES,
    UTF8_FIX,
    UTF8_RULE,
    Case,
    compressed_dicom,
    not_an_image,
    shown,
    split_suffix,
    utf8,
)


def not_utf8(root: Path) -> list[Path]:
    """What input discovery would give SimpleITK under ``root`` (itself, its entries and those of every folder it
    reads: :func:`sub_folders`) that is not UTF-8 (:func:`utf8`): refused before any of it is opened."""
    if not utf8(root):
        return [root]
    if not root.is_dir():
        return []
    found = [f for f in entries(root) if not utf8(f)]
    for d in sub_folders(root)[0]:
        if utf8(d):
            found += [g for g in entries(d) if not utf8(g) and g not in found]
    return found


def listed(paths: list[Path]) -> str:
    """The first five of ``paths``, printable (:func:`shown`), and how many more."""
    return ", ".join(shown(f) for f in paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")


def _header(path: Path) -> sitk.ImageFileReader | None:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:  # not an image (a notes file, a DICOMDIR, a report)
        return None
    return reader


def _series_uid(path: Path) -> str | None:
    if (reader := _header(path)) is None or not reader.HasMetaDataKey("0020|000e"):
        return None
    return str(reader.GetMetaData("0020|000e")).strip()


def _dicom(path: Path) -> bool:
    """Whether ``path`` is a DICOM file (its preamble says so)."""
    try:
        with path.open("rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def no_image_dicom(path: Path) -> bool:
    """Whether ``path`` is DICOM holding no image SimpleITK opens (a structured report, a key-object note, a
    presentation state saved beside the images; a broken file) or pixels that picture no body (a segmentation, a
    dose grid: :func:`not_an_image`): no input, named as not read (:func:`unread`)."""
    return _dicom(path) and (not_an_image(path) is not None or _header(path) is None)


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
            if f.is_file() and not _other_image(f) and (uid := _series_uid(f)):
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
    each = (f for files in series if len(files) == 1 or dimension == 2 for f in files)
    return sorted(f for f in each if not_an_image(f) is None)  # a segmentation beside X-rays: no case


def lone_dicom_files(folder: Path, dimension: int | None = None) -> list[Path]:
    """DICOM files without an image suffix that are a case each (PACS exports name files IM0001 or by UID), like
    ``.dcm`` files: each a series of its own, or, for a model on pictures (``dimension`` 2), each slice of a series."""
    if not any(f.is_file() and split_suffix(f.name) is None for f in entries(folder)):
        return []
    return [f for f in _one_per_file(folder, dimension) if split_suffix(f.name) is None]


def subfolder_files(root: Path, folder: Path, dimension: int | None = None) -> list[tuple[str, Path]]:
    """``(case ID, file)`` for the DICOM files of a sub-folder of the input ``root`` that are a case each (a ward's
    X-rays, one series per file; any slice for a model on pictures); none when the sub-folder is one series volume
    (:func:`is_series_folder`). An ID is ``FOLDER_FILE`` (without the image suffix; ``PATIENT_STUDY_FILE`` deeper:
    :func:`folder_id`): two folders' IM0001 stay apart.

    For an image-level model (``dimension`` given) the sub-folder's other images (PNG, TIFF, NIfTI, ...) are a case
    each too: a folder-per-class test set (``test/<class>/<images>``, the layout classification trains on) is
    predicted, each case named as training names it, ``<class>_<file stem>`` with characters other than letters,
    digits, ``.``, ``_`` and ``-`` as ``_`` (:func:`.folders.safe_id`). A segmentation model reads DICOM alone there."""
    if is_series_folder(folder, dimension):
        return []
    found = [(sub_case_id(root, folder, dimension, _stem(f)), f) for f in _one_per_file(folder, dimension)]
    if dimension is not None:
        found += [
            (sub_case_id(root, folder, dimension, _stem(f)), f)
            for f in entries(folder)
            if f.is_file() and _other_image(f)
        ]
    return found


def sub_case_id(root: Path, folder: Path, dimension: int | None, *more: str) -> str:
    """The case ID of a sub-folder of ``root`` (a DICOM series) or of a file in it (``more``: its stem):
    :func:`folder_id`, made safe (:func:`.folders.safe_id`) for an image-level model (``dimension`` given), whose
    folder-per-class test set is named as training names it, DICOM included (``x ray 1.dcm`` in ``benign/``:
    ``benign_x_ray_1``). A segmentation model's keep their names (``1.000000-CT Abdomen-12345``)."""
    cid = folder_id(root, folder, *more)
    return cid if dimension is None else safe_id(cid)


def with_data_files(used: set[Path]) -> set[Path]:
    """``used`` and the data files its MetaImage (``.mhd``) and NRRD (``.nhdr``) headers name: read with their
    header, never "not read" (``d.raw`` beside a predicted ``d.mhd`` had been named so)."""
    marks = {
        ".mhd": ("=", "elementdatafile"),
        ".nhdr": (":", "datafile"),
    }  # `ElementDataFile = x`, `data file: x`
    out = set(used)
    for header in used:
        mark = marks.get(header.suffix.lower())
        if mark is None or not header.is_file():
            continue
        try:  # (the data file's line ends the header, after any number of metadata lines)
            with header.open("rb") as fh:
                lines = fh.read(1 << 16).decode(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            name, sep, value = line.partition(mark[0])
            value = value.strip()
            if (
                sep
                and name.strip().lower().replace(" ", "") == mark[1]
                and value.upper() not in ("", "LOCAL", "LIST")
            ):
                out.add(header.parent / value)
    return out


def unread(root: Path, used: set[Path], skipped: dict[Path, str] | None = None) -> list[str]:
    """What the input folder holds that no case reads (``used``: the cases' files and folders), named so that it is
    not dropped unseen: files that are neither images nor DICOM images, DICOM picturing no body (a segmentation,
    said so: :func:`not_an_image`), broken links, sub-folders with no DICOM
    anywhere in them (a folder of NIfTI), what a sub-folder read file by file holds besides its DICOM, and the
    sub-folders discovery did not follow (``skipped``, each with why: :func:`sub_folders`).
    Hidden entries (``.DS_Store``), empty folders and a CD's ``DICOMDIR`` (the index of its series, no image) are
    left out."""
    skipped = skipped or {}  # named first, wherever they are (in a series folder too)
    out = [f"{f.relative_to(root).as_posix()}/ ({why})" for f, why in sorted(skipped.items())]
    holding = {p for f in (*used, *skipped) for p in f.parents}  # named inside, not as a whole

    def visit(folder: Path, prefix: str) -> None:
        for f in entries(folder):
            name = prefix + f.name
            if f in skipped or f in used or f.name.upper() == "DICOMDIR":
                continue
            elif not f.is_dir():
                why = (
                    "a broken link"
                    if not f.exists()
                    else (f"{kind}, no image" if (kind := not_an_image(f)) else "")
                )
                out.append(f"{name} ({why})" if why else name)
            elif f in holding:
                visit(f, f"{name}/")
            elif _listed(f) != []:  # an empty folder is no loss
                out.append(f"{name}/" + ("" if _listed(f) else " (cannot be listed)"))

    visit(root, "")
    return out


def _listed(folder: Path) -> list[Path] | None:
    try:
        return entries(folder)
    except OSError:  # no permission
        return None


def series_unread(folder: Path) -> list[str]:
    """:func:`unread` for a DICOM series folder read as one volume: what it holds besides its DICOM files (its
    other images are refused: :func:`series_strays`)."""
    return unread(folder, {f for files in dicom_series_in(folder).values() for f in files})


def unread_note(names: list[str]) -> str:
    """``names`` (from :func:`unread`), a few of them, with what is read where."""
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return (
        f"{len(names)} not read: {shown} (read are images ({' '.join(SUFFIXES)}) and DICOM images in the input "
        "folder, DICOM images alone in its sub-folders at any depth, besides every image there for a classification "
        "or regression model: pass a sub-folder of other images itself)"
    )


def _stem(f: Path) -> str:
    parts = split_suffix(f.name)
    return parts[0] if parts else f.name


def series_strays(folder: Path) -> list[Path]:
    """Images in a DICOM series folder outside its multi-file series (a PNG, a single-file X-ray): they would be
    dropped unseen, since the folder is read as one volume. A ``.dcm`` file that is no image (a report, a
    presentation state saved beside the series) is not one: :func:`series_unread` names it."""
    series = dicom_series_in(folder)
    inside = {f for files in series.values() if len(files) > 1 for f in files}
    singles = {f for files in series.values() if len(files) == 1 for f in files}
    return sorted(
        f for f in entries(folder) if f.is_file() and f not in inside and (f in singles or _other_image(f))
    )


def _other_image(f: Path) -> bool:
    """Whether ``f`` is named as an image of another kind than DICOM (a DICOM file is one when it has pixels)."""
    return split_suffix(f.name) is not None and not f.name.lower().endswith(DICOM_SUFFIXES)


def undecodable(inputs: list[Path]) -> dict[str, list[Path]]:
    """The ``inputs`` (DICOM files, series folders by one of their files) compressed in a way SimpleITK cannot decode,
    by compression (:func:`compressed_dicom`): one file of each compression is decoded to tell. Checked before any
    model runs: found at its turn, such an input stopped a batch and took the predictions made so far with it."""
    found: dict[str, list[Path]] = {}
    sample: dict[str, Path] = {}
    for p in inputs:
        one = _series_file(p) if p.is_dir() else p
        if one is not None and (how := compressed_dicom(one)):
            found.setdefault(how, []).append(p)
            sample.setdefault(how, one)
    bad = {}
    for how, one in sample.items():
        try:
            sitk.ReadImage(str(one))
        except RuntimeError:
            bad[how] = found[how]
    return bad


def _series_file(folder: Path) -> Path | None:
    """The first DICOM file of a series folder that holds an image: the first DICOM file may be a report or a
    segmentation saved beside the images, uncompressed while the images are not. By headers, not a GDCM scan of
    the folder (the slow part of discovery, done already and cached only for a few folders)."""
    return next((f for f in entries(folder) if f.is_file() and _dicom(f) and not no_image_dicom(f)), None)


def _no_strays(folder: Path) -> None:
    """``folder``, read as one series volume, holds that series alone: refused before any case is predicted (found
    when read, a second series stopped the batch at its turn)."""
    if (n := sum(len(files) > 1 for files in dicom_series_in(folder).values())) > 1:
        raise SystemExit(
            f"{folder}: an image folder must hold exactly one DICOM series, found {n}; move each series into its "
            "own folder"
        )
    if strays := series_strays(folder):
        raise SystemExit(
            f"{folder}: a DICOM series folder is read as one volume, but it also holds "
            f"{', '.join(f.name for f in strays[:5])}{' ...' if len(strays) > 5 else ''}; move those into "
            "another folder"
        )


def cd_folder(root: Path) -> Path:
    """The input ``root``, or for a CD's ``DICOMDIR`` (the index of its series, no image: what a viewer opens) the
    folder holding it, read like any input folder; given alone it was refused as an unreadable or corrupt image."""
    return root.parent if root.is_file() and root.name.upper() == "DICOMDIR" else root


def find_cases(root: Path, n_channels: int, dimension: int | None = None) -> list[Case]:
    """The cases under ``root`` (module docstring); a folder holding more folders or entries than an image export
    is refused, not read to its end (:class:`.folders.InputTooLargeError`)."""
    try:
        return _find_cases(root, n_channels, dimension)
    except InputTooLargeError as exc:
        raise SystemExit(str(exc)) from None


def _find_cases(root: Path, n_channels: int, dimension: int | None) -> list[Case]:
    root = cd_folder(root)
    if bad := not_utf8(root):
        raise SystemExit(f"{shown(root)}: {UTF8_RULE}, found {listed(bad)}; {UTF8_FIX}")
    if root.is_file():
        if kind := not_an_image(root):
            raise SystemExit(
                f"{root}: an input must be an image, found {kind}; pass the images it was made from"
            )
        parts = split_suffix(root.name)
        if parts is None and _series_uid(root):  # DICOM named IM0001 or by its UID, as in a folder
            return [Case(root.name, (root,), ".nii.gz")]
        if parts is None:
            raise SystemExit(f"{root}: not an image file (expected one of {', '.join(SUFFIXES)}, or DICOM)")
        m = CHANNEL.match(parts[0])  # CASE_0000.nii.gz alone writes CASE.nii.gz, as from a folder
        return [
            Case(m["case"] if m and m["ch"] == "0000" and n_channels == 1 else parts[0], (root,), parts[1])
        ]
    if is_series_folder(root, dimension):
        _no_strays(root)
        if skipped := series_unread(root):
            print(f"warning: {root}: {unread_note(skipped)}", file=sys.stderr, flush=True)
        return [Case(root.name, (root,), ".nii.gz")]
    groups: dict[str, dict[int, Path]] = {}
    suffix: dict[str, str] = {}
    for f in entries(root):
        parts = split_suffix(f.name) if f.is_file() else None
        if parts is None or (f.name.lower().endswith(DICOM_SUFFIXES) and no_image_dicom(f)):
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
        if f.name in groups:  # a.nii.gz beside a DICOM file named a: one would be dropped unseen
            beside = next(iter(groups[f.name].values()))
            raise SystemExit(
                f"{f} and {beside}: both would be case {f.name} (a case needs its own name: its prediction is "
                "named by it); rename one of them"
            )
        groups[f.name], suffix[f.name] = {-1: f}, ".nii.gz"
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
    folders, links = sub_folders(root)
    for d in folders:
        if is_series_folder(d, dimension):
            _no_strays(d)
            cases.append(Case(sub_case_id(root, d, dimension), (d,), ".nii.gz"))
        else:
            cases += [Case(cid, (f,), ".nii.gz") for cid, f in subfolder_files(root, d, dimension)]
    skipped = unread(root, with_data_files({p for c in cases for p in c.paths}), links)
    if not cases:
        raise SystemExit(f"{root}: no images found" + (f"; {unread_note(skipped)}" if skipped else ""))
    if skipped:
        print(f"warning: {root}: {unread_note(skipped)}", file=sys.stderr, flush=True)
    for how, inputs in undecodable([c.paths[0] for c in cases]).items():
        raise SystemExit(
            f"{root}: SimpleITK cannot decode the pixels of {listed(inputs)} ({how}); {DECOMPRESS}"
        )
    outputs: dict[str, Case] = {}
    for c in cases:  # case-insensitively: A.nii.gz and a.nii.gz are one file on macOS and Windows
        name = c.case_id + c.suffix
        if (same := outputs.get(name.casefold())) is not None:
            raise SystemExit(
                f"{c.paths[0]} and {same.paths[0]}: both would write the prediction {name}; rename one"
            )
        outputs[name.casefold()] = c
    return sorted(cases, key=lambda c: c.case_id)  # as automed predict orders them (its table's rows too)
