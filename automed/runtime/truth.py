"""The ``truth`` column of a classification model's ``predictions.csv`` when the input is a folder-per-class test set
(``IN/<class>/<images>``, the layout classification trains on): the folder names each image's class, so the table
says it beside the prediction. Shared by ``automed predict`` and the bundle's ``predict.py``.

The input is read as such a set when every case lies one level down (``IN/<folder>/<image or DICOM series>``) and
at least one of those folders is named as one of the model's classes. A folder that is not one of them (a typo,
another spelling, a class the model does not know) is named in a warning and its images' ``truth`` is left empty:
a wrong truth would score silently. Folders none of which is a class (patients, wards) are no class folders: no
column."""

from __future__ import annotations

import unicodedata
from pathlib import Path


def folder_truth(
    root: Path, cases: list[tuple[str, Path]], kind: str | None, classes: list[str]
) -> tuple[dict[str, str] | None, str | None]:
    """Case ID -> its class folder's name (``""`` for a folder that is not one of ``classes``) when ``root`` is a
    folder-per-class test set of a classification model (``kind``) whose ``cases`` are ``(case ID, first image)``;
    ``None`` otherwise (no ``truth`` column). Also the warning naming the folders that are not classes, if any."""
    if kind != "classification" or not classes or not root.is_dir() or not cases:
        return None, None
    # one spelling per name: macOS writes folder names decomposed (NFD), a CSV's class names are mostly composed
    # (NFC); `Ödem/` spelt one way was "not a class" of a model trained on the other (its correct cases scored wrong)
    spelt = {unicodedata.normalize("NFC", c): c for c in classes}
    folder_of: dict[str, str] = {}
    for cid, image in cases:
        if not image.is_relative_to(root) or len(parts := image.relative_to(root).parts) != 2:
            return None, None  # an image at the top or deeper than a class folder: not this layout
        name = unicodedata.normalize("NFC", parts[0])
        # integer classes are read as numbers ("01" in a CSV is class "1"): a folder 01/ is that class too
        number = str(int(name)) if name.isdecimal() and name.isascii() else name
        folder_of[cid] = spelt.get(name, spelt.get(number, parts[0]))
    folders = sorted(set(folder_of.values()))
    others = [f for f in folders if f not in classes]
    if len(others) == len(folders):
        return None, None
    truth = {cid: folder if folder in classes else "" for cid, folder in folder_of.items()}
    if not others:
        return truth, None
    near = "".join(f" ({f}/ -> {c}/)" for f in others for c in classes if c.casefold() == f.casefold())
    n = sum(1 for f in folder_of.values() if f in others)
    warning = (
        f"{root}: a folder-per-class input's folders are the model's classes ({', '.join(classes)}); "
        f"{', '.join(f'{f}/' for f in others)} {'is' if len(others) == 1 else 'are'} not ({n} image(s)): their "
        f"images' truth in predictions.csv is left empty; rename each folder to its class{near}"
    )
    return truth, warning
