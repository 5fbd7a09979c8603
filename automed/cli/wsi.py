"""Whole-slide verbs: patch-miner (slides -> PNG patches + a CSV automed trains on)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from automed.cli._common import ReplaceOutputOpt, expand_user, out, progress

app = typer.Typer()


@app.command("patch-miner")
def patch_miner(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Slides, a folder of slides, or a CSV SubjectID,Channel_0[,Label][,ValueToPredict][,PatientID]."
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", callback=expand_user, help="New folder for patches/, patches.csv, mining.json."
        ),
    ],
    patch_size: Annotated[
        str, typer.Option(help="Patch side: pixels at --mpp (256) or micrometres (100um).")
    ] = "256",
    mpp: Annotated[
        float | None,
        typer.Option(
            help="Resolution of the patches in micrometres per pixel (default: each slide's own). A slide without "
            "a pixel size in its metadata is taken to have level 0 at --mpp."
        ),
    ] = None,
    slide_mpp: Annotated[
        float | None,
        typer.Option(help="Level-0 pixel size of slides whose metadata lacks it (overrides it)."),
    ] = None,
    num_patches: Annotated[
        int,
        typer.Option(
            help="Patches per slide at most; -1 takes every one. The first ones in --read order: with "
            "sequential, the slide's top rows."
        ),
    ] = -1,
    overlap: Annotated[
        float,
        typer.Option(
            help="Overlap of neighbouring patches, a fraction of the patch: 0 up to 0.9 (patches move by at least "
            "a tenth of their side)."
        ),
    ] = 0.0,
    read: Annotated[
        str, typer.Option(help="sequential (row by row) or random (seeded) order.")
    ] = "sequential",
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            min=0,
            help="Worker processes, each with its own slide readers (default: one per core, at most 8; "
            "AUTOMED_WORKERS).",
        ),
    ] = None,
    min_tissue: Annotated[
        float, typer.Option(help="Least tissue fraction (from the tissue mask) a patch needs.")
    ] = 0.5,
    value_map: Annotated[
        str | None, typer.Option(help="Label map values to labels, RAW:LABEL pairs, e.g. 0:0,255:1.")
    ] = None,
    class_from_label: Annotated[
        bool,
        typer.Option(
            help="Patch classification: ValueToPredict = the label covering most of each patch (no Label)."
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of --read random.")] = 0,
    overwrite: ReplaceOutputOpt = False,
) -> None:
    """Mine PNG patches from whole slides over tissue only (saturation/Otsu tissue mask on a thumbnail; white, black
    and colourless patches rejected) at a resolution in micrometres per pixel, with label-map patches and per-label
    fractions; write patches.csv (PatientID = the slide CSV's PatientID, else the slide, so folds are grouped by
    patient) for `automed train`.

    Example: automed patch-miner slides/ -o patches --patch-size 256 --mpp 0.5 --num-patches 500 --read random
    """
    from automed import api

    res = api.patch_miner(
        list(inputs),
        output,
        patch_size=patch_size,
        mpp=mpp,
        slide_mpp=slide_mpp,
        num_patches=num_patches,
        overlap=overlap,
        read=read,
        workers=workers,
        min_tissue=min_tissue,
        value_map=value_map,
        class_from_label=class_from_label,
        seed=seed,
        overwrite=overwrite,
        show_progress=progress(),
    )
    for s in res.slides:
        out.print(
            f"{s['slide']}: {s['patches']} patch(es) of {s['positions']} positions at {s['target_mpp']:.3g} um/px "
            f"(level {s['level']}, slide {s['mpp']:.3g} um/px from {s['mpp_source']}); rejected {s['rejected']}",
            markup=False,
        )
    out.print(next_step(res.csv), markup=False)


def next_step(patches_csv: Path) -> str:
    """What to do with ``patches.csv``: train on it when it has a target column; else say why training would refuse
    it (no label maps, no slide values were given) and how to give one."""
    header = patches_csv.read_text(encoding="utf-8").partition("\n")[0].split(",")
    if "Label" in header or "ValueToPredict" in header:
        return f"train on it: automed train {patches_csv} -o WORK"
    return (
        f"{patches_csv} has no Label or ValueToPredict column (no label maps or slide values were given), so "
        "`automed train` would refuse it: mine from a slide CSV with a Label column (label maps; "
        "--class-from-label for patch classes) or a ValueToPredict column (a class or value per slide)"
    )
