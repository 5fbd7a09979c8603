"""Opening whole slides with OpenSlide (openslide-bin ships the library: no system package), their pixel size, and
reading regions at a requested resolution.

Readers are opened lazily in each process (:func:`slide_handle`) and never shared across processes: a worker that
reads a slide opens it itself."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openslide
from PIL import Image

from automed.errors import ConfigError, DatasetError

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

UNKNOWN_MPP_RULE = (
    "the slide's pixel size (micrometres per pixel) must be known to mine or predict at a resolution"
)


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
        """The coarsest level at least as fine as ``target_mpp`` and the factor still to shrink by (>= 1; down to
        1 - :data:`MPP_TOLERANCE` when ``target_mpp`` is a little finer than the slide: level 0, enlarged)."""
        best = 0
        for level, ds in enumerate(self.downsamples):
            if self.mpp * ds <= target_mpp * 1.001:
                best = level if ds >= self.downsamples[best] else best
        return best, target_mpp / (self.mpp * self.downsamples[best])


def slide_info(path: Path, mpp: float | None = None, *, given_as: str = "--slide-mpp") -> SlideInfo:
    """Open ``path`` and read its geometry; the pixel size comes from the metadata, else from ``mpp``."""
    if mpp is not None and not (math.isfinite(mpp) and mpp > 0):
        raise ConfigError.single(given_as, "a pixel size is a positive number of micrometres", mpp,
                                 f"pass e.g. {given_as} 0.25 (40x) or 0.5 (20x)")  # fmt: skip
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
            UNKNOWN_MPP_RULE,
            "none in its metadata (openslide.mpp-x)",
            f"pass {given_as} with the level-0 pixel size, e.g. {given_as} 0.5 for a 20x scan",
        )
    try:
        meta_y = float(props.get(openslide.PROPERTY_NAME_MPP_Y, "nan"))
    except ValueError:
        meta_y = math.nan
    if mpp is None and math.isfinite(meta_y) and abs(meta_y - meta) > 0.01 * meta:
        raise DatasetError.single(
            path,
            "automed reads slides with square pixels",
            f"{meta:.4g} um/px across, {meta_y:.4g} um/px down (openslide.mpp-x/-y)",
            "resample the slide to square pixels first",
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


# how much finer than a slide's own pixels it is read (its pixels enlarged): scanners' "40x" is 0.2266-0.2527 um/px
# and "0.25" the usual name for it; a 0.1 % limit refused an Aperio 40x slide (0.2527) at --mpp 0.25
MPP_TOLERANCE = 0.05


def finer_than_slide(mpp: float, info: SlideInfo) -> bool:
    """Whether ``mpp`` asks for more detail than the slide holds (beyond :data:`MPP_TOLERANCE`)."""
    return mpp < info.mpp * (1.0 - MPP_TOLERANCE)


def wrong_mpp_hint(info: SlideInfo) -> str:
    """The end of a fix when a slide's pixel size came from its metadata, which may be wrong: a TIFF saved by an image
    editor records a screen resolution (72 dpi reads as 352.8 um/px)."""
    if info.mpp_source != "metadata":
        return ""
    return (f"; if {info.mpp:.4g} um/px ({25400 / info.mpp:.4g} dpi, from the file's metadata) is not its real pixel "
            "size, pass --slide-mpp with the real one")  # fmt: skip


def on_white(region: Image.Image) -> Image.Image:
    """An OpenSlide RGBA region as RGB, transparent pixels (outside the slide) white. Inside the slide every pixel is
    opaque: then the alpha is dropped without compositing (half the cost per patch)."""
    if region.getchannel("A").getextrema()[0] == 255:
        return region.convert("RGB")
    return Image.alpha_composite(Image.new("RGBA", region.size, (255, 255, 255, 255)), region).convert("RGB")


def damaged(path: Path, where: str, exc: Exception) -> DatasetError:
    """A slide (or label map) whose pixels do not decode: the file, where and the decoder's words."""
    words = " ".join(str(exc).split())[:200]
    return DatasetError.single(path, "a slide's (or label map's) pixels must decode", f"{where}: {type(exc).__name__}: {words}",
                               "the file is damaged: copy it again from its source, or leave it out")  # fmt: skip


def read_rgb(
    path: Path, x: int, y: int, level: int, size: tuple[int, int], out_px: int | None = None
) -> np.ndarray:
    """RGB pixels (height, width, 3) of the region at level-0 ``(x, y)`` read at ``level`` (``size`` = w, h at that
    level), outside-the-slide pixels white; resized to ``out_px`` square when given."""
    try:
        rgb = on_white(slide_handle(path).read_region((x, y), level, size))
    except openslide.OpenSlideError as exc:  # a damaged tile: named, not "unexpected error: OpenSlideError"
        raise damaged(path, f"level {level} at level-0 ({x}, {y})", exc) from None
    if out_px is not None and rgb.size != (out_px, out_px):
        rgb = rgb.resize((out_px, out_px), Image.Resampling.BOX)
    return np.asarray(rgb)


THUMB_TILE = 2048  # thumbnails are read in tiles of this many level pixels a side: memory bounded at any size


