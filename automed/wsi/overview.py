"""The picture of a mining run per slide: its thumbnail, the tissue mask tinted and the patches kept outlined."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from automed.wsi.miner import Grid
from automed.wsi.tissue import TissueMask


def write_overview(mask: TissueMask, grid: Grid, rows: list[dict[str, Any]], out: Path) -> None:
    thumb = mask.thumbnail
    h, w = min(thumb.shape[0], mask.mask.shape[0]), min(thumb.shape[1], mask.mask.shape[1])
    tint = thumb[:h, :w].astype(np.float32)
    tint[mask.mask[:h, :w]] = 0.6 * tint[mask.mask[:h, :w]] + 0.4 * np.array([60, 200, 90])
    image = Image.fromarray(tint.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    s = mask.scale
    for r in rows:
        x, y = r["Info_X"] / s, r["Info_Y"] / s
        draw.rectangle([x, y, x + grid.size0 / s, y + grid.size0 / s], outline=(20, 40, 200))
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
