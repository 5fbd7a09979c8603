"""``automed patch-miner``: whole slides -> PNG patches + a CSV that ``automed train`` reads directly.

Inputs: slide files, a folder of slides, or a CSV ``SubjectID,Channel_0[,Label][,ValueToPredict][,PatientID]`` (one slide per
row; a label map - a PNG/TIFF mask at any scale of the slide - or a slide-level class/value; with
``class_from_label`` each patch's class is the label covering most of it, for patch classification). Output folder:
``patches/<slide>/<x>_<y>.png`` (+ ``labels/...``), ``patches.csv`` (``SubjectID``, ``PatientID`` = the CSV's
``PatientID`` column, else the slide, so folds are grouped by patient, ``Channel_0``, ``Label``/``ValueToPredict``, and ``Info_*`` columns: level-0 position and
size, micrometres per pixel, tissue and label fractions), ``mining.json`` and ``tissue/<slide>.png`` (the thumbnail,
the tissue mask and the patches kept). Built in a hidden sibling folder, renamed into place when complete."""

from __future__ import annotations

import csv
import logging
import math
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from automed.artifacts import atomic_directory, claim_output, mark_output, write_json_atomic
from automed.data.csv_layout import read_rows
from automed.errors import ConfigError, DatasetError, Problem
from automed.parallel import WorkerPool, default_workers, parallel_map
from automed.registry import check_choice
from automed.wsi.miner import Chunk, Grid, label_problems, mine_chunk
from automed.wsi.overview import write_overview
from automed.wsi.slide import (
    SLIDE_SUFFIXES,
    UNKNOWN_MPP_RULE,
    SlideInfo,
    finer_than_slide,
    one_per_dicom_series,
    slide_handle,
    slide_info,
    slide_name,
    wrong_mpp_hint,
)
from automed.wsi.tissue import tissue_mask

CHUNK = 32
# smaller patches hold too little for a network, and their grid grows with the slide's pixel count
MIN_PATCH_PX = 16
POOL_MIN_PATCHES = 1000  # below this a process pool's start costs more than it saves (default --workers only)
# what a mining worker needs, imported once by the fork server
PRELOAD = ["numpy", "PIL.Image", "openslide", "automed.wsi.miner"]
READS = ("sequential", "random")
log = logging.getLogger("automed")


@dataclass
class SlideInput:
    key: str
    path: Path
    label: Path | None = None
    value: str | None = None
    patient: str | None = None  # the CSV's PatientID: slides of one patient stay in one fold


@dataclass
class MineResult:
    folder: Path
    csv: Path
    patches: int
    slides: list[dict[str, Any]]


