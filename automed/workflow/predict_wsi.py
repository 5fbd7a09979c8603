"""``automed predict`` on whole slides: tiled inference at the model's micrometres per pixel over tissue only
(:mod:`automed.wsi.infer`), written as tiled pyramidal TIFFs of the slide's dimensions, with pictures and a per-tile
CSV (:mod:`automed.wsi.pyramid`). Memory stays a few blocks whatever the slide's size.

Per slide ``S``: ``S_labels.tif`` (label values), ``S_prob_<label>.tif`` per class with ``--save-probabilities``
(0-255), ``S_heatmap_<label>.png`` (turbo), ``S_overlay.png`` (thumbnail with the labels), ``S_counts.png`` (the
predicted foreground pixels of each block), ``S_tiles.csv`` (per block: level-0 position, tissue fraction,
predicted, label fractions)."""

from __future__ import annotations

import csv
import logging
import math
import shutil
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from automed.data.io import Geometry
from automed.errors import ConfigError
from automed.parallel import progress_bar
from automed.runtime.folders import safe_id
from automed.workflow.predict_output import block_store
from automed.wsi.infer import BlockGrid, predict_blocks
from automed.wsi.pyramid import BlockReader, thumbnail_values, write_pyramid
from automed.wsi.slide import (
    finer_than_slide,
    slide_handle,
    slide_info,
    slide_name,
    thumbnail,
    wrong_mpp_hint,
)
from automed.wsi.tissue import tissue_mask

log = logging.getLogger("automed")


def file_parts(names: dict[int, str]) -> dict[int, str]:
    """Each label's :func:`file_part`, its value appended where two names give one (``grade 1``, ``grade/1``)."""
    parts = {v: file_part(n) for v, n in names.items()}
    taken = list(parts.values())
    return {v: p if taken.count(p) == 1 else f"{p}_{v}" for v, p in parts.items()}


def file_part(label_name: str) -> str:
    """A label's name as part of a file name: letters, digits, '.', '_' and '-' (dataset.json allows any text, and
    ``tumor/necrosis`` or ``../x`` must not name a folder)."""
    return safe_id(label_name).strip(".") or "label"


def model_mpp(model: str | Path, given: float | None, holder: Path | None = None) -> float:
    """The model's micrometres per pixel: ``--mpp``, else the resolution its training's patches were mined at.
    ``holder`` is the folder holding the model (``model`` itself, a selection's chosen work dir, or a registered
    model's downloaded bundle); its fingerprint's record, else its ``model.json``'s (a bundle's); a work dir
    fingerprinted before that was recorded: the patch miner's ``mining.json`` beside its training CSV."""
    if given is not None:
        return given
    from automed.fingerprint.schema import Fingerprint
    from automed.records import MINING, patches_mpp, readable_patches_mpp
    from automed.train.meta import read_meta
    from automed.workdir import WorkDir

    source = None
    if holder is None and not str(model).startswith("models:/"):
        holder = Path(model)
    if holder is not None and WorkDir(holder).fingerprint.is_file():
        fp = Fingerprint.load(WorkDir(holder).fingerprint)
        source = Path(fp.source)
        if fp.slide_mpp is not None:
            if (now := readable_patches_mpp(source)) is not None and not math.isclose(
                now, fp.slide_mpp, rel_tol=1e-6
            ):
                log.warning("%s: the patches were mined again since the training, at %g micrometres per pixel; "
                            "slides are predicted at the %g the model was trained on (its fingerprint)",
                            source.parent / MINING, now, fp.slide_mpp)  # fmt: skip
            return fp.slide_mpp
        if (now := patches_mpp(source)) is not None:
            return now
    elif (
        holder is not None
        and WorkDir(holder).model.is_file()  # a registered model's bundle
        and (recorded := read_meta(WorkDir(holder).model).slide_mpp) is not None
    ):
        return recorded
    if (
        source is not None and source.suffix != ".csv"
    ):  # a dataset.json or class folders: no patches, no --mpp
        raise ConfigError.single(model, "whole slides are predicted by a model trained on patches of slides",
                                 f"a model trained on {source.name}", TRAIN_ON_PATCHES)  # fmt: skip
    raise ConfigError.single(
        model,
        "predicting on whole slides needs the model's resolution in micrometres per pixel",
        f"no mining.json beside its training CSV ({source})" if source else "not recorded with the model",
        "pass --mpp with the resolution of the patches it was trained on",
    )


