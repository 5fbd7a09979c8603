"""Writing block results as tiled pyramidal TIFFs at the slide's own dimensions (OpenSlide and QuPath open them as
generic-tiff), and the small pictures: a heatmap per class, the overlay thumbnail and the count map.

Tiles are produced one at a time in file order from the block store, through a small cache of blocks, so memory
stays a few blocks whatever the slide's size."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile

from automed.wsi.infer import BlockGrid

TILE = 256
CACHE = (
    16  # blocks kept in memory while writing (a tile row touches one row of blocks; a miss costs one np.load)
)


class BlockReader:
    """Model-pixel values at arbitrary positions, read from the block store (``prefix`` L or P)."""

    def __init__(self, grid: BlockGrid, store: Path, prefix: str, channel: int | None = None) -> None:
        self.grid, self.store, self.prefix, self.channel = grid, store, prefix, channel
        self.cache: OrderedDict[tuple[int, int], np.ndarray | None] = OrderedDict()

    def _block(self, bx: int, by: int) -> np.ndarray | None:
        key = (bx, by)
        if key not in self.cache:
            p = self.store / f"{self.prefix}_{bx}_{by}.npy"
            arr = np.load(p) if p.is_file() else None
            self.cache[key] = arr if arr is None or self.channel is None else arr[self.channel]
            if len(self.cache) > CACHE:
                self.cache.popitem(last=False)
        else:
            self.cache.move_to_end(key)
        return self.cache[key]

    def sample(self, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
        """Values at model pixels ``(my[i], mx[j])`` as a (len(my), len(mx)) uint8 array (0 where not predicted)."""
        out = np.zeros((len(my), len(mx)), dtype=np.uint8)
        b = self.grid.block
        for by in np.unique(my // b):
            rows = np.nonzero(my // b == by)[0]
            for bx in np.unique(mx // b):
                cols = np.nonzero(mx // b == bx)[0]
                block = self._block(int(bx), int(by))
                if block is not None:
                    ry = np.clip(my[rows] - by * b, 0, block.shape[0] - 1)
                    rx = np.clip(mx[cols] - bx * b, 0, block.shape[1] - 1)
                    out[np.ix_(rows, cols)] = block[np.ix_(ry, rx)]
        return out


def _tiles(reader: BlockReader, downsample: int) -> Iterator[np.ndarray]:
    g = reader.grid
    w, h = -(-g.info.width // downsample), -(-g.info.height // downsample)
    mw, mh = g.model_size
    for ty in range(0, h, TILE):
        ys = (np.arange(ty, ty + TILE) + 0.5) * downsample
        my = np.minimum((ys / g.f0).astype(np.int64), mh - 1)
        for tx in range(0, w, TILE):
            xs = (np.arange(tx, tx + TILE) + 0.5) * downsample
            mx = np.minimum((xs / g.f0).astype(np.int64), mw - 1)
            yield reader.sample(mx, my)


def write_pyramid(reader: BlockReader, path: Path) -> None:
    """A tiled uint8 pyramid of the slide's dimensions (levels /1, /2, /4, ... down to one tile)."""
    g = reader.grid
    tmp = path.with_name(f".{path.name}.partial")
    res = (1e4 / g.info.mpp, 1e4 / g.info.mpp)
    try:
        _write_levels(reader, tmp, res)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)


def _write_levels(reader: BlockReader, tmp: Path, res: tuple[float, float]) -> None:
    g = reader.grid
    with tifffile.TiffWriter(tmp, bigtiff=g.info.width * g.info.height > 2**31) as tw:
        ds = 1
        while True:
            w, h = -(-g.info.width // ds), -(-g.info.height // ds)
            tw.write(_tiles(reader, ds), shape=(h, w), dtype=np.uint8, tile=(TILE, TILE), photometric="minisblack",
                     compression="zlib", subfiletype=1 if ds > 1 else 0, resolution=(res[0] / ds, res[1] / ds),
                     resolutionunit="CENTIMETER")  # fmt: skip
            if max(w, h) <= TILE:
                break
            ds *= 2


def thumbnail_values(reader: BlockReader, max_side: int = 1024) -> np.ndarray:
    """The store's values on a grid of at most ``max_side`` pixels a side (for the pictures)."""
    g = reader.grid
    mw, mh = g.model_size
    step = max(1.0, max(mw, mh) / max_side)
    mx = np.minimum((np.arange(int(mw / step)) * step + step / 2).astype(np.int64), mw - 1)
    my = np.minimum((np.arange(int(mh / step)) * step + step / 2).astype(np.int64), mh - 1)
    return reader.sample(mx, my)
