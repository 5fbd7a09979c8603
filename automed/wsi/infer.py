"""Tiled inference over a whole slide at the model's resolution, over tissue only, in bounded memory.

The slide is cut, at the model's micrometres per pixel, into square blocks of ``block`` model pixels. Each block
with tissue is predicted from a window ``margin`` pixels larger on every side (overlap-tile: neighbouring windows
overlap by twice the margin and each keeps only its centre, so no seam falls where the network lacked context; inside
a window the predictor blends its own sliding patches). Block results go to disk (``.npy``: labels, and uint8
probabilities when asked); nothing slide-sized is ever held in memory."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from automed.wsi.slide import SlideInfo, read_rgb
from automed.wsi.tissue import TissueMask


@dataclass(frozen=True)
class BlockGrid:
    info: SlideInfo
    model_mpp: float
    block: int = 512
    margin: int = 32

    @property
    def f0(self) -> float:
        """Level-0 pixels per model pixel."""
        return self.model_mpp / self.info.mpp

    @property
    def model_size(self) -> tuple[int, int]:
        return math.ceil(self.info.width / self.f0), math.ceil(self.info.height / self.f0)

    @property
    def n_blocks(self) -> tuple[int, int]:
        w, h = self.model_size
        return math.ceil(w / self.block), math.ceil(h / self.block)

    def core(self, bx: int, by: int) -> tuple[int, int, int, int]:
        """The block's own model-pixel box (x, y, w, h)."""
        w, h = self.model_size
        x, y = bx * self.block, by * self.block
        return x, y, min(self.block, w - x), min(self.block, h - y)

    def level0_box(self, x: int, y: int, w: int, h: int) -> tuple[int, int, int, int]:
        f = self.f0
        return round(x * f), round(y * f), max(1, round(w * f)), max(1, round(h * f))


def read_window(grid: BlockGrid, x: int, y: int, w: int, h: int) -> np.ndarray:
    """RGB (h, w, 3) of the model-pixel box, read at the coarsest level fine enough and resized."""
    level, _ = grid.info.level_for(grid.model_mpp)
    x0, y0, w0, h0 = grid.level0_box(x, y, w, h)
    ds = grid.info.downsamples[level]
    rgb = read_rgb(grid.info.path, x0, y0, level, (max(1, math.ceil(w0 / ds)), max(1, math.ceil(h0 / ds))))
    # the last model pixel of a slide whose size is not a multiple of it reaches past the slide's edge: repeat the
    # edge pixels there (outside reads white, and a box filter would mix that glass into the edge's tissue); a
    # reduced level may end before level 0's edge divided by its downsample
    lw, lh = grid.info.level_dimensions[level]
    rows, cols = rgb.shape[:2]
    inside_h = max(1, min(rows, math.floor(lh - y0 / ds)))
    inside_w = max(1, min(cols, math.floor(lw - x0 / ds)))
    if (inside_h, inside_w) != (rows, cols):
        rgb = np.pad(
            rgb[:inside_h, :inside_w], ((0, rows - inside_h), (0, cols - inside_w), (0, 0)), mode="edge"
        )
    if rgb.shape[:2] != (h, w):
        from PIL import Image

        rgb = np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BOX))
    return rgb


def predict_blocks(
    grid: BlockGrid,
    mask: TissueMask,
    predict: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]],
    store: Path,
    *,
    min_tissue: float = 0.01,
    on_block: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """Predict every block with tissue into ``store`` (``L_<bx>_<by>.npy`` labels, ``P_...`` probabilities);
    return one row per block (position, tissue, the predicted fraction of each label)."""
    store.mkdir(parents=True, exist_ok=True)
    nbx, nby = grid.n_blocks
    w_all, h_all = grid.model_size
    rows = []
    for by in range(nby):
        for bx in range(nbx):
            x, y, w, h = grid.core(bx, by)
            tissue = mask.fraction(*grid.level0_box(x, y, w, h))
            row: dict[str, Any] = {"block_x": bx, "block_y": by, "x0": grid.level0_box(x, y, w, h)[0],
                                   "y0": grid.level0_box(x, y, w, h)[1], "tissue_fraction": round(tissue, 4)}  # fmt: skip
            if tissue >= min_tissue:
                wx, wy = max(0, x - grid.margin), max(0, y - grid.margin)
                wx1, wy1 = min(w_all, x + w + grid.margin), min(h_all, y + h + grid.margin)
                labels, probs = predict(read_window(grid, wx, wy, wx1 - wx, wy1 - wy))
                cy, cx = y - wy, x - wx
                core = labels[cy : cy + h, cx : cx + w].astype(np.uint8)
                np.save(store / f"L_{bx}_{by}.npy", core)
                if probs is not None:
                    q = np.clip(probs[:, cy : cy + h, cx : cx + w] * 255 + 0.5, 0, 255).astype(np.uint8)
                    np.save(store / f"P_{bx}_{by}.npy", q)
                values, counts = np.unique(core, return_counts=True)
                row["predicted"] = True
                row["fractions"] = {int(v): float(c) / core.size for v, c in zip(values, counts, strict=True)}
            else:
                row["predicted"] = False
            rows.append(row)
            if on_block is not None:
                on_block()
    return rows
