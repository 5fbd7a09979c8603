"""Mining patches from one slide: the grid at the requested resolution, the tissue filter, artifact checks, the
label map's patch and per-label fractions, and the PNG files.

Work is split into chunks of grid positions (:class:`Chunk`) that any worker process can run: it opens the slide
itself (:func:`~automed.wsi.slide.slide_handle`) and holds one patch at a time, so memory does not grow with the
slide. PNG patches carry the pixel size in their pHYs chunk."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image

from automed.errors import Problem
from automed.wsi.label_tiff import TiledLabel, tiled_label
from automed.wsi.slide import SlideInfo, damaged, read_rgb

# artifact checks on the patch itself (after the tissue mask): mostly glass, mostly black, or colourless
WHITE_LEVEL, WHITE_FRACTION = 220, 0.8
BLACK_LEVEL, BLACK_FRACTION = 30, 0.5
MIN_MEDIAN_SATURATION = 0.04


@dataclass(frozen=True)
class Grid:
    """Where the patches of one slide lie: level-0 origins of squares ``size0`` wide, read at ``level``."""

    info: SlideInfo
    patch_px: int  # output patch side at the target resolution
    target_mpp: float
    overlap: float

    @property
    def size0(self) -> int:
        return max(1, round(self.patch_px * self.target_mpp / self.info.mpp))

    @property
    def level(self) -> int:
        return self.info.level_for(self.target_mpp)[0]

    @property
    def read_px(self) -> int:
        return max(1, math.ceil(self.size0 / self.info.downsamples[self.level]))

    def positions(self) -> list[tuple[int, int]]:
        stride = max(1, round(self.size0 * (1.0 - self.overlap)))
        xs = range(0, self.info.width - self.size0 + 1, stride)
        ys = range(0, self.info.height - self.size0 + 1, stride)
        return [(x, y) for y in ys for x in xs]


@dataclass
class Chunk:
    slide_key: str
    grid: Grid
    positions: list[tuple[int, int, float]]  # level-0 x, y and the tissue fraction there
    out: Path  # the output folder (patches/<slide_key>/, labels/<slide_key>/)
    label_path: Path | None = None
    value_map: dict[int, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # per-slide CSV values (PatientID, ValueToPredict)


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation, (max - min) / max of the channels, in [0, 1] (as skimage's rgb2hsv, without its float64
    conversion of every channel: this runs on every patch)."""
    mx = rgb.max(axis=-1).astype(np.float32)
    mn = rgb.min(axis=-1).astype(np.float32)
    sat: np.ndarray = np.divide(mx - mn, mx, out=np.zeros_like(mx), where=mx > 0)
    return sat


def artifact(rgb: np.ndarray) -> str | None:
    """Why the patch is rejected, or ``None``. Judged on every 4th pixel of each axis in integer arithmetic (this runs
    on every patch): the fractions need not see all pixels, and "median saturation below the floor" is taken as "more
    than half of the pixels below it", which needs no sort (exactly half: kept)."""
    r, g, b = (rgb[::4, ::4, c].astype(np.int32) for c in range(3))
    n = r.size
    gray3 = r + g + b  # 3 x the mean of the channels
    if np.count_nonzero(gray3 > 3 * WHITE_LEVEL) > WHITE_FRACTION * n:
        return "white"
    if np.count_nonzero(gray3 < 3 * BLACK_LEVEL) > BLACK_FRACTION * n:
        return "black"
    mx = np.maximum(np.maximum(r, g), b)
    # saturation (max - min) / max at or below the floor (the float version's 1/25 rounded below 0.04); black has
    # saturation 0: colourless too
    colourless = (mx - np.minimum(np.minimum(r, g), b)) * round(1 / MIN_MEDIAN_SATURATION) <= mx
    if np.count_nonzero(colourless) > n // 2:
        return "low saturation"
    return None


# per process: plain-image label maps and tiled TIFFs tifffile decodes (None: read by OpenSlide)
_LABEL_IMAGES: dict[str, Image.Image | TiledLabel | None] = {}


