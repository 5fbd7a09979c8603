"""Synthetic whole-slide images for tests and benchmarks: tiled pyramidal TIFFs (tifffile: the base level tiled, each
reduced level a separate page, the pixel size in the resolution tags, so OpenSlide reads them as generic-tiff with
its micrometres per pixel), written tile by tile so a 60k x 60k slide needs no more memory than a small one.

The scene is known: white glass with stained ellipses; ellipse ``k`` carries label ``k + 1`` in the label map (a PNG
at a reduced scale)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

GLASS = (243, 242, 244)
STAINS = ((196, 110, 168), (120, 72, 160), (214, 150, 190))  # eosin-pink, haematoxylin-purple, pale pink


@dataclass
class Ellipse:
    cx: float
    cy: float
    rx: float
    ry: float

    def inside(self, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        return ((xx - self.cx) / self.rx) ** 2 + ((yy - self.cy) / self.ry) ** 2 <= 1.0


@dataclass
class SyntheticSlide:
    width: int
    height: int
    mpp: float = 0.5
    ellipses: list[Ellipse] = field(default_factory=list)
    seed: int = 0
    noise: float = (
        6.0  # pixel noise (0: flat colours, which compress to almost nothing: big benchmark slides)
    )

    def labels(self, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        out = np.zeros(xx.shape, dtype=np.uint8)
        for k, e in enumerate(self.ellipses):
            out[e.inside(xx, yy)] = k + 1
        return out

    def region(self, x0: int, y0: int, w: int, h: int, step: float = 1.0) -> np.ndarray:
        """RGB of the level-0 box sampled every ``step`` pixels."""
        ys = y0 + (np.arange(h) + 0.5) * step
        xs = x0 + (np.arange(w) + 0.5) * step
        xx, yy = np.meshgrid(xs, ys)
        lab = self.labels(xx, yy)
        rgb = np.empty((h, w, 3), dtype=np.float32)
        rgb[:] = GLASS
        for k in range(len(self.ellipses)):
            rgb[lab == k + 1] = STAINS[k % len(STAINS)]
        if self.noise:
            rng = np.random.default_rng(self.seed + x0 * 7919 + y0)
            rgb += rng.normal(0, self.noise, size=rgb.shape)
        return np.clip(rgb, 0, 255).astype(np.uint8)


def default_scene(width: int, height: int, mpp: float = 0.5, seed: int = 0) -> SyntheticSlide:
    """Two tissue pieces on glass: a large one left (label 1) and a smaller one right (label 2)."""
    return SyntheticSlide(
        width,
        height,
        mpp,
        [
            Ellipse(0.3 * width, 0.5 * height, 0.2 * width, 0.35 * height),
            Ellipse(0.75 * width, 0.4 * height, 0.12 * width, 0.2 * height),
        ],
        seed,
    )


def _tiles(scene: SyntheticSlide, downsample: int, tile: int) -> Iterator[np.ndarray]:
    w, h = scene.width // downsample, scene.height // downsample
    for ty in range(0, h, tile):
        for tx in range(0, w, tile):
            block = scene.region(tx * downsample, ty * downsample, tile, tile, step=downsample)
            yield block


def write_slide(
    scene: SyntheticSlide, path: Path, *, levels: int = 3, tile: int = 256, with_mpp: bool = True
) -> Path:
    """Write ``scene`` as a tiled pyramidal TIFF at ``path`` (zlib; the pixel size in its resolution tags)."""
    res = (
        {"resolution": (1e4 / scene.mpp, 1e4 / scene.mpp), "resolutionunit": "CENTIMETER"} if with_mpp else {}
    )
    with tifffile.TiffWriter(path, bigtiff=scene.width * scene.height > 2**31) as tw:
        for level in range(levels):
            ds = 2**level
            w, h = scene.width // ds, scene.height // ds
            if min(w, h) < tile and level:
                break
            tw.write(
                _tiles(scene, ds, tile),
                shape=(h, w, 3),
                dtype=np.uint8,
                tile=(tile, tile),
                photometric="rgb",
                compression="zlib",
                subfiletype=1 if level else 0,
                **res,  # type: ignore[arg-type]
            )
    return path


def write_label_png(scene: SyntheticSlide, path: Path, downsample: int = 8) -> Path:
    """The label map at ``1/downsample`` of level 0, as an 8-bit PNG (0 = glass, k + 1 = ellipse k)."""
    w, h = scene.width // downsample, scene.height // downsample
    ys = (np.arange(h) + 0.5) * downsample
    xs = (np.arange(w) + 0.5) * downsample
    xx, yy = np.meshgrid(xs, ys)
    Image.fromarray(scene.labels(xx, yy)).save(path)
    return path
