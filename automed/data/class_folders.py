"""The folder-per-class layout of image classification: ``DIR/<class name>/<image files>``.

No ``dataset.json`` and no CSV: the sub-folder names are the classes (sorted; the index of a name is the case's
``value``), every image file directly inside one is a case of that class with one channel. Each image is its own
subject (no patient grouping: several images of one patient belong in a CSV with a ``PatientID`` column). DICOM series
folders are not supported here (a class folder must hold image files, not folders).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from automed.artifacts import output_kind, unmarked_kind
from automed.data.io import IMAGE_SUFFIXES, has_image_suffix
from automed.data.schema import Case, Dataset
from automed.errors import DatasetError, Problem
from automed.runtime.folders import safe_id
from automed.workdir import WORKDIR_MARKERS

# Sub-folder names of segmentation layouts (nnU-Net, MSD, common custom trees): a folder holding one of these is a
# segmentation dataset missing its dataset.json, never a set of classes.
SEGMENTATION_FOLDERS = frozenset(
    {"imagestr", "labelstr", "imagests", "labelsts", "images", "labels", "image", "label", "masks", "mask"}
)
IGNORED_FILES = frozenset({"thumbs.db", "desktop.ini"})  # written by file browsers
LAYOUT_RULE = "a folder-per-class dataset is DIR/<class name>/<image files>, at least two classes"


def _visible(p: Path) -> bool:
    return not p.name.startswith(".") and p.name.lower() not in IGNORED_FILES


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and _visible(p))


def looks_like_class_folders(root: Path, *, ignore_csv: bool = False, least: int = 2) -> bool:
    """Whether ``root`` (a folder without ``dataset.json``) is meant as the folder-per-class layout: no CSV (unless
    ``ignore_csv``), at least ``least`` visible sub-folders (a dataset: two classes; a test set scored by
    ``automed metrics``: one may do), none named like a segmentation layout's, and image files in at least one."""
    if (root / "dataset.json").exists() or (not ignore_csv and any(root.glob("*.csv"))):
        return False
    dirs = _class_dirs(root)
    if len(dirs) < least or any(d.name.lower() in SEGMENTATION_FOLDERS for d in dirs):
        return False
    return any(f.is_file() and has_image_suffix(f) for d in dirs for f in d.iterdir())


def may_be_class_folders(root: Path) -> bool:
    """Whether ``root`` (no ``dataset.json``, no CSV) has visible sub-folders, none named like a segmentation
    layout's: then the folder-per-class rules explain what is wrong better than "add a dataset.json" (one class
    folder, or folders of ``.jpeg`` files, are not the layout yet)."""
    if (root / "dataset.json").exists() or any(root.glob("*.csv")):
        return False
    dirs = _class_dirs(root)
    return bool(dirs) and not any(d.name.lower() in SEGMENTATION_FOLDERS for d in dirs)


def image_stem(path: Path) -> str:
    """The file name without its image suffix (``a.nii.gz`` -> ``a``)."""
    low = path.name.lower()
    for s in IMAGE_SUFFIXES:
        if low.endswith(s):
            return path.name[: -len(s)]
    return path.stem


def _automed_folder(folder: Path) -> str | None:
    """What automed wrote as ``folder`` (a work dir, an export, predictions, ...); None: nothing of automed's."""
    if any((folder / m).is_file() for m in WORKDIR_MARKERS):
        return "work dir"
    kind = output_kind(folder) or unmarked_kind(folder)
    return None if kind is None else f"{kind} output"