def _label_region(path: Path, box: tuple[int, int, int, int], info_size: tuple[int, int]) -> Image.Image:
    """The label map's crop for the level-0 ``box`` (the map may be at any scale of the slide). Plain images (PNG,
    ...) keep their own mode - palette indices and 16-bit values stay values, and so do tiled TIFFs, read tile by
    tile with tifffile (:mod:`automed.wsi.label_tiff`); a tiled TIFF whose tiles tifffile cannot decode here (JPEG,
    LZW) is read through OpenSlide (its first channel). What a label file is, is decided once per process."""
    import openslide

    from automed.wsi.slide import slide_handle

    key = str(path)
    if key not in _LABEL_IMAGES:
        tiled = tiled_label(path)
        _LABEL_IMAGES[key] = tiled or (
            Image.open(path) if openslide.OpenSlide.detect_format(key) is None else None
        )
    img = _LABEL_IMAGES[key]
    size = img.size if img is not None else slide_handle(path).dimensions
    sx, sy = size[0] / info_size[0], size[1] / info_size[1]
    x, y, w0, h0 = box
    x0, y0, w, h = round(x * sx), round(y * sy), max(1, round(w0 * sx)), max(1, round(h0 * sy))
    try:
        if img is not None:
            return img.crop((x0, y0, x0 + w, y0 + h))
        # 8-bit grayscale: R = G = B = the value, which the luminance keeps; colours: their luminance, as for a PNG
        return slide_handle(path).read_region((x0, y0), 0, (w, h)).convert("RGB").convert("L")
    except (OSError, ValueError, IndexError, tifffile.TiffFileError, openslide.OpenSlideError) as exc:
        raise damaged(path, f"label map at ({x0}, {y0})", exc) from None  # a truncated or corrupt tile


LABEL_MODES = ("L", "P", "I;16", "I", "1")  # one value per pixel: values stay values


