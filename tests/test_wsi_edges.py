"""Whole-slide edge cases found in review: slide keys, --num-patches with workers, label map modes and value maps,
output names, non-square pixels, tile-wise thumbnails, unreadable slides (issue 18)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from automed.errors import AutomedError
from automed.testing.synthetic_wsi import default_scene, write_slide
from automed.workflow.patch_miner import patch_miner


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_slide(default_scene(1024, 768, mpp=0.5, seed=3), tmp_path_factory.mktemp("s") / "a.tif")


def test_slide_keys_are_unique_and_safe(slide: Path, tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text(f"SubjectID,Channel_0\ns 1,{slide}\ns_1,{slide}\n..,{slide}\n")
    res = patch_miner([tmp_path / "s.csv"], tmp_path / "m", patch_size="128", show_progress=False)
    keys = [s["slide"] for s in res.slides]
    assert len(set(keys)) == 3 and all(k.strip(".") for k in keys)
    rows = _rows(res.csv)
    assert len(rows) == len(list((res.folder / "patches").rglob("*.png")))
    assert all((res.folder / r["Channel_0"]).resolve().is_relative_to(res.folder / "patches") for r in rows)


def test_num_patches_with_workers_leaves_no_extra_files(slide: Path, tmp_path: Path) -> None:
    res = patch_miner([slide], tmp_path / "m", patch_size="64", num_patches=5, read="random", workers=2,
                      show_progress=False)  # fmt: skip
    assert res.patches == 5 and len(list((res.folder / "patches").rglob("*.png"))) == 5


def test_label_maps_in_palette_and_16_bit_and_value_maps(slide: Path, tmp_path: Path) -> None:
    scene = default_scene(1024, 768, mpp=0.5, seed=3)
    xx, yy = np.meshgrid(np.arange(128) * 8 + 4, np.arange(96) * 8 + 4)
    truth = scene.labels(xx, yy)
    pal = Image.fromarray(truth, mode="P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    pal.save(tmp_path / "pal.png")
    Image.fromarray(truth.astype(np.uint16) * 300).save(tmp_path / "deep.png")
    for name, vmap, ok in (("pal.png", None, True), ("deep.png", None, False), ("deep.png", "0:0,300:1,600:2", True),
                           ("deep.png", "0:0,300:1", False)):  # fmt: skip
        (tmp_path / "s.csv").write_text(f"SubjectID,Channel_0,Label\nA,{slide},{name}\n")
        out = tmp_path / f"m_{name}_{vmap}"
        if not ok:
            with pytest.raises(AutomedError, match="value-map"):
                patch_miner(
                    [tmp_path / "s.csv"], out, patch_size="64", mpp=1.0, value_map=vmap, show_progress=False
                )
            assert not out.exists()
            continue
        res = patch_miner(
            [tmp_path / "s.csv"], out, patch_size="64", mpp=1.0, value_map=vmap, show_progress=False
        )
        values = set()
        for r in _rows(res.csv):
            values |= set(np.unique(np.asarray(Image.open(res.folder / r["Label"]))).tolist())
        assert values <= {0, 1, 2} and values & {1, 2}
    (tmp_path / "s.csv").write_text(f"SubjectID,Channel_0,Label\nA,{slide},missing.png\n")
    with pytest.raises(AutomedError, match="must exist"):
        patch_miner([tmp_path / "s.csv"], tmp_path / "x", show_progress=False)


def test_non_square_pixels_are_refused(tmp_path: Path) -> None:
    data = np.full((512, 512, 3), 200, np.uint8)
    path = tmp_path / "ns.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(data, tile=(256, 256), photometric="rgb", resolution=(4e4, 2e4), resolutionunit="CENTIMETER")
        tw.write(data[::2, ::2], tile=(256, 256), photometric="rgb", subfiletype=1)
    with pytest.raises(AutomedError, match="square pixels"):
        patch_miner([path], tmp_path / "m", show_progress=False)


def test_tilewise_thumbnail_matches_openslide(slide: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import automed.wsi.slide as slide_mod

    handle = slide_mod.slide_handle(slide)
    ref = slide_mod.thumbnail(handle, 256)
    monkeypatch.setattr(slide_mod, "THUMB_LEVEL_MAX", 100)  # force the tile-by-tile path
    tiled = slide_mod.thumbnail(handle, 256)
    assert tiled.shape == ref.shape and np.abs(tiled.astype(int) - ref.astype(int)).mean() < 6


def test_predict_names_and_unreadable_slides(slide: Path, tmp_path: Path) -> None:
    from automed.wsi.slide import slide_inputs

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "e.tif").write_bytes(slide.read_bytes())
    (folder / "e.tiff").write_bytes(slide.read_bytes())
    assert [p.name for p in slide_inputs(folder) or []] == ["e.tif", "e.tiff"]
    (folder / "broken.svs").write_bytes(b"II*\x00" + b"\x00" * 64)
    with pytest.raises(AutomedError, match="readable by OpenSlide"):
        slide_inputs(folder)