def _folder_problems(root: Path, dirs: list[Path]) -> tuple[dict[str, list[Path]], list[Problem]]:
    """The image files of each class folder, and every problem of the tree (all of them, not the first). A folder
    automed wrote there (``-o`` inside the dataset) is said as such, not as a class of wrong files."""
    problems: list[Problem] = []
    images: dict[str, list[Path]] = {}
    written = {d: kind for d in dirs if (kind := _automed_folder(d))}
    for d, kind in written.items():
        problems.append(
            Problem(
                str(d),
                f"{LAYOUT_RULE}: every sub-folder is a class (an automed output inside the dataset folder is read "
                "as one)",
                f"an automed {kind}",
                f"move {d.name} out of {root} (write automed's outputs beside the dataset, e.g. -o work)",
            )
        )
    dirs = [d for d in dirs if d not in written]
    for f in sorted(root.iterdir()):
        if f.is_file() and has_image_suffix(f):
            problems.append(
                Problem(
                    str(f),
                    f"{LAYOUT_RULE}: images belong inside a class folder",
                    "an image directly in the dataset folder",
                    "move it into the folder of its class",
                )
            )
    for d in dirs:
        files = sorted(f for f in d.iterdir() if _visible(f))
        for f in files:
            if f.is_dir():
                problems.append(
                    Problem(
                        str(f),
                        f"{LAYOUT_RULE}: a class folder holds image files, not folders",
                        "a folder (DICOM series folders are not supported in this layout)",
                        "convert the series to one image file (e.g. NIfTI), or list the cases in a CSV",
                    )
                )
            elif not has_image_suffix(f):
                problems.append(
                    Problem(
                        str(f),
                        f"{LAYOUT_RULE}: every file must be an image ({', '.join(IMAGE_SUFFIXES)})",
                        f"suffix {''.join(f.suffixes) or 'none'!r}",
                        "remove the file, or convert it to one of these formats (rename .jpeg to .jpg)",
                    )
                )
        images[d.name] = [f for f in files if f.is_file() and has_image_suffix(f)]
        if not images[d.name]:
            problems.append(
                Problem(
                    str(d),
                    f"{LAYOUT_RULE}: every class folder needs images",
                    "an empty class folder",
                    "add the images of this class, or remove the folder",
                )
            )
    return images, problems


def _cases(images: dict[str, list[Path]]) -> tuple[list[Case], list[Problem]]:
    """One case per image, its id ``<class>_<file stem>`` made safe; ids that coincide (also in letter case) are
    problems naming every file involved."""
    names = sorted(images)
    cases: list[Case] = []
    files_of: defaultdict[str, list[tuple[str, Path]]] = defaultdict(list)
    for index, name in enumerate(names):
        for f in images[name]:
            cid = safe_id(f"{name}_{image_stem(f)}")
            files_of[cid.casefold()].append((cid, f))
            cases.append(Case(cid, (f,), None, float(index), None))
    problems = [
        Problem(
            str(same[0][1].parent),
            "case IDs (<class folder>_<file name without suffix>, characters other than letters, digits, '.', '_' "
            "and '-' replaced by '_') must be unique, also ignoring letter case",
            f"the files {[f.name for _, f in same]} give the IDs {sorted({cid for cid, _ in same})}",
            "rename all but one of these files",
        )
        for same in files_of.values()
        if len(same) > 1
    ]
    return sorted(cases, key=lambda c: c.case_id), problems


def load_class_folders(root: Path, *, least: int = 2) -> Dataset:
    """Parse a folder-per-class dataset (see the module docstring); raise a :class:`DatasetError` listing every
    problem of the tree: images outside class folders, sub-folders and non-image files inside them, empty class
    folders, clashing case IDs, fewer than ``least`` classes (a test set scored by ``automed metrics``: one)."""
    dirs = _class_dirs(root)
    images, problems = _folder_problems(root, dirs)
    if len(dirs) < least:
        problems.append(
            Problem(
                str(root),
                LAYOUT_RULE,
                f"{len(dirs)} class folder(s): {[d.name for d in dirs]}",
                "add a folder of images for every class (classification needs at least two)",
            )
        )
    cases, clashes = _cases(images)
    problems += clashes
    if problems:
        raise DatasetError(problems, f"cannot read {root} as one folder of images per class")
    labels = dict(enumerate(sorted(images)))
    return Dataset(root.name, root, "folders", ("",), labels, tuple(cases))