def parse_patch_size(text: str) -> tuple[int | None, float | None]:
    """``256`` (pixels at the target resolution) or ``100um`` (micrometres)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(um|µm|micron|microns)?\s*", text)
    pixels_not_whole = bool(m) and not m.group(2) and not float(m.group(1)).is_integer()  # type: ignore[union-attr]
    if not m or float(m.group(1)) <= 0 or pixels_not_whole:
        raise ConfigError.single(
            "--patch-size",
            "a patch size is whole pixels (256) or micrometres (100um)",
            text,
            "write e.g. 256 or 100um",
        )
    return (None, float(m.group(1))) if m.group(2) else (int(float(m.group(1))), None)


def parse_value_map(text: str | None) -> dict[int, int] | None:
    if not text:
        return None
    try:
        pairs = [(int(a), int(b)) for a, b in (pair.split(":") for pair in text.split(","))]
    except ValueError as exc:
        raise ConfigError.single(
            "--value-map", "a value map is RAW:LABEL pairs", text, "write e.g. 0:0,255:1,128:2"
        ) from exc
    raws = [a for a, _ in pairs]
    if len(set(raws)) < len(raws) or any(not 0 <= b <= 255 for _, b in pairs):  # patches are 8-bit label PNGs
        raise ConfigError.single("--value-map", "each raw value is mapped once, to a label 0-255", text,
                                 "remove the repeated raw values, keep labels within 0-255")  # fmt: skip
    return dict(pairs)


def _key(text: str, taken: set[str]) -> str:
    """A folder name for a slide's patches: safe characters, never only dots, unique among ``taken`` whatever the
    letter case (``S1`` and ``s1`` are one folder on macOS and Windows, and the training refuses such case IDs)."""
    key = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.") or "slide"
    k, i = key, 2
    while k.lower() in taken:
        k, i = f"{key}_{i}", i + 1
    taken.add(k.lower())
    return k


# 0.999 moved 128-pixel patches by one pixel: 2.7 million positions on a 3-megapixel slide, 87 s and 870 MB before
# its first patch (billions on a real slide), patches nearly alike
MAX_OVERLAP = 0.9
SLIDE_COLUMNS = ("SubjectID", "PatientID", "Channel_0", "Label", "ValueToPredict")


def _check_columns(src: Path, header: list[str]) -> None:
    """Before any slide is read: a column the miner does not take (a misspelt ``Lable`` had mined every slide without
    its label map; a ``Channel_1`` was dropped without a word)."""
    from automed.registry import did_you_mean

    for col in header:
        if col in SLIDE_COLUMNS or not col:
            continue
        if col.startswith("Channel_"):
            raise DatasetError.single(src, "a whole slide is one RGB file, its Channel_0", f"a column {col}",
                                      "mine each slide from one file: remove the column, or list those slides on "
                                      "rows of their own")  # fmt: skip
        raise DatasetError.single(src, f"a slide CSV's columns are {', '.join(SLIDE_COLUMNS)}",
                                  f"a column {col!r}", f"rename or remove it.{did_you_mean(col, SLIDE_COLUMNS)}")  # fmt: skip


def _check_rows(src: Path, rows: list[dict[str, str]], rel: Any) -> None:
    """Two rows of one SubjectID (letter case aside: on macOS and Windows their patch folders are one), or of one
    slide file (its patches under two IDs, the same voxels on both sides of a fold): refused before any mining,
    where the training had refused them after it."""
    seen: dict[str, int] = {}
    files: dict[str, int] = {}
    for n, r in enumerate(rows, start=2):
        for rule, key, where in (("its own SubjectID (differing in more than letter case)",
                                  r["SubjectID"].strip().lower(), seen),
                                 ("its own slide file", os.path.realpath(rel(r["Channel_0"].strip())), files)):  # fmt: skip
            if key in where:
                raise DatasetError.single(
                    src, f"every row names its own slide: {rule}",
                    f"rows {where[key]} and {n}: {r['SubjectID']!r}, {r['Channel_0']!r}",
                    "remove the repeated row, or give each slide its own SubjectID (a PatientID keeps one "
                    "patient's slides in one fold)",
                )  # fmt: skip
            where[key] = n


def _inputs(paths: list[Path]) -> list[SlideInput]:
    if len(paths) == 1 and paths[0].suffix.lower() == ".csv":
        src = paths[0].resolve()  # its relative paths are relative to the CSV's own folder
        if not src.is_file():
            raise DatasetError.single(src, "the slide CSV must exist", "missing", "check the path")
        table = read_rows(src)  # UTF-8 (a byte-order mark dropped), else a clear error
        header = [h.strip() for h in table[0]] if table else []
        rows = [
            dict(zip(header, cells, strict=False)) for cells in table[1:] if any(c.strip() for c in cells)
        ]
        short = [
            n
            for n, cells in enumerate(table[1:], start=2)
            if any(c.strip() for c in cells) and len(cells) < 2
        ]
        blank = [n for n, r in enumerate(rows, start=2) if not r.get("SubjectID", "x").strip() or not
                 r.get("Channel_0", "x").strip()]  # fmt: skip
        if short or blank:
            raise DatasetError.single(src, "every row names its slide: SubjectID and Channel_0 filled in",
                                      f"rows {sorted(set(short + blank))[:10]}", "fill in or remove those rows")  # fmt: skip
        need = {"SubjectID", "Channel_0"}
        if not rows or not need <= set(rows[0]):
            raise DatasetError.single(
                src, "a slide CSV has SubjectID and Channel_0 columns", f"columns {list(rows[0]) if rows else []}",
                "add them (Label and ValueToPredict are optional)",
            )  # fmt: skip
        _check_columns(src, header)

        for col in ("Label", "ValueToPredict"):  # patches.csv has one column for all slides or none
            empty = [n for n, r in enumerate(rows, start=2) if not (r.get(col) or "").strip()]
            if col in rows[0] and 0 < len(empty) < len(rows):
                raise DatasetError.single(src, f"a {col} column is filled in for every slide or for none (a "
                                          "training on patches.csv needs one for every patch)", f"empty in rows "
                                          f"{empty[:10]}", f"fill in those rows, or move them to a CSV without {col}")  # fmt: skip

        def rel(v: str) -> Path:
            return p if (p := Path(v)).is_absolute() else (src.parent / p)

        _check_rows(src, rows, rel)
        taken: set[str] = set()
        slides = [
            SlideInput(_key(r["SubjectID"], taken), rel(r["Channel_0"]), rel(r["Label"]) if r.get("Label") else None,
                       r.get("ValueToPredict") or None, (r.get("PatientID") or "").strip() or None)
            for r in rows
        ]  # fmt: skip
        missing = [p for s in slides for p in (s.path, s.label) if p is not None and not p.is_file()]
        if missing:
            raise DatasetError.single(src, "every slide and label map the CSV names must exist",
                                      f"{len(missing)} missing, e.g. {missing[0]}", "fix the paths (relative to the CSV)")  # fmt: skip
        return slides
    from automed.workflow.predict_slide_inputs import found_slides

    found: list[Path] = []
    named: dict[
        Path, str
    ] = {}  # a slide below a folder given: named by its place, as automed predict names it
    for p in paths:
        if p.is_dir() and (listed := found_slides(p)) is not None:
            found += listed[0]
            named.update(zip(listed[0], listed[1], strict=True))
        elif p.is_dir():
            found += sorted(
                q for q in p.rglob("*") if q.is_file() and q.name.lower().endswith(SLIDE_SUFFIXES)
            )
        else:
            found.append(p)
    found = one_per_dicom_series(found)
    missing = [p for p in found if not p.is_file()]
    if missing or not found:
        raise DatasetError.single(
            missing[0] if missing else paths[0], "slides must exist", "missing" if missing else "no slide files",
            f"pass slide files ({', '.join(SLIDE_SUFFIXES)}), a folder of them or a CSV",
        )  # fmt: skip
    used: set[str] = set()
    return [SlideInput(_key(named.get(p) or slide_name(p), used), p) for p in found]


def _grid(info: SlideInfo, px: int | None, um: float | None, mpp: float | None, overlap: float) -> Grid:
    """The patch grid of one slide: ``px`` pixels, or ``um`` micrometres, at ``mpp`` (default: the slide's own)."""
    target = mpp if mpp is not None else info.mpp
    side = px if px is not None else max(1, round((um or 0.0) / target))
    return Grid(info, side, target, overlap)


def _info(s: SlideInput, mpp: float | None, slide_mpp: float | None) -> SlideInfo:
    if slide_mpp is not None:
        return slide_info(s.path, slide_mpp, given_as="--slide-mpp")
    try:
        return slide_info(s.path, None, given_as="--mpp")
    except (
        DatasetError
    ) as exc:  # only a file without a pixel size takes --mpp as its own (not non-square pixels)
        if mpp is None or exc.problems[0].rule != UNKNOWN_MPP_RULE:
            raise
        return slide_info(s.path, mpp, given_as="--mpp")  # no pixel size in the file: level 0 is at --mpp


def patch_miner(
    inputs: list[str | Path],
    output: str | Path,
    *,
    patch_size: str = "256",
    mpp: float | None = None,
    slide_mpp: float | None = None,
    num_patches: int = -1,
    overlap: float = 0.0,
    read: str = "sequential",
    workers: int | None = None,
    min_tissue: float = 0.5,
    value_map: str | None = None,
    class_from_label: bool = False,
    seed: int = 0,
    overwrite: bool = False,
    show_progress: bool = True,
) -> MineResult:
    """Mine patches from every slide of ``inputs`` into ``output`` (see the module docstring). ``workers``: processes
    per slide; by default the CPU count (``AUTOMED_WORKERS``) for a slide with at least ``POOL_MIN_PATCHES`` patches
    over tissue, else inline."""
    check_choice(read, READS, what="the read order", where="--read")
    if not 0.0 <= overlap <= MAX_OVERLAP or not 0.0 <= min_tissue <= 1.0:
        raise ConfigError.single("--overlap/--min-tissue", f"overlap in [0, {MAX_OVERLAP}] (patches move by at least "
                                 "a tenth of their side), min-tissue in [0, 1]", f"{overlap}, {min_tissue}",
                                 "choose values in range (0.5: patches overlap by half)")  # fmt: skip
    if num_patches == 0 or num_patches < -1:
        raise ConfigError.single("--num-patches", "patches per slide: a number of at least 1, or -1 for every one",
                                 num_patches, "write e.g. --num-patches 500")  # fmt: skip
    for name, v in (("--mpp", mpp), ("--slide-mpp", slide_mpp)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise ConfigError.single(name, "a pixel size is a positive number of micrometres", v,
                                     f"pass e.g. {name} 0.5")  # fmt: skip
    px, um = parse_patch_size(patch_size)
    vmap = parse_value_map(value_map)
    # absolute, not resolved: a slide linked under a case ID keeps that name (its target's may name a person)
    slides = _inputs([Path(p).expanduser().absolute() for p in inputs])
    if class_from_label and (
        any(s.label is None for s in slides) or any(s.value is not None for s in slides)
    ):
        raise ConfigError.single("--class-from-label", "a patch class from the label map needs a Label for every "
                                 "slide and no slide-level ValueToPredict", "missing Label or a ValueToPredict",
                                 "give a CSV with a Label column only, or drop --class-from-label")  # fmt: skip
    if vmap and all(s.label is None for s in slides):  # it would do nothing: said, not ignored
        raise ConfigError.single("--value-map", "--value-map maps the values of the slides' label maps",
                                 f"{value_map} with no Label given", "give a slide CSV with a Label column, or drop "
                                 "--value-map")  # fmt: skip
    protected = [s.path for s in slides] + [s.label for s in slides if s.label]
    out = claim_output(
        Path(output), "patches", protected=protected, inputs=[Path(p) for p in inputs], overwrite=overwrite
    )
    infos = [_info(s, mpp, slide_mpp) for s in slides]  # every slide judged before any work
    for s, info in zip(slides, infos, strict=True):
        if mpp is not None and finer_than_slide(mpp, info):
            raise DatasetError.single(s.path, "patches are mined at the slide's own resolution or coarser (within 5 %)",
                                      f"--mpp {mpp} finer than the slide's {info.mpp:.4g} um/px",
                                      f"use --mpp {info.mpp:.4g} or coarser{wrong_mpp_hint(info)}")  # fmt: skip
    own = sorted({round(i.mpp, 4) for i in infos})
    if mpp is None and own[-1] > 1.1 * own[0]:  # 20x beside 40x scans: one patch size, two areas of tissue
        log.warning("the slides' pixel sizes differ (%s um/px) and no --mpp was given: each slide's patches are at "
                    "its own resolution, so a patch spans %.3g times as many micrometres on some slides as on others; "
                    "pass --mpp (e.g. --mpp %s) to mine every slide at one resolution",
                    ", ".join(f"{v:g}" for v in own), own[-1] / own[0], f"{own[-1]:g}")  # fmt: skip
    problems: list[Problem] = []  # and the label maps' problems
    for s, info in zip(slides, infos, strict=True):
        if (g := _grid(info, px, um, mpp, overlap)).patch_px < MIN_PATCH_PX:
            problems.append(Problem(str(s.path), f"a patch is at least {MIN_PATCH_PX} pixels a side at the "
                                    "mining resolution", f"--patch-size {patch_size}: {g.patch_px} px at "
                                    f"{g.target_mpp:.4g} um/px", "choose a larger --patch-size (256 pixels is usual)"))  # fmt: skip
        elif g.size0 > min(info.width, info.height):
            problems.append(Problem(str(s.path), "a patch must fit in the slide", f"patches of {g.size0} px at "
                                     f"level 0, slide {info.width} x {info.height} px",
                                     "choose a smaller --patch-size or a finer --mpp"))  # fmt: skip
    problems += [
        p
        for s, info in zip(slides, infos, strict=True)
        if s.label
        for p in label_problems(s.label, info, bool(vmap))
    ]
    if problems:
        raise DatasetError(problems, "nothing was mined")
    rows: list[dict[str, Any]] = []
    report: list[dict[str, Any]] = []
    n_pool = workers if workers is not None else default_workers()
    with atomic_directory(out) as tmp, WorkerPool(n_pool, PRELOAD) as pool:  # one pool for every slide
        for s, info in zip(slides, infos, strict=True):
            grid = _grid(info, px, um, mpp, overlap)
            mask = tissue_mask(slide_handle(s.path))
            positions = grid.positions()
            if read == "random":
                random.Random(seed).shuffle(positions)
            shares = mask.fractions(positions, grid.size0, grid.size0)
            kept_pos = [(*positions[i], float(shares[i])) for i in np.flatnonzero(shares >= min_tissue)]
            extra: dict[str, Any] = {
                "patient": s.patient or s.key,
                "min_tissue": min_tissue,
                "class_from_label": class_from_label,
            }
            if s.value is not None:
                extra["value"] = s.value
            chunks = [
                Chunk(s.key, grid, kept_pos[i : i + CHUNK], tmp, s.label, vmap, extra)
                for i in range(0, len(kept_pos), CHUNK)
            ]
            slide_rows: list[dict[str, Any]] = []
            rejected = {"no tissue": len(positions) - len(kept_pos)}
            inline = workers is None and len(kept_pos) < POOL_MIN_PATCHES
            for chunk_rows, chunk_rejected in parallel_map(
                mine_chunk,
                chunks,
                workers=1 if inline else n_pool,
                pool=pool,
                description=f"mine {s.key}",
                show_progress=show_progress,
            ):
                slide_rows += chunk_rows
                for k, v in chunk_rejected.items():
                    rejected[k] = rejected.get(k, 0) + v
                if 0 < num_patches <= len(slide_rows):
                    break
            if num_patches > 0:
                # in sequential order the first ones are a sample of the slide's top rows only
                if read == "sequential" and len(kept_pos) > num_patches:
                    log.warning("%s: the %d patches kept are the first in row order, from the top of its tissue (%d "
                                "positions over tissue); pass --read random for patches from all over the slide",
                                s.key, len(slide_rows[:num_patches]), len(kept_pos))  # fmt: skip
                slide_rows = slide_rows[:num_patches]
                # chunks in flight when the count was reached wrote patches of their own: keep the CSV's only
                kept = {tmp / r[c] for r in slide_rows for c in ("Channel_0", "Label") if c in r}
                for sub in ("patches", "labels"):
                    for f in (tmp / sub / s.key).glob("*.png"):
                        if f not in kept:
                            f.unlink()
            write_overview(mask, grid, slide_rows, tmp / "tissue" / f"{s.key}.png")
            rows += slide_rows
            report.append({
                "slide": s.key, "width": info.width, "height": info.height, "mpp": info.mpp,
                "mpp_source": info.mpp_source, "vendor": info.vendor, "target_mpp": grid.target_mpp, "patch_px": grid.patch_px,
                "level": grid.level, "read_px": grid.read_px, "size0": grid.size0, "positions": len(positions),
                "patches": len(slide_rows), "rejected": rejected, "tissue_fraction": float(mask.mask.mean()),
                "tissue_threshold": mask.threshold,
            })  # fmt: skip
        if not rows:
            raise DatasetError.single(inputs[0], "mining keeps at least one patch", "none passed the tissue and "
                                      "artifact checks", "lower --min-tissue or --patch-size, or check the slides")  # fmt: skip
        _write_csv(tmp / "patches.csv", rows)
        settings = {"patch_size": patch_size, "mpp": mpp, "slide_mpp": slide_mpp, "num_patches": num_patches,
                    "overlap": overlap, "read": read, "min_tissue": min_tissue, "value_map": vmap, "seed": seed,
                    "class_from_label": class_from_label}  # fmt: skip
        write_json_atomic(tmp / "mining.json", {"schema_version": 1, "settings": settings, "slides": report})
        mark_output(tmp, "patches")
    return MineResult(out, out / "patches.csv", len(rows), report)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    values = sorted({v for r in rows for v in r.get("fractions", {})})
    base = [c for c in ("SubjectID", "PatientID", "Channel_0", "Label", "ValueToPredict") if c in rows[0]]
    info = ["Info_X", "Info_Y", "Info_Size0", "Info_Mpp", "Info_TissueFraction"]
    fracs = [f"Info_LabelFraction_{v}" for v in values]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(base + info + fracs)
        for r in rows:
            fr = r.get("fractions", {})
            w.writerow([r[c] for c in base + info] + [round(fr.get(v, 0.0), 4) for v in values])