TRAIN_ON_PATCHES = "mine patches with `automed patch-miner SLIDES -o patches`, train on patches/patches.csv"


def _check_network(predictor: Any, slide: Path) -> None:
    """A slide's blocks are RGB pictures: a 3D network, or one of other channels, had failed in torch mid-slide
    ("unexpected error: RuntimeError: ... expected input ... to have 1 channels, but got 3 channels")."""
    model = getattr(predictor, "model", None)  # an export's networks
    holders = (predictor, *getattr(predictor, "members", []), *getattr(model, "members", []))
    dims = {int(h.spec.dimension) for h in holders if getattr(h, "spec", None) is not None}
    channels = int(predictor.n_channels)
    if 3 in dims or channels != 3:
        raise ConfigError.single(
            slide, "whole slides are predicted by a 2D model of RGB pictures (3 channels)",
            f"a {'3D' if 3 in dims else '2D'} model of {channels} channel(s)", TRAIN_ON_PATCHES,
        )  # fmt: skip


def _predict_fn(predictor: Any) -> Any:
    def run(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        h, w = rgb.shape[:2]
        channels = rgb.transpose(2, 0, 1)[:, None].astype(np.float32)
        geometry = Geometry(
            size=(w, h), spacing=(1.0, 1.0), origin=(0.0, 0.0), direction=(1.0, 0.0, 0.0, 1.0)
        )
        res = predictor.predict_arrays(channels, geometry, probabilities=True)
        probs = res.probabilities[:, 0] if res.probabilities is not None else None
        return res.labels.reshape(h, w), probs

    return run


def _pictures(
    grid: BlockGrid, store: Path, out: Path, stem: str, names: dict[int, str], rows: list[dict[str, Any]]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import colormaps
    from PIL import Image

    labels = thumbnail_values(BlockReader(grid, store, "L"))
    turbo = colormaps["turbo"]
    parts = file_parts(names)
    for k, value in enumerate(sorted(names)):
        if value == 0:
            continue
        prob = thumbnail_values(BlockReader(grid, store, "P", k)).astype(np.float32) / 255.0
        _save(
            Image.fromarray((turbo(prob)[..., :3] * 255).astype(np.uint8)),
            out / f"{stem}_heatmap_{parts[value]}.png",
        )
    thumb = Image.fromarray(thumbnail(slide_handle(grid.info.path), max(labels.shape))).resize(
        labels.shape[::-1]
    )
    base = np.asarray(thumb).astype(np.float32)
    tab = colormaps["tab10"]
    for value in np.unique(labels):
        if value:
            sel = labels == value
            base[sel] = 0.5 * base[sel] + 0.5 * np.array(tab(int(value) % 10)[:3]) * 255
    _save(Image.fromarray(base.clip(0, 255).astype(np.uint8)), out / f"{stem}_overlay.png")
    nbx, nby = grid.n_blocks
    counts = np.zeros((nby, nbx), dtype=np.float32)
    for r in rows:
        if r["predicted"]:
            counts[r["block_y"], r["block_x"]] = (1.0 - r["fractions"].get(0, 0.0)) * grid.block**2
    scaled = counts / counts.max() if counts.max() > 0 else counts
    img = Image.fromarray((turbo(scaled)[..., :3] * 255).astype(np.uint8))
    _save(img.resize((nbx * 16, nby * 16), Image.Resampling.NEAREST), out / f"{stem}_counts.png")


def _save(img: Any, path: Path) -> None:
    """A picture through a temporary name and a rename: a kill never leaves half a PNG in place of an earlier one."""
    tmp = path.with_name(f".{path.name}.partial.png")
    img.save(tmp)
    tmp.replace(path)


def _tiles_csv(path: Path, rows: list[dict[str, Any]], names: dict[int, str]) -> None:
    cols = ["block_x", "block_y", "x0", "y0", "tissue_fraction", "predicted"]
    final, path = path, path.with_name(f".{path.name}.partial")
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols + [f"fraction_{n}" for _, n in sorted(names.items())])
        for r in rows:
            fr = r.get("fractions", {})
            w.writerow([r[c] for c in cols] + [round(fr.get(v, 0.0), 4) for v in sorted(names)])
    path.replace(final)


def predict_slides(
    predictor: Any,
    slides: list[Path],
    out: Path,
    *,
    mpp: float,
    names: dict[int, str],
    slide_mpp: float | None = None,
    save_probabilities: bool = False,
    show_progress: bool = True,
    stems: list[str] | None = None,
) -> list[Path]:
    """Predict each slide into ``out`` (see the module docstring); return the label TIFFs. ``stems``: each slide's
    output name ``S`` (:func:`automed.workflow.predict_slide_inputs.found_slides`); by default its file name's."""
    if getattr(predictor, "target", None) is not None:  # classification or regression: no label map to tile
        raise ConfigError.single(
            slides[0],
            "whole slides are predicted by a segmentation model (a label per pixel, tiled over the slide)",
            "a classification or regression model (one class or value per image)",
            "mine the slide's patches with `automed patch-miner` at the model's resolution and predict "
            "patches/patches.csv, one class or value per patch",
        )
    written = []
    taken: set[str] = set()
    infos = [
        slide_info(path, slide_mpp, given_as="--slide-mpp") for path in slides
    ]  # every slide before any work
    for path, info in zip(slides, infos, strict=True):
        if finer_than_slide(mpp, info):
            raise ConfigError.single(path, "a slide must be at least as fine as the model's resolution (within 5 %)",
                                     f"slide {info.mpp:.4g} um/px, model {mpp:.4g}",
                                     f"use a finer scan{wrong_mpp_hint(info)}")  # fmt: skip
    _check_network(predictor, slides[0])
    for k, (path, info) in enumerate(zip(slides, infos, strict=True)):
        grid = BlockGrid(info, mpp)
        base, stem, i = slide_name(path), slide_name(path), 2
        while stem in taken:  # e.tif and e.tiff, a.x.svs and a.y.svs: outputs of their own
            stem, i = f"{base}_{i}", i + 1
        stem = stems[k] if stems is not None else stem
        taken.add(stem)
        store = block_store(out, stem)
        shutil.rmtree(store, ignore_errors=True)
        mask = tissue_mask(slide_handle(path))
        try:  # the block store goes whatever happens
            with progress_bar(disable=not show_progress) as bar:
                task = bar.add_task(f"predict {stem}", total=grid.n_blocks[0] * grid.n_blocks[1])
                rows = predict_blocks(
                    grid, mask, _predict_fn(predictor), store, on_block=partial(bar.advance, task)
                )
            write_pyramid(BlockReader(grid, store, "L"), out / f"{stem}_labels.tif")
            if save_probabilities:
                parts = file_parts(names)
                for k, value in enumerate(sorted(names)):
                    write_pyramid(BlockReader(grid, store, "P", k), out / f"{stem}_prob_{parts[value]}.tif")
            _pictures(grid, store, out, stem, names, rows)
            _tiles_csv(out / f"{stem}_tiles.csv", rows, names)
        finally:
            shutil.rmtree(store, ignore_errors=True)
        written.append(out / f"{stem}_labels.tif")
    return written
