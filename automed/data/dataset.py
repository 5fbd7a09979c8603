"""One :class:`Dataset` model for every supported layout: MSD, nnU-Net v2 raw, GaNDLF-style CSV and one folder of
images per class.

Loading only parses the description (``dataset.json``, the CSV or the folder tree); it never opens an image. Whether
the files exist and agree with each other is :func:`automed.data.verify.verify`'s job.

The model lives in :mod:`automed.data.schema`, the parsers in :mod:`automed.data.json_layouts` (MSD, nnU-Net v2),
:mod:`automed.data.csv_layout` (CSV) and :mod:`automed.data.class_folders` (folder per class), and the CSV builder
in :mod:`automed.data.csv_construct`; this module picks the parser for a path and re-exports their public names.
"""

from __future__ import annotations

from pathlib import Path

from automed.data.class_folders import load_class_folders, looks_like_class_folders, may_be_class_folders
from automed.data.csv_construct import construct_csv
from automed.data.csv_layout import (
    CHANNEL_PREFIXES,
    GROUP_COLUMNS,
    KNOWN_CSV_COLUMNS,
    LABEL_COLUMNS,
    SUBJECT_COLUMNS,
    VALUE_COLUMNS,
    load_csv,
)
from automed.data.io import has_image_suffix
from automed.data.json_layouts import load_dataset_json
from automed.data.paths import os_problem
from automed.data.schema import Case, Dataset, Layout, TaskType
from automed.data.verify_dataset import decimal_comma_hint
from automed.errors import DatasetError, Problem

__all__ = [
    "CHANNEL_PREFIXES",
    "GROUP_COLUMNS",
    "KNOWN_CSV_COLUMNS",
    "LABEL_COLUMNS",
    "SUBJECT_COLUMNS",
    "VALUE_COLUMNS",
    "Case",
    "Dataset",
    "Layout",
    "TaskType",
    "construct_csv",
    "load_class_folders",
    "load_csv",
    "load_dataset",
    "load_dataset_json",
]


TASKS = ("auto", "segmentation", "classification", "regression")


def with_task(ds: Dataset, task: str | None) -> Dataset:
    """``ds`` with its task decided by the user (``--task``) instead of by its targets: integer targets as a
    regression, or numbers as classes; refused (file, rule, value, fix) when the data cannot be that task."""
    from dataclasses import replace

    from automed.registry import check_choice

    if task in (None, "auto"):
        return ds
    check_choice(task, TASKS, what="the task", where="--task")
    has_maps = any(c.label is not None for c in ds.cases)
    values = [c.value for c in ds.cases if c.value is not None]
    if (task == "segmentation") != has_maps or (task != "segmentation" and not values):
        raise DatasetError.single(
            ds.source,
            f"--task {task} needs " + ("label maps (a Label column)" if task == "segmentation" else "targets (ValueToPredict)"),
            "label maps" if has_maps else ("targets" if values else "neither"),
            f"use --task {ds.task_type} (what the data says) or fix the dataset",
        )  # fmt: skip
    labels = ds.labels
    if task == "regression":
        if ds.labels is not None and ds.layout == "folders":
            raise DatasetError.single(ds.source, "--task regression needs numbers, not class folders",
                                      "class folders", "use a CSV with numeric ValueToPredict")  # fmt: skip
        names = [n for k, n in sorted((ds.labels or {}).items()) if n != str(k)]
        if (
            names
        ):  # class names would be trained as their alphabetical positions, values no one could read back
            raise DatasetError.single(
                ds.source,
                "--task regression needs numeric ValueToPredict",
                f"class names {', '.join(repr(n) for n in names[:5])}{' ...' if len(names) > 5 else ''}",
                "write the numbers themselves (e.g. an ordinal score 0, 1, 2), or use --task classification"
                + decimal_comma_hint(names),
            )
        labels = None
    elif task == "classification" and labels is None:
        if not all(float(v).is_integer() for v in values):
            raise DatasetError.single(ds.source, "--task classification needs class names or integer classes",
                                      "non-integer targets", "round them to classes, or use --task regression")  # fmt: skip
        labels = {int(v): str(int(v)) for v in sorted(set(values))}
    return replace(ds, labels=labels, extra={**ds.extra, "task": task})