def tiff_label_mode(path: Path) -> str:
    """The mode (Pillow's names) of a label map OpenSlide reads, from its first TIFF page: ``L`` (8-bit grayscale)
    or ``RGB`` (8-bit colour), the only kinds whose values survive OpenSlide's RGBA; otherwise what it is (16-bit,
    palette, min-is-white), which it would turn into other values (16 bits scaled to 8, a palette's red channel)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            bits, samples, photometric = page.bitspersample, page.samplesperpixel, page.photometric
    except (
        OSError,
        ValueError,
        tifffile.TiffFileError,
    ):  # a slide format that is not TIFF (MRXS, ...): colours
        return "RGB"
    kind = {1: "L", 2: "RGB", 6: "RGB"}.get(int(photometric))  # MINISBLACK, RGB, YCBCR (JPEG tiles)
    if bits == 8 and ((kind == "L" and samples == 1) or (kind == "RGB" and samples in (3, 4))):
        return kind
    name = getattr(photometric, "name", str(photometric)).lower()
    return f"{bits}-bit {name} with {samples} sample(s)"


def label_problems(path: Path, info: SlideInfo, value_map: bool) -> list[Problem]:
    """What is wrong with a slide's label map, judged from its header before any mining: unreadable, another
    slide's (its aspect ratio differs by more than 1 %), or colours (RGB: luminances would become classes) without
    a ``--value-map`` that says which values mean what."""
    import openslide

    try:
        if (tiled := tiled_label(path)) is not None:
            size, mode = tiled.size, tiled.mode
            tiled.close()
            if mode not in ("L", "I;16", "P", "RGB"):
                return [Problem(str(path), "a tiled TIFF label map holds unsigned 8-bit grayscale or colour, "
                                "16-bit grayscale or 8-bit palette values", mode, "save it as an 8-bit or 16-bit "
                                "grayscale tiled TIFF or as a PNG")]  # fmt: skip
        elif openslide.OpenSlide.detect_format(str(path)) is not None:
            size, mode = openslide.OpenSlide(str(path)).dimensions, tiff_label_mode(path)
            if mode not in ("L", "RGB"):
                return [Problem(str(path), "a label map read through OpenSlide (a slide format, or a tiled TIFF in "
                                "a compression tifffile cannot decode here: JPEG, LZW, ...) keeps the values of "
                                "8-bit grayscale (or colour) only", mode, "save it as a tiled TIFF uncompressed or "
                                "with Deflate (tifffile keeps 16-bit and palette values), or as a PNG")]  # fmt: skip
        else:
            with Image.open(path) as img:
                size, mode = img.size, img.mode
    except (
        Image.DecompressionBombError
    ) as exc:  # a full-resolution map of a large slide: Pillow refuses to open it
        return [Problem(str(path), "a label map in a plain image format must be small enough for Pillow to open",
                        str(exc).split(",")[0], "save it at a smaller scale of the slide (any scale is read, e.g. "
                        "downsampled 8 times) or as an 8-bit grayscale tiled TIFF")]  # fmt: skip
    except (OSError, openslide.OpenSlideError) as exc:
        return [Problem(str(path), "a label map must be an image Pillow or OpenSlide reads",
                        f"unreadable ({type(exc).__name__})", "write it as PNG or a tiled TIFF")]  # fmt: skip
    out = []
    ratio, slide_ratio = size[0] / size[1], info.width / info.height
    if abs(ratio - slide_ratio) > 0.01 * slide_ratio:
        out.append(Problem(str(path), "a label map covers its slide (the same aspect ratio, any scale)",
                           f"{size[0]} x {size[1]} for a slide of {info.width} x {info.height}",
                           "check that it is this slide's map and not transposed"))  # fmt: skip
    if mode not in LABEL_MODES and not mode.startswith("I;16") and not value_map:
        out.append(Problem(str(path), "a label map holds one value per pixel (grayscale, palette or 16-bit)",
                           f"mode {mode}", "save it as a grayscale or palette PNG, or pass --value-map RAW:LABEL,..."))  # fmt: skip
    return out


def _label_patch(chunk: Chunk, x: int, y: int) -> np.ndarray:
    """The label map under the patch, nearest-neighbour, mapped by ``value_map`` (a value it does not map is an
    error: silently calling it background would teach the model wrong)."""
    assert chunk.label_path is not None
    g = chunk.grid
    crop = _label_region(chunk.label_path, (x, y, g.size0, g.size0), (g.info.width, g.info.height))
    if crop.mode not in LABEL_MODES:
        crop = crop.convert("L")
    raw = np.asarray(crop.resize((g.patch_px, g.patch_px), Image.Resampling.NEAREST)).astype(np.int64)
    if chunk.value_map:
        unknown = set(np.unique(raw).tolist()) - set(chunk.value_map)
        if unknown:
            from automed.errors import DatasetError

            raise DatasetError.single(chunk.label_path, "--value-map maps every value of the label map",
                                      f"unmapped value(s) {sorted(unknown)[:5]}", "add them to --value-map (RAW:LABEL)")  # fmt: skip
        keys = np.array(sorted(chunk.value_map), dtype=np.int64)  # every raw value is a key (checked above)
        raw = np.array([chunk.value_map[k] for k in keys.tolist()], dtype=np.int64)[
            np.searchsorted(keys, raw)
        ]
    if raw.max(initial=0) > 255 or raw.min(initial=0) < 0:
        from automed.errors import DatasetError

        raise DatasetError.single(chunk.label_path, "patch labels are 0-255", f"values up to {int(raw.max())}",
                                  "map them with --value-map RAW:LABEL")  # fmt: skip
    return raw.astype(np.uint8)


def _save_png(array: np.ndarray, path: Path, mpp: float) -> None:
    """Written in place: the whole output folder is built hidden and renamed when complete (atomic_directory)."""
    dpi = 25400.0 / mpp
    # zlib level 1 with the run-length strategy (Z_RLE = 3): on H&E patches faster than level 1's default strategy
    # and about as small as level 6 (measured: 2.3 vs 2.9 ms and 45 vs 49 kB per 256-pixel patch of CMU-1)
    Image.fromarray(array).save(path, format="PNG", dpi=(dpi, dpi), compress_level=1, compress_type=3)


def mine_chunk(chunk: Chunk) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Mine ``chunk``: the CSV rows of the patches kept and the count of each rejection reason."""
    g = chunk.grid
    min_tissue = float(chunk.extra["min_tissue"])
    rows: list[dict[str, Any]] = []
    rejected: dict[str, int] = {}
    label_maps = chunk.label_path is not None and not chunk.extra.get("class_from_label")
    for sub in ("patches", "labels") if label_maps else ("patches",):
        (chunk.out / sub / chunk.slide_key).mkdir(parents=True, exist_ok=True)
    for x, y, tissue in chunk.positions:
        if tissue < min_tissue:
            rejected["no tissue"] = rejected.get("no tissue", 0) + 1
            continue
        rgb = read_rgb(g.info.path, x, y, g.level, (g.read_px, g.read_px), g.patch_px)
        why = artifact(rgb)
        if why is not None:
            rejected[why] = rejected.get(why, 0) + 1
            continue
        name = f"{x}_{y}.png"
        image_rel = Path("patches") / chunk.slide_key / name
        _save_png(rgb, chunk.out / image_rel, g.target_mpp)
        row: dict[str, Any] = {
            "SubjectID": f"{chunk.slide_key}_{x}_{y}",
            "PatientID": chunk.extra["patient"],
            "Channel_0": str(image_rel),
        }
        if chunk.label_path is not None:
            lab = _label_patch(chunk, x, y)
            values, counts = np.unique(lab, return_counts=True)
            row["fractions"] = {int(v): float(c) / lab.size for v, c in zip(values, counts, strict=True)}
            if chunk.extra.get("class_from_label"):  # a patch-level class: the label covering most of it
                row["ValueToPredict"] = int(values[np.argmax(counts)])
            else:
                label_rel = Path("labels") / chunk.slide_key / name
                _save_png(lab, chunk.out / label_rel, g.target_mpp)
                row["Label"] = str(label_rel)
        if "value" in chunk.extra:
            row["ValueToPredict"] = chunk.extra["value"]
        row.update({"Info_X": x, "Info_Y": y, "Info_Size0": g.size0, "Info_Mpp": g.target_mpp})
        row["Info_TissueFraction"] = round(tissue, 4)
        rows.append(row)
    return rows, rejected
