"""What ``automed predict -i INPUT`` accepts, turned into cases: a folder of images (nnU-Net channel naming
``CASE_0000.nii.gz`` for several channels), a DICOM series folder, a folder of DICOM series folders at any depth (a
PACS export's ``PATIENT/STUDY/SERIES``), a CD's ``DICOMDIR``, a CSV, or a file."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from automed.data.io import IMAGE_SUFFIXES, has_image_suffix, read_header
from automed.data.verify_dataset import SAFE_ID
from automed.errors import DatasetError, Problem
from automed.runtime.folders import InputTooLargeError, entries, sub_folders
from automed.runtime.inputs import (
    cd_folder,
    is_series_folder,
    listed,
    lone_dicom_files,
    no_image_dicom,
    not_utf8,
    series_strays,
    series_unread,
    sub_case_id,
    subfolder_files,
    undecodable,
    unread,
    unread_note,
    with_data_files,
)
from automed.runtime.io import DECOMPRESS, DICOM_SUFFIXES, UTF8_FIX, UTF8_RULE, not_an_image, shown

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputCase:
    case_id: str
    images: tuple[Path, ...]
    suffix: str  # output file ending
    is_4d: bool = False  # one 4D file holding every channel (MSD style)


def _suffix(p: Path) -> str:
    name = p.name.lower()
    for s in IMAGE_SUFFIXES:
        if name.endswith(s):
            return s if s not in (".png", ".tif", ".tiff", ".bmp", ".jpg", *DICOM_SUFFIXES) else ".nii.gz"
    return ".nii.gz"


def _dicom_ending(p: Path) -> bool:
    return p.name.lower().endswith(DICOM_SUFFIXES)


def _strip(p: Path) -> str:
    name = p.name
    for s in IMAGE_SUFFIXES:
        if name.lower().endswith(s):
            return name[: -len(s)]
    return name  # a DICOM file named IM0001 or by its UID (1.2.840.99.1): all of it


def _strays_problem(folder: Path, strays: list[Path]) -> Problem:
    return Problem(
        str(folder),
        "a DICOM series folder is read as one volume and must hold only that series",
        f"also {', '.join(f.name for f in strays[:5])}{' ...' if len(strays) > 5 else ''}",
        "move the other images into another folder",
    )


def _channels_in_file(f: Path) -> tuple[int, bool]:
    from automed.data.io import read_header

    h = read_header(f)
    if h.geometry.dimension == 4:
        return h.geometry.size[3], True
    return h.components, False


def _extra_channels(
    groups: dict[str, dict[int, Path]], singles: list[Path], pat: re.Pattern[str], root: Path
) -> list[Problem]:
    """``CASE_0001``... beside ``CASE_0000`` sent to a one-channel model (they would be predicted as separate
    cases): one problem per case; those files are taken out of ``groups`` and ``singles``."""
    out = []
    for cid in sorted(groups):
        extra = [f for f in singles if (m := pat.match(_strip(f))) and m["case"] == cid]
        if extra:
            names = [groups[cid][0].name, *(f.name for f in extra)]
            out.append(
                Problem(
                    str(root / cid),
                    "the model needs 1 channel per case",
                    f"channel files {names}",
                    "predict with a model trained on these channels, or pass only the channel it was trained on",
                )
            )
            del groups[cid]
            singles[:] = [f for f in singles if f not in extra]
    return out


def _check_case_ids(cases: list[InputCase], root: Path, from_csv: bool) -> None:
    """Every prediction, map and review file is named by its case ID. A CSV's ``SubjectID`` is free text: it must be
    a safe file name (``../x`` or ``/home/u/x`` would write outside the output folder). An ID from a file or folder
    name is one name already (``1.000000-CT Abdomen-12345`` is fine); only ``.``, ``..`` or a hidden name are not.
    IDs are unique ignoring letter case and file type (``a.png`` and ``a.nii.gz`` would write one ``a_gcam.png``,
    one review, two table rows)."""

    def unsafe(cid: str) -> bool:
        return (not SAFE_ID.fullmatch(cid) if from_csv else "/" in cid or "\\" in cid) or cid.startswith(".")

    problems = [
        Problem(
            str(root),
            "case IDs must be safe file names: letters, digits, '.', '_' and '-' only, not starting with '.'"
            if from_csv
            else "an input's name must not start with '.'",
            f"case ID {c.case_id!r} of {', '.join(p.name for p in c.images)}",
            "rename the SubjectID: outputs are named by it" if from_csv else "rename the file or folder",
        )
        for c in cases
        if not c.case_id or unsafe(c.case_id)
    ]

    def named(p: Path) -> str:  # where in the input folder: two series folders are both SERIES1
        return p.relative_to(root).as_posix() if p.is_relative_to(root) else p.name

    by_name: dict[str, list[str]] = {}
    for c in cases:
        by_name.setdefault(c.case_id.casefold(), []).append(", ".join(named(p) for p in c.images))
    problems += [
        Problem(
            str(root),
            "every input must have its own case ID (case-insensitively, whatever its file type)",
            f"{name} from {files}",
            "rename one of the inputs, or predict them from separate folders",
        )
        for name, files in sorted(by_name.items())
        if len(files) > 1
    ]
    if problems:
        raise DatasetError(problems, f"cannot read the input {root}")


def listed_files(input_path: str | Path) -> list[Path]:
    """The images (and labels) a CSV input lists, wherever they are: outputs must not replace them (a folder input
    protects itself). Read from the CSV alone, before any model is loaded; a CSV that cannot be read lists none here
    (:func:`discover` reports it)."""
    root = Path(input_path).expanduser()
    if not (root.is_file() and root.suffix.lower() == ".csv"):
        return []
    from automed.data.dataset import load_csv

    try:
        ds = load_csv(root.resolve())
    except DatasetError:
        return []
    return [p for c in ds.cases for p in (*c.images, *([c.label] if c.label else []))]


def _one_channel_series(folder: Path, n_channels: int) -> None:
    if n_channels != 1:
        raise DatasetError.single(
            folder,
            f"the model needs {n_channels} channels per case; a DICOM series folder is one",
            "a DICOM series",
            "convert each series to NIfTI (`automed convert`) and name the files CASE_0000.nii.gz, "
            "CASE_0001.nii.gz, ... or list them per channel in a CSV",
        )


def _series_problems(folders: list[Path]) -> list[Problem]:
    """A DICOM series folder is read as one volume, slices in GDCM's order: one with a slice missing or several
    volumes in it would be predicted on a wrong grid, so it is refused before any model runs."""
    from automed.data.io import dicom_series_files
    from automed.tools.dicom_convert import series_volume_problems

    return [p for d in folders for p in series_volume_problems(d, dicom_series_files(d))]


def check_dimension(cases: list[InputCase], dimension: int) -> None:
    """Every case is a volume (``dimension`` 3) or a picture / single slice (2), as the model's training images
    were (an image-level network would otherwise take a volume's middle slice, or pad a picture into a volume);
    all mismatches at once. A DICOM series folder counts as a volume."""
    problems = []
    for c in cases:
        first = c.images[0]
        if first.is_dir():
            found = 3
        else:
            size = read_header(first).geometry.size
            found = 3 if len(size) > 2 and size[2] > 1 else 2
        if found != dimension:
            problems.append(
                Problem(
                    str(first),
                    f"the model was trained on {'volumes (3D)' if dimension == 3 else 'pictures or single slices (2D)'}",
                    f"a {'volume' if found == 3 else 'picture or single slice'}",
                    "predict with a model trained on images like this one",
                )
            )
    if problems:
        raise DatasetError(problems, "the input's images are not what the model takes")


def takes_dimension(predictor: Any) -> int | None:
    """The images an image-level predictor was trained on (2: pictures, so a DICOM folder is one case per file; 3:
    volumes); ``None`` for a segmentation predictor (a 2D network predicts volumes slice by slice too)."""
    return int(predictor.plan.image_dimension) if hasattr(predictor, "target") else None


def check_takes(cases: list[InputCase], predictor: Any) -> None:
    """The cases are images the predictor takes: an image-level model what it was trained on (volumes or pictures),
    a 3D segmentation network volumes (a 2D one predicts a volume slice by slice, or a picture)."""
    if hasattr(predictor, "target"):
        check_dimension(cases, predictor.plan.image_dimension)
        return
    model = getattr(predictor, "model", None)  # an export's networks
    holders = (predictor, *getattr(predictor, "members", []), *getattr(model, "members", []))
    dims = {int(h.spec.dimension) for h in holders if getattr(h, "spec", None) is not None}
    if 3 in dims:  # a fold ensemble, or any training of a pair, with a 3D network
        check_dimension(cases, 3)


def _single_file_case(f: Path, n_channels: int) -> InputCase | Problem:
    """One file holding a whole case: one channel per file, or a 4D / RGB file holding all of them."""
    n, is_4d = _channels_in_file(f)
    if n == n_channels:
        return InputCase(_strip(f), (f,), _suffix(f), is_4d)
    picture = f.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
    kind = {1: "grayscale", 3: "RGB"}.get(n_channels, f"{n_channels} channels")
    return Problem(
        str(f),
        f"the model needs {n_channels} channel(s) per case",
        f"{n} channel(s) in the file and no _XXXX channel index",
        f"save the picture as {kind}"
        + (" (without an alpha channel)" if n_channels in (1, 3) else "")
        + ", as the training images were"
        if picture
        else f"keep the {n_channels} volume(s) the model was trained on (e.g. save that volume of the 4D file on its "
        "own)"
        if n > n_channels
        else "name files CASE_0000.nii.gz, CASE_0001.nii.gz, ... or store all channels in one 4D file",
    )  # (a 4D file with more volumes than the model takes had been told to be a 4D file)


def discover(input_path: str | Path, n_channels: int, dimension: int | None = None) -> list[InputCase]:
    """Cases under ``input_path`` with exactly ``n_channels`` images each; all problems reported at once.

    A folder is one DICOM series case when it holds a series of several files (:func:`is_series_folder`); single-file
    DICOM (X-rays) are one case per file, and so is every file for a model on pictures (``dimension`` 2: an
    image-level model's ``plan.image_dimension``; ``None`` when the model takes volumes or either). Sub-folders are
    read for DICOM alone, at any depth, by the same rule: a series volume each (``PATIENT_STUDY_SERIES`` for
    ``PATIENT/STUDY/SERIES``), or a case per file named ``FOLDER_FILE``; each folder once (:func:`sub_folders`), up
    to a limit on folders and entries (a home folder given by mistake is refused, not read: ``InputTooLargeError``).
    For an image-level model a sub-folder's other images are a case each too, named as training names a
    folder-per-class dataset's (``test/<class>/<images>``: ``<class>_<file stem>``; :func:`subfolder_files`)."""
    try:
        return _discover(input_path, n_channels, dimension)
    except InputTooLargeError as exc:
        raise DatasetError.single(exc.where, exc.rule, exc.value, exc.fix) from None


def _discover(input_path: str | Path, n_channels: int, dimension: int | None) -> list[InputCase]:
    root = cd_folder(Path(input_path).expanduser().resolve())
    if not root.exists():
        raise DatasetError.single(
            root, "the input must exist", "missing", "pass a folder, a DICOM folder or a CSV"
        )
    if bad := not_utf8(root):
        raise DatasetError.single(shown(root), UTF8_RULE, listed(bad), UTF8_FIX)
    from_csv = root.is_file() and root.suffix.lower() == ".csv"
    skipped: list[str] = []  # what a folder holds that no case reads
    if from_csv:
        from automed.data.dataset import load_csv

        ds = load_csv(root)
        cases = [InputCase(c.case_id, c.images, _suffix(c.images[0])) for c in ds.cases]
    elif root.is_file():
        if kind := not_an_image(root):
            raise DatasetError.single(
                root, "an input must be an image", kind, "pass the images it was made from"
            )
        one = _single_file_case(root, n_channels)
        if isinstance(one, Problem):  # a 4D file of other volumes, a picture of other channels
            raise DatasetError([one], f"cannot read the input {root}")
        if (m := re.match(r"^(?P<case>.+)_0000$", one.case_id)) and n_channels == 1:
            one = replace(one, case_id=m["case"])  # CASE_0000.nii.gz -> CASE.nii.gz, as from a folder
        cases = [one]
    elif is_series_folder(root, dimension):
        _one_channel_series(root, n_channels)
        if strays := series_strays(root):
            raise DatasetError([_strays_problem(root, strays)], f"cannot read the input {root}")
        if problems_series := _series_problems([root]):
            raise DatasetError(problems_series, f"cannot read the input {root}")
        cases = [InputCase(root.name, (root,), ".nii.gz")]
        if skipped := series_unread(root):
            log.warning("%s: %s", root, unread_note(skipped))
    else:
        pat = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})$")
        groups: dict[str, dict[int, Path]] = {}
        singles: list[Path] = []
        problems_early: list[Problem] = []
        for f in entries(root):
            if f.is_file() and has_image_suffix(f) and not (_dicom_ending(f) and not_an_image(f)):
                m = pat.match(_strip(f))
                if (m and n_channels > 1) or (m and m["ch"] == "0000"):
                    assert m is not None
                    chans = groups.setdefault(m["case"], {})
                    if int(m["ch"]) in chans:  # x_0000.nii.gz and x_0000.nrrd: one would be dropped unseen
                        problems_early.append(
                            Problem(
                                str(f),
                                "one file per channel of a case",
                                f"{chans[int(m['ch'])].name} and {f.name}",
                                "remove or move one of them",
                            )
                        )
                    chans[int(m["ch"])] = f
                else:
                    singles.append(f)
        cases = []
        problems: list[Problem] = problems_early + (
            _extra_channels(groups, singles, pat, root) if n_channels == 1 else []
        )
        for cid, chans in sorted(groups.items()):
            want = list(range(n_channels))
            if sorted(chans) != want:
                problems.append(_channel_set_problem(root, cid, chans, want))
                continue
            many = [chans[c] for c in want if _channels_in_file(chans[c])[0] != 1]
            if many:  # a 4D or vector file named as one channel
                problems.append(Problem(str(many[0]), "a CASE_XXXX file holds one channel",
                                        f"{_channels_in_file(many[0])[0]} channels (volumes or components)",
                                        "split it into one file per channel, or drop the _XXXX index"))  # fmt: skip
                continue
            first = chans[0]
            cases.append(InputCase(cid, tuple(chans[c] for c in want), _suffix(first)))
        for f in singles + lone_dicom_files(root, dimension):
            try:
                one = _single_file_case(f, n_channels)
            except DatasetError:
                if no_image_dicom(f):  # a report beside the X-rays: named as not read
                    continue
                raise
            if isinstance(one, Problem):
                problems.append(one)
            else:
                cases.append(one)
        series = []  # each sub-folder whole before the next: its GDCM scan stays cached meanwhile
        folders, links = sub_folders(root)
        for d in folders:
            if is_series_folder(d, dimension):
                _one_channel_series(d, n_channels)
                series.append(d)
                if strays := series_strays(d):
                    problems.append(_strays_problem(d, strays))
                problems += _series_problems([d])
                continue
            for cid, f in subfolder_files(root, d, dimension):
                each = _single_file_case(f, n_channels)
                if isinstance(each, Problem):
                    problems.append(each)
                else:
                    cases.append(replace(each, case_id=cid, suffix=".nii.gz"))
        cases += [InputCase(sub_case_id(root, d, dimension), (d,), ".nii.gz") for d in series]
        if problems:
            raise DatasetError(problems, f"cannot read the input {root}")
        skipped = unread(root, with_data_files({p for c in cases for p in c.images}), links)
        if skipped and cases:
            log.warning("%s: %s", root, unread_note(skipped))
    _check_case_ids(cases, root, from_csv)
    if undecoded := undecodable([c.images[0] for c in cases]):
        raise DatasetError(
            [
                Problem(str(root), "DICOM pixels must be uncompressed or in a compression SimpleITK decodes",
                        f"{how} in {len(inputs)} input(s): {listed(inputs)}", DECOMPRESS)
                for how, inputs in undecoded.items()
            ],
            f"cannot read the input {root}",
        )  # fmt: skip
    if not cases:
        raise DatasetError.single(
            root,
            "the input must hold at least one image",
            f"none; {unread_note(skipped)}" if skipped else "none",
            "put NIfTI/NRRD/MHA files, DICOM series or a CSV there",
        )
    return sorted(cases, key=lambda c: c.case_id)


def _channel_set_problem(root: Path, cid: str, chans: dict[int, Path], want: list[int]) -> Problem:
    """A case whose channel files are not the model's: the files missing and those beyond its channels, named."""
    suffix = _suffix(next(iter(chans.values())))
    missing = [f"{cid}_{c:04d}{suffix}" for c in want if c not in chans]
    extra = [chans[c].name for c in sorted(chans) if c not in want]
    fix = "; ".join(
        ([f"add {', '.join(missing)}"] if missing else [])
        + ([f"remove or move {', '.join(extra)} (the model takes {len(want)} channel(s))"] if extra else [])
    )
    return Problem(
        str(root / cid),
        f"each case needs channels {want} (CASE_0000 ... naming)",
        f"channels {sorted(chans)}",
        fix,
    )
