"""Opening whole slides with OpenSlide (openslide-bin ships the library: no system package), their pixel size, and
reading regions at a requested resolution.

Readers are opened lazily in each process (:func:`slide_handle`) and never shared across processes: a worker that
reads a slide opens it itself."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openslide
from PIL import Image

from automed.errors import DatasetError

SLIDE_SUFFIXES = (
    ".svs",
    ".tif",
    ".tiff",
    ".ndpi",
    ".mrxs",
    ".scn",
    ".vms",
    ".vmu",
    ".svslide",
    ".bif",
    ".dcm",
)
_OPEN: dict[str, openslide.AbstractSlide] = {}


def slide_handle(path: Path) -> openslide.AbstractSlide:
    """This process's reader of ``path`` (opened on first use)."""
    key = str(path)
    if key not in _OPEN:
        _OPEN[key] = openslide.open_slide(key)
    return _OPEN[key]


@dataclass(frozen=True)
class SlideInfo:
    path: Path
    width: int
    height: int
    level_dimensions: tuple[tuple[int, int], ...]
    downsamples: tuple[float, ...]
    mpp: float  # micrometres per level-0 pixel
    mpp_source: str  # "metadata" or "--mpp"/"--slide-mpp"
    vendor: str

    def level_for(self, target_mpp: float) -> tuple[int, float]:
        """The coarsest level at least as fine as ``target_mpp`` and the factor still to shrink by (>= 1)."""
        best = 0
        for level, ds in enumerate(self.downsamples):
            if self.mpp * ds <= target_mpp * 1.001:
                best = level if ds >= self.downsamples[best] else best
        return best, target_mpp / (self.mpp * self.downsamples[best])


def slide_info(path: Path, mpp: float | None = None, *, given_as: str = "--slide-mpp") -> SlideInfo:
    """Open ``path`` and read its geometry; the pixel size comes from the metadata, else from ``mpp``."""
    try:
        slide = openslide.OpenSlide(str(path))
    except (openslide.OpenSlideError, OSError) as exc:
        raise DatasetError.single(
            path,
            "a slide must be a format OpenSlide reads (SVS, tiled TIFF, NDPI, MRXS, SCN, DICOM-WSI, ...)",
            f"unreadable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no details'})",
            "check the file, or convert it to a tiled pyramidal TIFF",
        ) from exc
    props = slide.properties
    try:
        meta = float(props.get(openslide.PROPERTY_NAME_MPP_X, "nan"))
    except ValueError:
        meta = math.nan
    if mpp is None and not (math.isfinite(meta) and meta > 0):
        raise DatasetError.single(
            path,
            "the slide's pixel size (micrometres per pixel) must be known to mine or predict at a resolution",
            "none in its metadata (openslide.mpp-x)",
            f"pass {given_as} with the level-0 pixel size, e.g. {given_as} 0.5 for a 20x scan",
        )
    use_meta = mpp is None
    info = SlideInfo(
        path=path,
        width=int(slide.dimensions[0]),
        height=int(slide.dimensions[1]),
        level_dimensions=tuple((int(w), int(h)) for w, h in slide.level_dimensions),
        downsamples=tuple(float(d) for d in slide.level_downsamples),
        mpp=meta if use_meta else float(mpp),  # type: ignore[arg-type]
        mpp_source="metadata" if use_meta else given_as,
        vendor=str(props.get(openslide.PROPERTY_NAME_VENDOR, "unknown")),
    )
    slide.close()
    return info


def read_rgb(
    path: Path, x: int, y: int, level: int, size: tuple[int, int], out_px: int | None = None
) -> np.ndarray:
    """RGB pixels (height, width, 3) of the region at level-0 ``(x, y)`` read at ``level`` (``size`` = w, h at that
    level), outside-the-slide pixels white; resized to ``out_px`` square when given."""
    region = slide_handle(path).read_region((x, y), level, size)
    white = Image.new("RGBA", region.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, region).convert("RGB")
    if out_px is not None and rgb.size != (out_px, out_px):
        rgb = rgb.resize((out_px, out_px), Image.Resampling.BOX)
    return np.asarray(rgb)
