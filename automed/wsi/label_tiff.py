"""Tiled TIFF label maps read tile by tile with tifffile, not through OpenSlide.

OpenSlide reads a tiled TIFF as RGBA: a 16-bit map became 8 bits (all background), a palette map its palette's red
channel, and an uncompressed map with 16-pixel tiles stopped the mining inside libtiff ("Invalid tile byte count for
tile 9. Expected 256, got 1024"). tifffile gives the stored values, and only the tiles under a patch are decoded, so
a map at the slide's full resolution is never held whole. Compressions tifffile cannot decode here (JPEG, LZW, ...
need imagecodecs) are left to OpenSlide (:func:`tiled_label` says ``None``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

# what each kind of first page is read as (Pillow's mode names, as a PNG of the same kind would be)
_MINISBLACK, _RGB, _PALETTE = 1, 2, 3
_YCBCR, _JPEG = 6, (6, 7)  # photometric YCbCr; compression old-style and new-style JPEG


class TiledLabel:
    """The first page of a tiled TIFF: its ``size`` (width, height), ``mode`` (``L``, ``I;16``, ``P``, ``RGB``, or
    what it is when none of those: ``"32-bit minisblack float32 with 1 sample(s)"``) and :meth:`crop`."""

    def __init__(self, tif: tifffile.TiffFile) -> None:
        self._tif = tif
        self._page = page = tif.pages.first
        assert isinstance(page, tifffile.TiffPage)
        self.size = (int(page.imagewidth), int(page.imagelength))
        bits, samples, photometric = int(page.bitspersample), int(page.samplesperpixel), int(page.photometric)
        unsigned = int(page.sampleformat) == 1 and int(page.planarconfig) == 1 and int(page.imagedepth) == 1
        kinds = {(_MINISBLACK, 8, 1): "L", (_MINISBLACK, 16, 1): "I;16", (_PALETTE, 8, 1): "P"}
        kinds |= {(_RGB, 8, 3): "RGB", (_RGB, 8, 4): "RGB"}
        name = getattr(page.photometric, "name", str(photometric)).lower()
        what = f"{bits}-bit {name}{'' if unsigned else f' {page.dtype}'} with {samples} sample(s)"
        self.mode = kinds.get((photometric, bits, samples), what) if unsigned else what

    def close(self) -> None:
        self._tif.close()

    def _tile(self, index: int) -> tuple[np.ndarray | None, int, int]:
        page, fh = self._page, self._tif.filehandle
        data = None
        if page.databytecounts[index]:
            with fh.lock:
                fh.seek(page.dataoffsets[index])
                data = fh.read(page.databytecounts[index])
        try:
            tile, at, _ = page.decode(data, index, jpegtables=page.jpegtables)
        except (
            Exception
        ) as exc:  # each codec's own error (zlib.error, imagecodecs', ...): one kind for callers
            raise tifffile.TiffFileError(
                f"tile {index} does not decode: {type(exc).__name__}: {exc}"
            ) from exc
        return (None if tile is None else tile[0]), int(at[2]), int(at[3])

    def crop(self, box: tuple[int, int, int, int]) -> Image.Image:
        """The pixels of ``box`` (left, top, right, bottom), as Pillow's ``crop``: 0 outside the map."""
        x0, y0, x1, y1 = box
        page, (width, height) = self._page, self.size
        samples = 1 if self.mode in ("L", "I;16", "P") else 3
        out = np.zeros((y1 - y0, x1 - x0, samples), page.dtype)
        tw, th = int(page.tilewidth), int(page.tilelength)
        across = math.ceil(width / tw)
        for ty in range(max(y0, 0) // th, (min(y1, height) - 1) // th + 1):
            for tx in range(max(x0, 0) // tw, (min(x1, width) - 1) // tw + 1):
                tile, top, left = self._tile(ty * across + tx)
                if tile is None:  # a sparse tile: not written, 0
                    continue
                ya, yb = max(y0, top), min(y1, top + th, height)
                xa, xb = max(x0, left), min(x1, left + tw, width)
                out[ya - y0 : yb - y0, xa - x0 : xb - x0] = tile[
                    ya - top : yb - top, xa - left : xb - left, :samples
                ]
        return Image.fromarray(out[..., 0] if samples == 1 else out)


def tiled_label(path: Path) -> TiledLabel | None:
    """``path`` as a :class:`TiledLabel` when it is a tiled TIFF whose tiles tifffile decodes here (uncompressed,
    Deflate, LZMA); ``None`` otherwise (a PNG, a stripped TIFF, a slide format, JPEG or LZW tiles, YCbCr colour:
    OpenSlide's route, the same whether or not the optional imagecodecs is installed)."""
    try:
        tif = tifffile.TiffFile(path)
    except (OSError, ValueError, tifffile.TiffFileError):
        return None
    try:
        page = tif.pages.first
        if not isinstance(page, tifffile.TiffPage) or not page.is_tiled or not len(page.dataoffsets):
            tif.close()
            return None
        if int(page.photometric) == _YCBCR or int(page.compression) in _JPEG:
            tif.close()  # colour as JPEG stores it: OpenSlide gives RGB, whether or not imagecodecs is installed
            return None
        page.decode(None, 0)  # the codec is looked up here: tifffile raises for one it lacks (imagecodecs)
        return TiledLabel(tif)
    except (KeyError, ValueError, ImportError, NotImplementedError, IndexError, tifffile.TiffFileError):
        tif.close()  # (IndexError: a file of a header and no page)
        return None