def thumbnail(slide: openslide.AbstractSlide, max_side: int) -> np.ndarray:
    """RGB thumbnail (at most ``max_side`` a side), box-filtered from the closest finer level read in tiles of
    ``THUMB_TILE`` pixels, so memory stays bounded on any slide, with or without a pyramid. (OpenSlide's
    ``get_thumbnail`` reads its whole source level and resizes with Lanczos: slower, and unbounded on a slide
    without a pyramid.)"""
    w0, h0 = slide.dimensions
    scale = max(1.0, max(w0, h0) / max_side)
    size = (max(1, round(w0 / scale)), max(1, round(h0 / scale)))
    level = slide.get_best_level_for_downsample(scale)
    lw, lh = slide.level_dimensions[level]
    ds = slide.level_downsamples[level]
    step = THUMB_TILE
    out = Image.new("RGB", size, (255, 255, 255))
    for ty in range(0, lh, step):
        for tx in range(0, lw, step):
            tw, th = min(step, lw - tx), min(step, lh - ty)
            try:
                region = slide.read_region((round(tx * ds), round(ty * ds)), level, (tw, th))
            except openslide.OpenSlideError as exc:
                # OpenSlide keeps the path it opened
                named = Path(str(getattr(slide, "_filename", "the slide")))
                raise damaged(named, f"thumbnail, level {level} at ({tx}, {ty})", exc) from None
            rgb = on_white(region)
            x0, y0 = round(tx * ds / scale), round(ty * ds / scale)
            x1, y1 = round((tx + tw) * ds / scale), round((ty + th) * ds / scale)
            out.paste(rgb.resize((max(1, x1 - x0), max(1, y1 - y0)), Image.Resampling.BOX), (x0, y0))
    return np.asarray(out)


WSI_ONLY = (".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".svslide", ".bif")  # never a plain image


def one_per_dicom_series(paths: list[Path]) -> list[Path]:
    """``paths`` with a DICOM whole slide kept once: its levels (and frame groups) are files of one series in one
    folder, and OpenSlide opens the slide from any one of them. Other files pass through in order."""
    import pydicom

    seen: set[tuple[Path, str]] = set()
    kept = []
    for p in paths:
        if p.suffix.lower() == ".dcm":
            try:
                uid = str(pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"]).get(
                    "SeriesInstanceUID", p.name))  # fmt: skip
            except (pydicom.errors.InvalidDicomError, OSError):
                uid = p.name  # not readable as DICOM: judged (and refused) later like any input
            if (p.parent, uid) in seen:
                continue
            seen.add((p.parent, uid))
        kept.append(p)
    return kept


def slide_name(path: Path) -> str:
    """A slide's name for its outputs: the file name up to its first dot, or for a DICOM whole slide (files named by
    level or UID) its folder's name."""
    return path.parent.name if path.suffix.lower() == ".dcm" else path.name.split(".")[0]


# VL Whole Slide Microscopy Image Storage: the one DICOM SOP class OpenSlide opens
VL_WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"


def may_be_slide(path: Path) -> bool:
    """Whether OpenSlide need be asked about ``path``: a ``.dcm`` file is a slide to OpenSlide only when its meta
    header's Media Storage SOP Class (0002,0002) is VL Whole Slide Microscopy Image Storage (openslide.org/formats/
    dicom), read here from the file's first bytes; asking OpenSlide costs about a millisecond a file, and an input
    of CT or MR series holds thousands. Other files: always asked."""
    from automed.runtime.io import sop_class

    return path.suffix.lower() != ".dcm" or sop_class(path) == VL_WSI


def slide_inputs(input_path: Path) -> list[Path] | None:
    """The whole slides of ``input_path`` (a slide, or a folder holding slides), or ``None`` when it holds none."""

    def is_slide(p: Path) -> bool:
        return (
            p.name.lower().endswith(SLIDE_SUFFIXES)
            and may_be_slide(p)
            and openslide.OpenSlide.detect_format(str(p)) is not None
        )

    def unreadable(
        p: Path,
    ) -> bool:  # a slide-only format OpenSlide cannot open: a broken slide, not an image
        return p.suffix.lower() in WSI_ONLY and openslide.OpenSlide.detect_format(str(p)) is None

    if input_path.is_file() and input_path.suffix.lower() == ".csv":
        _no_listed_slides(input_path, is_slide)
        return None
    listed = [input_path] if not input_path.is_dir() else sorted(input_path.iterdir())
    files = [p for p in listed if p.is_file()]  # asked once a file (a folder of thousands of slices)
    bad = [p for p in files if unreadable(p)]
    if bad:
        raise DatasetError.single(bad[0], "a whole slide must be readable by OpenSlide", "unreadable (truncated or "
                                  "not a slide)", "copy it again, or move it out of the input")  # fmt: skip
    slides = [p for p in files if is_slide(p)]
    if slides:  # images beside slides (label maps, thumbnails, pictures) are not predicted: said, not silent
        from automed.data.io import has_image_suffix

        images = [p.name for p in files if p not in slides and has_image_suffix(p)]
        if images:
            logging.getLogger("automed").warning(
                "%d slide(s) predicted; %d image(s) beside them are not (%s%s): predict images from a folder of "
                "their own", len(slides), len(images), ", ".join(images[:5]), " ..." if len(images) > 5 else "",
            )  # fmt: skip
    found = one_per_dicom_series(slides)
    return found or None


def _no_listed_slides(csv_path: Path, is_slide: Callable[[Path], bool]) -> None:
    """A CSV's images are read whole at their own pixel size: a whole slide listed there would be predicted at the
    slide's resolution, not the model's (and read whole into memory). Refused, with the way that tiles it."""
    from automed.data.dataset import load_csv

    try:
        cases = load_csv(csv_path.resolve()).cases
    except DatasetError:
        return  # the CSV's own problems are reported when its cases are read
    slides = [p for c in cases for p in c.images if p.is_file() and is_slide(p)]
    if slides:
        raise DatasetError.single(csv_path, "whole slides are predicted from a slide or a folder of slides (tiled, "
                                  "at the model's resolution); a CSV's images are read whole at their own pixel size",
                                  f"{len(slides)} slide(s) listed, e.g. {slides[0].name}",
                                  "pass the slides' folder (or one slide) as the input")  # fmt: skip
