"""The ``truth`` column of a classification model's ``predictions.csv`` when the input is a folder-per-class test set
(``IN/<class>/<images>``, the layout classification trains on): the folder names each image's class, so the table
says it beside the prediction (``automed metrics`` then needs no reference CSV to be written by hand).

The input is read as such a set when every case lies one level down (``IN/<folder>/<image or DICOM series>``) and
at least one of those folders is named as one of the model's classes. A folder that is not one of them (a typo,
another spelling, a class the model does not know) is named in a warning and its images' ``truth`` is left empty:
a wrong truth would score silently. Folders none of which is a class (patients, wards) are no class folders: no
column."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("automed")


def folder_truth(input_path: str | Path, cases: list[Any], target: Any) -> dict[str, str] | None:
    """Case ID -> its class folder's name (``""`` for a folder that is not one of the model's classes) when
    ``input_path`` is a folder-per-class test set of a classification model (``target``: its plan's target);
    ``None`` otherwise (no ``truth`` column)."""
    classes = list(getattr(target, "class_names", None) or [])
    root = Path(input_path).expanduser().resolve()
    if getattr(target, "kind", None) != "classification" or not classes or not root.is_dir() or not cases:
        return None
    folder_of: dict[str, str] = {}
    for c in cases:
        image = c.images[0]
        if not image.is_relative_to(root) or len(parts := image.relative_to(root).parts) != 2:
            return None  # an image at the top or deeper than a class folder: not this layout
        folder_of[c.case_id] = parts[0]
    folders = sorted(set(folder_of.values()))
    others = [f for f in folders if f not in classes]
    if len(others) == len(folders):
        return None
    if others:
        near = {f: c for f in others for c in classes if c.casefold() == f.casefold()}
        log.warning(
            "%s: a folder-per-class input's folders are the model's classes (%s); %s %s not (%s): their images' "
            "truth in predictions.csv is left empty; rename each folder to its class%s",
            root, ", ".join(classes), ", ".join(f"{f}/" for f in others), "is" if len(others) == 1 else "are",
            f"{sum(1 for f in folder_of.values() if f in others)} image(s)",
            "".join(f" ({f}/ -> {c}/)" for f, c in near.items()),
        )  # fmt: skip
    return {cid: folder if folder in classes else "" for cid, folder in folder_of.items()}