def load_dataset(path: str | Path, task: str | None = None) -> Dataset:
    """Parse a dataset folder (holding ``dataset.json``, or one sub-folder of images per class), a ``dataset.json``
    file or a CSV file; ``task`` (``--task``) overrides the task the targets suggest (:func:`with_task`).

    An operating-system error on the way (a symlink loop, a permission problem) is a :class:`DatasetError` naming
    the path, like any other problem of the input."""
    raw = Path(path).expanduser()
    try:
        return with_task(_load(raw.resolve()), task)
    except (OSError, RuntimeError) as exc:  # RuntimeError: Python 3.11's Path.resolve on a symlink loop
        if isinstance(exc, RuntimeError) and "symlink loop" not in str(exc).lower():
            raise
        where = exc.filename if isinstance(exc, OSError) and exc.filename else raw
        raise DatasetError(
            [os_problem(Path(where), exc, rule="the dataset and its description must be readable")]
        ) from exc


def _load(p: Path) -> Dataset:
    if p.is_dir():
        dj = p / "dataset.json"
        if not dj.is_file() and looks_like_class_folders(p):
            return load_class_folders(p)
        if not dj.is_file():
            csvs = sorted(p.glob("*.csv"))
            hint = (
                f" or pass the CSV ({csvs[0].name})"
                if csvs
                else " or build a CSV with `automed construct-csv`"
            )
            if csvs and looks_like_class_folders(p, ignore_csv=True):  # a stray CSV beside folders of classes
                hint += "; for one sub-folder of images per class, move the CSV out of this folder"
            found = "no dataset.json"
            images = [f for f in p.iterdir() if f.is_file() and has_image_suffix(f)]
            if images and not csvs:  # lying loose: construct-csv takes DIR/<subject>/<files>, not them
                found += f" ({len(images)} image files directly in the folder)"
                hint = _loose_images_hint(p, images)
            missing = Problem(
                str(p), "a dataset folder must contain dataset.json", found, f"add one (MSD or nnU-Net v2){hint}",
            )  # fmt: skip
            if may_be_class_folders(p):  # meant as folders of classes? then say what that layout lacks too
                try:
                    return load_class_folders(p)
                except DatasetError as exc:
                    raise DatasetError([missing, *exc.problems], f"cannot read {p}") from exc
            raise DatasetError([missing], f"cannot read {p}")
        return load_dataset_json(dj)
    if not p.exists():
        raise DatasetError.single(p, "the dataset path must exist", "missing", "check the path")
    if p.suffix.lower() == ".csv":
        return load_csv(p)
    if p.suffix.lower() == ".json":
        return load_dataset_json(p)
    raise DatasetError.single(
        p,
        "a dataset is a folder with dataset.json, a dataset.json or a .csv",
        p.suffix or "no suffix",
        "pass one of those",
    )


def _loose_images_hint(p: Path, images: list[Path]) -> str:
    """What takes image files lying directly in a dataset folder, by what they are: DICOM files (slices of series),
    volumes (label maps beside them, or a value each) or 2D pictures (a class or value each)."""
    from automed.runtime.io import DICOM_SUFFIXES

    names = [f.name.lower() for f in images]
    if all(n.endswith(DICOM_SUFFIXES) for n in names):
        return (
            f"; for DICOM files, put each series in a folder of its own ({p.name}/<subject>/<series>/<files>) and "
            f"run `automed construct-csv {p}`"
        )
    if all(n.endswith((".png", ".jpg", ".jpeg", ".bmp")) for n in names):
        return (
            f"; for pictures lying in it, sort them into one sub-folder per class ({p.name}/<class>/<images>) or "
            "list them in a CSV (SubjectID, Channel_0, ValueToPredict) beside them"
        )
    return (
        "; for images lying in it, list them in a CSV beside them: SubjectID, Channel_0 and Label (the label map "
        "of each image) or ValueToPredict (a class or value per image); or sort pictures into one sub-folder per "
        f"class ({p.name}/<class>/<images>)"
    )
