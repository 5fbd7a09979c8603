"""The tissue mask of a slide, computed once on a thumbnail (at most ``max_side`` pixels a side).

Choice: stained tissue is coloured and glass is not, so the mask thresholds the HSV saturation, after a 3 x 3 median
(pixel noise on glass is no tissue), with Otsu's threshold (scikit-image), floored at 0.05 so that a slide of nearly
all tissue or nearly all glass is not split in two by noise, and drops near-black pixels (pen, scanner borders); then a
morphological closing (joins tissue torn by fat or tears), holes filled, and specks smaller than 0.05 % of the
thumbnail removed (scipy/scikit-image). This is the saturation/Otsu approach of histolab and TIAToolbox's Otsu
masker."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import openslide
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import disk, remove_small_objects

from automed.wsi.miner import saturation
from automed.wsi.slide import thumbnail

MIN_SATURATION = 0.05
MAX_DARK = 0.1  # HSV value below this is pen or border, not tissue


@dataclass
class TissueMask:
    mask: np.ndarray  # bool (rows, columns) over the whole slide
    scale: float  # level-0 pixels per mask pixel
    threshold: float
    thumbnail: np.ndarray  # the RGB thumbnail the mask was computed on (for pictures)

    def fraction(self, x: int, y: int, w: int, h: int) -> float:
        """Tissue fraction of the level-0 box ``(x, y, w, h)``."""
        s = self.scale
        r0, c0 = int(y / s), int(x / s)
        r1, c1 = max(r0 + 1, int(np.ceil((y + h) / s))), max(c0 + 1, int(np.ceil((x + w) / s)))
        box = self.mask[r0:r1, c0:c1]
        return float(box.mean()) if box.size else 0.0

    def fractions(self, positions: list[tuple[int, int]], w: int, h: int) -> np.ndarray:
        """:meth:`fraction` of the boxes ``(x, y, w, h)`` at every position, at once (a summed-area table: millions
        of positions at a high ``--overlap`` had taken one Python call each, silent for minutes)."""
        if not positions:
            return np.zeros(0)
        xy = np.asarray(positions, dtype=np.float64)
        s, (rows, cols) = self.scale, self.mask.shape
        r0, c0 = (xy[:, 1] / s).astype(np.int64), (xy[:, 0] / s).astype(np.int64)
        r1 = np.maximum(r0 + 1, np.ceil((xy[:, 1] + h) / s).astype(np.int64))
        c1 = np.maximum(c0 + 1, np.ceil((xy[:, 0] + w) / s).astype(np.int64))
        r0, r1, c0, c1 = (np.clip(v, 0, n) for v, n in ((r0, rows), (r1, rows), (c0, cols), (c1, cols)))
        table = np.zeros((rows + 1, cols + 1), dtype=np.int64)
        table[1:, 1:] = self.mask.cumsum(axis=0, dtype=np.int64).cumsum(axis=1)
        inside = table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]
        area = (r1 - r0) * (c1 - c0)
        return np.where(area > 0, inside / np.maximum(area, 1), 0.0)


def tissue_mask(slide: openslide.AbstractSlide, max_side: int = 2048) -> TissueMask:
    thumb = thumbnail(slide, max_side)
    # a 3 x 3 median first: on glass alone, pixel noise lifts single pixels over the floor, and closing and hole
    # filling would join that speckle into a slide of "tissue"; stained tissue is wider than three pixels
    sat = ndimage.median_filter(saturation(thumb), size=3)
    thr = max(MIN_SATURATION, float(threshold_otsu(sat)) if np.ptp(sat) > 0 else MIN_SATURATION)
    mask = (sat > thr) & (thumb.max(axis=-1) > MAX_DARK * 255)
    mask = ndimage.binary_closing(mask, structure=disk(2), iterations=1)
    mask = ndimage.binary_fill_holes(mask)
    mask = remove_small_objects(mask, max_size=max(1, int(5e-4 * mask.size)))
    scale = slide.dimensions[0] / thumb.shape[1]
    return TissueMask(np.asarray(mask, dtype=bool), float(scale), thr, thumb)
