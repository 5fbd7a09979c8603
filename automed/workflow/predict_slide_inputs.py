"""Which whole slides ``automed predict`` tiles, and the name of each one's outputs: slides at any depth of the input
folder, found as other inputs are (:func:`automed.runtime.folders.sub_folders`: each folder once, links that loop not
followed, the size limit). Slides used to be read at the top of the input folder alone: a slide one folder down was
"no images found" for a segmentation model, and read whole as a picture by an image-level one.

A slide at the top keeps its name (``S`` of ``S.svs``; two files of one name, ``e.tif`` and ``e.tiff``, are ``e``
and ``e_2``); one deeper is named by its place, the folders' names and its own joined by ``_``
(``patient1/s.svs``: ``patient1_s``; a DICOM whole slide, files of one series in a folder: the folders' names)
with characters other than letters, digits, ``.``, ``_`` and ``-`` as ``_``. Two slides whose names coincide
(``a_b/c.svs`` and ``a/b_c.svs``), also in letter case, are refused naming both: their outputs would overwrite
each other. Images in folders without slides are not predicted beside slides: named in a warning."""

from __future__ import annotations

import logging
import math
from pathlib import Path

from automed.errors import ConfigError, DatasetError
from automed.runtime.folders import InputTooLargeError, entries, folder_id, safe_id, sub_folders

log = logging.getLogger("automed")


def found_slides(input_path: Path) -> tuple[list[Path], list[str]] | None:
    """The whole slides of ``input_path`` (a slide, or a folder holding slides at any depth) and the name of each
    one's outputs; ``None`` when it holds none (images, DICOM series, a CSV: predicted as such)."""
    from automed.data.io import has_image_suffix
    from automed.wsi.slide import slide_inputs, slide_name

    top = slide_inputs(input_path)
    if not input_path.is_dir():
        return None if top is None else (top, _deduplicated([slide_name(p) for p in top]))
    try:
        folders, _ = sub_folders(input_path)
    except InputTooLargeError as exc:
        raise DatasetError.single(exc.where, exc.rule, exc.value, exc.fix) from None
    by_folder = {input_path: top} if top else {}
    by_folder.update({f: found for f in folders if (found := slide_inputs(f))})
    if not by_folder:
        return None
    slides: list[Path] = []
    names: list[str] = []
    for folder, found in by_folder.items():
        slides += found
        names += _deduplicated(
            [slide_name(p) if folder == input_path else _deeper_name(input_path, folder, p, slide_name(p))
             for p in found]
        )  # fmt: skip
    _refuse_clashes(input_path, slides, names)
    # images in folders without slides are not predicted: said (those beside slides are, by slide_inputs)
    others = [
        p.relative_to(input_path).as_posix()
        for f in [input_path, *folders]
        if f not in by_folder
        for p in entries(f)
        if p.is_file() and has_image_suffix(p)
    ]
    if others:
        log.warning(
            "%s: %d slide(s) predicted; %d image(s) in other folders are not (%s%s): predict images from a "
            "folder of their own", input_path, len(slides), len(others), ", ".join(others[:5]),
            " ..." if len(others) > 5 else "",
        )  # fmt: skip
    return slides, names


def check_slide_options(
    input_path: str | Path,
    slides: list[Path] | None,
    *,
    review: bool,
    output_format: str,
    mpp: float | None,
    slide_mpp: float | None,
) -> None:
    """Options that do not apply to whole slides, and pixel sizes that cannot be, refused before the model loads:
    ``--output-format dicom-seg`` on a slide had written the slide's TIFFs and no segmentation without a word, and
    ``--mpp 0`` or ``-1`` was "a slide must be at least as fine as the model's resolution ... model -1"."""
    if slides is None:
        return
    if review:
        raise ConfigError.single(input_path, "--review/--log-review review images, not whole slides",
                                 f"{len(slides)} slide(s)", "drop --review: a slide's overlay, heatmaps, "
                                 "count map and tile CSV are its review")  # fmt: skip
    if output_format != "nifti":
        raise ConfigError.single(
            input_path, f"--output-format {output_format} writes segmentations of DICOM series inputs",
            f"{len(slides)} whole slide(s)", "drop --output-format: a slide's label map is a pyramidal TIFF "
            "(S_labels.tif) of its own size",
        )  # fmt: skip
    for name, value in (("--mpp", mpp), ("--slide-mpp", slide_mpp)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError.single(name, "a pixel size is a positive number of micrometres", value,
                                     f"pass e.g. {name} 0.5")  # fmt: skip


def _deeper_name(root: Path, folder: Path, slide: Path, name: str) -> str:
    """The output name of a slide (``name``: its own) in ``folder`` below the input folder ``root``: the folders'
    names and its own (a DICOM slide, files of one series: its folders'), made safe."""
    parts = () if slide.suffix.lower() == ".dcm" else (name,)
    return safe_id(folder_id(root, folder, *parts))


def _deduplicated(names: list[str]) -> list[str]:
    """One folder's slide names, a name taken already there with ``_2``, ``_3``, ... (``e.tif`` and ``e.tiff``,
    ``a.x.svs`` and ``a.y.svs``)."""
    out: list[str] = []
    for base in names:
        name, i = base, 2
        while name in out:
            name, i = f"{base}_{i}", i + 1
        out.append(name)
    return out


def _refuse_clashes(root: Path, slides: list[Path], names: list[str]) -> None:
    first: dict[str, tuple[Path, str]] = {}
    for p, n in zip(slides, names, strict=True):
        if (seen := first.get(n.casefold())) is not None:
            same, named = seen
            both = f"{same.relative_to(root).as_posix()} and {p.relative_to(root).as_posix()}"
            raise DatasetError.single(
                root,
                "every slide needs its own output name, also in letter case (a slide below the input folder is named "
                "by its folders and its name joined by '_', characters other than letters, digits, '.', '_' and '-' "
                "as '_')",
                f"{both} are both {n!r}"
                if named == n
                else f"{both} are named {named!r} and {n!r}, which differ only in letter case",
                "rename one of them (or its folder), or predict them from separate folders",
            )
        first[n.casefold()] = (p, n)
