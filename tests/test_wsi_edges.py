"""Whole-slide edge cases found in review: slide keys, --num-patches with workers, label map modes and value maps,
output names, non-square pixels, tile-wise thumbnails, unreadable slides (issue 18)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

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


def _copies(slide: Path, folder: Path, n: int) -> list[Path]:
    """``n`` names of the slide's file (hard links: one slide file listed on two rows is refused)."""
    out = [folder / f"copy{i}.tif" for i in range(n)]
    for p in out:
        os.link(slide, p)
    return out


def test_slide_keys_are_unique_and_safe(slide: Path, tmp_path: Path) -> None:
    a, b, c = _copies(slide, tmp_path, 3)
    (tmp_path / "s.csv").write_text(f"SubjectID,Channel_0\ns 1,{a}\ns_1,{b}\n..,{c}\n")
    res = patch_miner([tmp_path / "s.csv"], tmp_path / "m", patch_size="128", show_progress=False)
    keys = [s["slide"] for s in res.slides]
    assert len(set(keys)) == 3 and all(k.strip(".") for k in keys)
    rows = _rows(res.csv)
    assert len(rows) == len(list((res.folder / "patches").rglob("*.png")))
    assert all((res.folder / r["Channel_0"]).resolve().is_relative_to(res.folder / "patches") for r in rows)
    assert {r["PatientID"] for r in rows} == {s["slide"] for s in res.slides}  # no PatientID: one per slide
    # a CSV's PatientID groups slides of one patient (their patches must share folds)
    (tmp_path / "p.csv").write_text(f"SubjectID,Channel_0,PatientID\nA,{a}, P001\nB,{b},P001\nC,{c},\n")
    res = patch_miner([tmp_path / "p.csv"], tmp_path / "m2", patch_size="128", show_progress=False)
    assert {r["PatientID"] for r in _rows(res.csv)} == {"P001", "C"}


def test_num_patches_with_workers_leaves_no_extra_files(
    slide: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="automed"):
        res = patch_miner([slide], tmp_path / "m", patch_size="64", num_patches=5, read="random", workers=2,
                          show_progress=False)  # fmt: skip
    assert res.patches == 5 and len(list((res.folder / "patches").rglob("*.png"))) == 5
    assert "row order" not in caplog.text
    # in sequential order the patches kept are the slide's top rows: said, with the way to spread them
    with caplog.at_level("WARNING", logger="automed"):
        res = patch_miner([slide], tmp_path / "s", patch_size="64", num_patches=5, show_progress=False)
    assert max(int(r["Info_Y"]) for r in _rows(res.csv)) < 768 // 2
    assert (
        "a: the 5 patches kept are the first in row order" in caplog.text and "--read random" in caplog.text
    )


def test_slides_of_different_pixel_sizes_without_mpp_are_warned_about(
    slide: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 40x slide beside 20x ones, mined without --mpp: each at its own resolution, so one patch size covered
    twice the tissue on some slides - a training set of mixed scales, without a word."""
    fine = write_slide(default_scene(1024, 768, mpp=0.25, seed=3), tmp_path / "fine.tif")
    with caplog.at_level("WARNING", logger="automed"):
        patch_miner([slide, fine], tmp_path / "m", patch_size="64", num_patches=1, show_progress=False)
    assert "pixel sizes differ (0.25, 0.5 um/px)" in caplog.text and "--mpp 0.5" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="automed"):  # one resolution asked: nothing to say
        patch_miner([slide, fine], tmp_path / "n", patch_size="64", mpp=0.5, num_patches=1, read="random",
                    show_progress=False)  # fmt: skip
    assert not caplog.text


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
    # judged before any mining: another slide's (transposed) map, colours without a value map, not an image
    Image.fromarray(truth.T.copy()).save(tmp_path / "transposed.png")
    Image.fromarray(np.stack([truth * 80] * 3, axis=-1).astype(np.uint8)).save(tmp_path / "rgb.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    for name, rule in (("transposed.png", "the same aspect ratio"), ("rgb.png", "one value per pixel"),
                       ("junk.png", "Pillow or OpenSlide reads")):  # fmt: skip
        (tmp_path / "s.csv").write_text(f"SubjectID,Channel_0,Label\nA,{slide},{name}\n")
        with pytest.raises(AutomedError, match=rule):
            patch_miner([tmp_path / "s.csv"], tmp_path / "y", patch_size="64", show_progress=False)
        assert not (tmp_path / "y").exists()


def test_tiled_tiff_label_maps_keep_their_values_or_are_refused(
    slide: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tiled TIFF label map was read through OpenSlide (RGBA): a 16-bit map came out all background (16 bits
    scaled to 8), a palette map its palette's red channel (label 2 became 255, label 3 became 0), a colour map its
    red channel without the value map a colour PNG needs - every patch mined with wrong labels, without a word; and
    an uncompressed map with 16-pixel tiles stopped the mining inside libtiff ("Invalid tile byte count for tile 9.
    Expected 256, got 1024"). tifffile now reads them, stored values kept; a map in a compression it cannot decode
    here (JPEG, LZW) is still read through OpenSlide, which refuses what it would change."""
    from automed.wsi import miner

    scene = default_scene(1024, 768, mpp=0.5, seed=3)
    xx, yy = np.meshgrid(np.arange(128) * 8 + 4, np.arange(96) * 8 + 4)
    truth = scene.labels(xx, yy).astype(np.uint8)
    colours = np.array([[0, 0, 0], [200, 30, 30], [30, 200, 30]], np.uint8)
    palette = np.zeros((3, 256), np.uint16)
    palette[:, 1:3] = colours[1:].T.astype(np.uint16) * 257
    tiled = {"tile": (16, 16), "photometric": "minisblack", "compression": "zlib"}
    tifffile.imwrite(tmp_path / "gray.tif", truth, **tiled)
    tifffile.imwrite(tmp_path / "raw.tif", truth, tile=(16, 16), photometric="minisblack")  # libtiff's crash
    tifffile.imwrite(tmp_path / "deep.tif", truth.astype(np.uint16), **tiled)
    tifffile.imwrite(tmp_path / "float.tif", truth.astype(np.float32), **tiled)
    tifffile.imwrite(
        tmp_path / "pal.tif",
        truth,
        tile=(16, 16),
        photometric="palette",
        colormap=palette,
        compression="zlib",
    )
    tifffile.imwrite(
        tmp_path / "rgb.tif", colours[truth], tile=(16, 16), photometric="rgb", compression="zlib"
    )
    ycbcr = tmp_path / "ycbcr.tif"  # colour as JPEG stores it: OpenSlide's RGB, not refused as "8-bit ycbcr"
    tifffile.imwrite(ycbcr, colours[truth], tile=(16, 16), photometric="ycbcr", subsampling=(1, 1))
    assert miner.tiled_label(ycbcr) is None and miner.tiled_label(tmp_path / "rgb.tif") is not None
    lum = [round((299 * int(r) + 587 * int(g) + 114 * int(b)) / 1000) for r, g, b in colours]
    vmap = ",".join(f"{v}:{k}" for k, v in enumerate(lum))
    for name, value_map, openslide, refusal in (
        ("gray.tif", None, False, None), ("raw.tif", None, False, None), ("deep.tif", None, False, None),
        ("pal.tif", None, False, None), ("rgb.tif", vmap, False, None), ("rgb.tif", None, False, "mode RGB"),
        ("float.tif", None, False, "32-bit minisblack float32 with 1 sample(s)"),
        ("deep.tif", None, True, "16-bit minisblack"), ("pal.tif", None, True, "8-bit palette"),
    ):  # fmt: skip
        with monkeypatch.context() as m:
            if openslide:  # as a map in JPEG or LZW would be read
                m.setattr(miner, "tiled_label", lambda path: None)
            miner._LABEL_IMAGES.clear()
            (tmp_path / "s.csv").write_text(f"SubjectID,Channel_0,Label\nA,{slide},{name}\n")
            out = tmp_path / f"m_{name}_{value_map}_{openslide}"
            run: dict[str, Any] = {
                "patch_size": "64",
                "mpp": 1.0,
                "value_map": value_map,
                "show_progress": False,
            }
            if refusal:
                with pytest.raises(AutomedError, match="label map") as err:
                    patch_miner([tmp_path / "s.csv"], out, **run)
                assert refusal in err.value.problems[0].value and not out.exists()
                continue
            res = patch_miner([tmp_path / "s.csv"], out, **run)
        agree = []
        for r in _rows(res.csv):
            x, y, size0 = int(r["Info_X"]), int(r["Info_Y"]), int(r["Info_Size0"])
            lab = np.asarray(Image.open(res.folder / r["Label"]))
            c = (np.arange(lab.shape[0]) + 0.5) * size0 / lab.shape[0]
            want = scene.labels(*np.meshgrid(x + c, y + c))
            agree.append((lab == want).mean())
        assert agree and float(np.mean(agree)) > 0.9, name


def test_a_label_png_too_large_for_pillow_names_the_way_out(
    slide: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full-resolution label PNG of a large slide: Pillow refuses to open it, and the refusal said "unreadable
    (DecompressionBombError)" with the fix "write it as PNG or a tiled TIFF" - it is a PNG."""
    Image.new("L", (256, 192)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the PNG stands for one of billions of pixels
    (tmp_path / "s.csv").write_text(f"SubjectID,Channel_0,Label\nA,{slide},big.png\n")
    with pytest.raises(AutomedError, match="small enough for Pillow to open") as err:
        patch_miner([tmp_path / "s.csv"], tmp_path / "m", patch_size="64", show_progress=False)
    assert "49152 pixels" in err.value.problems[0].value and "smaller scale" in err.value.problems[0].fix
    assert not (tmp_path / "m").exists()


def test_non_square_pixels_are_refused(tmp_path: Path) -> None:
    data = np.full((512, 512, 3), 200, np.uint8)
    path = tmp_path / "ns.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(data, tile=(256, 256), photometric="rgb", resolution=(4e4, 2e4), resolutionunit="CENTIMETER")
        tw.write(data[::2, ::2], tile=(256, 256), photometric="rgb", subfiletype=1)
    with pytest.raises(AutomedError, match="square pixels"):
        patch_miner([path], tmp_path / "m", show_progress=False)
    with pytest.raises(
        AutomedError, match="square pixels"
    ):  # --mpp is a target, not the slide's own size here
        patch_miner([path], tmp_path / "m", mpp=0.5, show_progress=False)


@pytest.mark.parametrize("kw", [{"mpp": 0.0}, {"slide_mpp": 0.0}, {"slide_mpp": -0.5}])
def test_a_pixel_size_must_be_positive(slide: Path, tmp_path: Path, kw: dict[str, float]) -> None:
    with pytest.raises(AutomedError, match="positive number of micrometres"):
        patch_miner([slide], tmp_path / "m", show_progress=False, **kw)
    assert not (tmp_path / "m").exists()


def test_a_screen_resolution_in_a_slide_s_metadata_points_to_slide_mpp(tmp_path: Path) -> None:
    """A tiled TIFF saved by an image editor records 72 dpi, read as 352.8 um/px: the refusals said only "use --mpp
    352.8 or coarser" and "use a finer scan", not that the file's pixel size may be wrong and how to give the real
    one."""
    from automed.workflow.predict_wsi import predict_slides

    rgb = np.full((512, 512, 3), 200, np.uint8)
    path = tmp_path / "edited.tif"
    tifffile.imwrite(
        path, rgb, tile=(256, 256), photometric="rgb", resolution=(72, 72), resolutionunit="INCH"
    )
    hint = "352.8 um/px (72 dpi, from the file's metadata) is not its real pixel size, pass --slide-mpp"
    with pytest.raises(AutomedError, match=r"use --mpp 352\.8 or coarser") as err:
        patch_miner([path], tmp_path / "m", mpp=0.5, show_progress=False)
    assert hint in err.value.problems[0].fix
    with pytest.raises(AutomedError, match="at least as fine as the model's resolution") as err:
        predict_slides(object(), [path], tmp_path, mpp=0.5, names={0: "bg", 1: "a"}, show_progress=False)
    assert hint in err.value.problems[0].fix


def test_tilewise_thumbnail_matches_openslide(slide: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import automed.wsi.slide as slide_mod

    handle = slide_mod.slide_handle(slide)
    monkeypatch.setattr(slide_mod, "THUMB_TILE", 100)  # many tiles, seams included
    tiled = slide_mod.thumbnail(handle, 256)
    ref = np.asarray(handle.get_thumbnail((tiled.shape[1], tiled.shape[0])).convert("RGB"))
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


def test_the_last_model_pixel_at_a_slide_edge_keeps_its_tissue(tmp_path: Path) -> None:
    """1001 x 603 pixels at 4 level-0 pixels per model pixel: the last model column and row reach past the slide;
    tissue running off the right and bottom edges must still be labelled tissue there."""
    import openslide

    from automed.testing.synthetic_wsi import Ellipse, SyntheticSlide
    from automed.workflow.predict_wsi import predict_slides
    from tests.test_wsi import ColorPredictor

    scene = SyntheticSlide(
        1001, 603, 0.5, [Ellipse(1000, 300, 400, 250), Ellipse(300, 602, 200, 150)], noise=0
    )
    out = tmp_path / "out"
    out.mkdir()
    predict_slides(ColorPredictor(), [write_slide(scene, tmp_path / "e.tif")], out, mpp=2.0,
                   names={0: "glass", 1: "a", 2: "b"}, show_progress=False)  # fmt: skip
    got = np.asarray(openslide.OpenSlide(str(out / "e_labels.tif")).read_region((0, 0), 0, (1001, 603)))[
        ..., 0
    ]
    truth = scene.labels(*np.meshgrid(np.arange(1001) + 0.5, np.arange(603) + 0.5))
    assert (got[200:400, -1] == truth[200:400, -1]).all() and (truth[200:400, -1] == 1).all()
    assert (got[-1, 250:350] == truth[-1, 250:350]).all() and (truth[-1, 250:350] == 2).all()


def test_a_dicom_whole_slide_is_one_slide_not_one_per_file(tmp_path: Path) -> None:
    """A DICOM-WSI is a series of files (one per level) in one folder; OpenSlide opens it from any of them."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from automed.workflow.patch_miner import _inputs

    def dcm(path: Path, series: str) -> None:
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL WSI
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)

    one, two = generate_uid(), generate_uid()
    for i in range(3):
        dcm(tmp_path / "wsi" / f"level{i}.dcm", one)
    dcm(tmp_path / "wsi" / "other.dcm", two)
    dcm(tmp_path / "wsi" / "b" / "level0.dcm", one)  # another folder: another slide
    got = [(s.key, s.path.relative_to(tmp_path).as_posix()) for s in _inputs([tmp_path / "wsi"])]
    # named and ordered as automed predict names them (the given folder's own slides first)
    assert got == [("wsi", "wsi/level0.dcm"), ("wsi_2", "wsi/other.dcm"), ("b", "wsi/b/level0.dcm")]


def test_artifact_checks_in_integers_match_the_rules() -> None:
    """White/black by the channel mean, colourless when more than half the sampled pixels have HSV saturation at or
    below 0.04 - black pixels (saturation 0) included, and 1/25 exactly counted as colourless."""
    from automed.wsi.miner import artifact

    patch = np.zeros((256, 256, 3), np.uint8)
    patch[:100] = (196, 110, 168)  # 39 % stained, 23 % grey, 38 % black (not enough black for "black")
    patch[100:160] = (128, 128, 128)
    assert artifact(patch) == "low saturation"
    assert artifact(np.full((64, 64, 3), (125, 120, 120), np.uint8)) == "low saturation"  # saturation 1/25
    assert artifact(np.full((64, 64, 3), (125, 119, 120), np.uint8)) is None  # 6/125 > 0.04
    assert artifact(np.full((64, 64, 3), 230, np.uint8)) == "white"
    assert artifact(np.full((64, 64, 3), 10, np.uint8)) == "black"
    assert artifact(np.full((64, 64, 3), (196, 110, 168), np.uint8)) is None


def test_label_names_cannot_name_folders_in_slide_outputs() -> None:
    from automed.workflow.predict_wsi import file_part

    assert file_part("tumor/necrosis") == "tumor_necrosis" and file_part("../../x") == "_.._x"
    assert "/" not in file_part("/etc/passwd") and file_part("...") == "label" and file_part("a b") == "a_b"
    from automed.workflow.predict_wsi import file_parts

    assert file_parts({0: "bg", 1: "grade 1", 2: "grade/1"}) == {0: "bg", 1: "grade_1_1", 2: "grade_1_2"}


def test_slide_csv_rows_and_patch_size_are_judged_before_work(slide: Path, tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text(
        f"SubjectID,Channel_0\na,{slide}\nb\n,{slide}\n"
    )  # a short and a blank row
    with pytest.raises(AutomedError, match="SubjectID and Channel_0 filled in") as err:
        patch_miner([tmp_path / "s.csv"], tmp_path / "m", show_progress=False)
    assert "3" in err.value.problems[0].value and "4" in err.value.problems[0].value
    with pytest.raises(AutomedError, match="must exist"):
        patch_miner([tmp_path / "none.csv"], tmp_path / "m", show_progress=False)
    with pytest.raises(AutomedError, match=r"overlap in \[0, 0.9\].*found 0.999"):  # a stride of one pixel
        patch_miner([slide], tmp_path / "m", patch_size="128", overlap=0.999, show_progress=False)
    with pytest.raises(AutomedError, match="a patch must fit in the slide"):  # 2048 px > the 768 px side
        patch_miner([slide], tmp_path / "m", patch_size="2048", show_progress=False)
    with pytest.raises(
        AutomedError, match="--value-map maps the values of the slides' label maps"
    ):  # was ignored
        patch_miner([slide], tmp_path / "m", value_map="0:0,255:1", show_progress=False)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("first_filled", [True, False])
@pytest.mark.parametrize("column", ["Label", "ValueToPredict"])
def test_a_slide_csv_column_filled_for_some_slides_only_is_refused_before_work(
    slide: Path, tmp_path: Path, column: str, first_filled: bool
) -> None:
    """Filled in the first row only, mining crashed with KeyError after mining every slide; filled in a later row
    only, patches.csv silently had no such column although label maps were written."""
    Image.new("L", (64, 48)).save(tmp_path / "lab.png")
    value = "lab.png" if column == "Label" else "1"
    rows = [f"a,{slide},{value}", f"b,{slide},"]
    (tmp_path / "s.csv").write_text(
        f"SubjectID,Channel_0,{column}\n" + "\n".join(rows[:: 1 if first_filled else -1])
    )
    with pytest.raises(
        AutomedError, match=f"a {column} column is filled in for every slide or for none"
    ) as err:
        patch_miner([tmp_path / "s.csv"], tmp_path / "m", patch_size="64", show_progress=False)
    assert err.value.problems[0].value == f"empty in rows [{3 if first_filled else 2}]"
    assert not (tmp_path / "m").exists()


def test_slide_csv_columns_and_repeated_slides_are_refused_before_work(slide: Path, tmp_path: Path) -> None:
    """A misspelt `Lable` mined every slide without its label map (exit 0); a `Channel_1` was dropped without a
    word; `S1` beside `s1` (one folder on macOS and Windows) and one slide on two rows were mined, then refused by
    the training (case IDs alike in letter case; the same voxels under two case IDs)."""
    a, b = _copies(slide, tmp_path, 2)
    for text, match in (
        (
            f"SubjectID,Channel_0,Lable\nA,{a},x.png\n",
            r"columns are SubjectID, .*'Lable'.*Did you mean 'Label'",
        ),
        (
            f"SubjectID,Channel_0,Channel_1\nA,{a},{b}\n",
            r"one RGB file, its Channel_0; found a column Channel_1",
        ),
        (f"SubjectID,Channel_0\nS1,{a}\ns1,{b}\n", r"its own SubjectID .*letter case.*rows 2 and 3"),
        (
            f"SubjectID,Channel_0\nA,{a}\nC,{slide.parent / '.' / slide.name}\nD,{slide}\n",
            r"own slide file.*rows 3 and 4",
        ),
    ):
        (tmp_path / "s.csv").write_text(text)
        with pytest.raises(AutomedError, match=match):
            patch_miner([tmp_path / "s.csv"], tmp_path / "m", patch_size="128", show_progress=False)
        assert not (tmp_path / "m").exists()


def test_slides_below_a_folder_are_named_by_their_place_as_predict_names_them(
    slide: Path, tmp_path: Path
) -> None:
    """Mining named p1/HE.tif and p2/HE.tif `HE` and `HE_2` (which got `_2` hung on the order, and nothing mapped
    it back to a file), where predict names them `p1_HE` and `p2_HE`."""
    from automed.workflow.predict_slide_inputs import found_slides

    a, b = _copies(slide, tmp_path, 2)
    for sub, src in (("p1", a), ("p2", b)):
        (tmp_path / "f" / sub).mkdir(parents=True)
        src.rename(tmp_path / "f" / sub / "HE.tif")
    res = patch_miner([tmp_path / "f"], tmp_path / "m", patch_size="128", num_patches=2, show_progress=False)
    listed = found_slides(tmp_path / "f")
    assert listed is not None
    assert [s["slide"] for s in res.slides] == listed[1] == ["p1_HE", "p2_HE"]


def _spoil_tile(path: Path, page: int, tile: int) -> None:
    """Overwrite the middle of one tile's compressed bytes (a copy damaged in transfer)."""
    with tifffile.TiffFile(path) as tif:
        offset = int(tif.pages[page].dataoffsets[tile])
        count = int(tif.pages[page].databytecounts[tile])
    with path.open("r+b") as f:
        f.seek(offset + count // 4)
        f.write(bytes(range(256))[: max(8, count // 2)])


@pytest.mark.parametrize("workers", [0, 2])
def test_a_damaged_slide_tile_or_label_map_is_named(slide: Path, tmp_path: Path, workers: int) -> None:
    """A slide tile that does not decode ended mining with "unexpected error: OpenSlideError: TIFFRGBAImageGet
    failed" and a truncated tiled label map with "unexpected error: TiffFileError: corrupted tile", neither naming
    the file; an 8-byte label map with "IndexError: 0"."""
    bad = tmp_path / "bad.tif"
    bad.write_bytes(slide.read_bytes())
    _spoil_tile(bad, 0, 5)
    with pytest.raises(AutomedError, match=r"pixels must decode") as err:
        patch_miner([bad], tmp_path / "m", patch_size="64", overlap=0.0, workers=workers, show_progress=False)
    assert err.value.problems[0].file == str(bad) and "OpenSlideError" in err.value.problems[0].value
    assert not (tmp_path / "m").exists()
    labels = np.zeros((768, 1024), np.uint8)
    labels[100:600, 200:900] = 1
    label = tmp_path / "label.tif"
    tifffile.imwrite(label, labels, tile=(256, 256), compression="zlib")
    label.write_bytes(label.read_bytes()[: label.stat().st_size // 2])  # a copy cut short
    (tmp_path / "s.csv").write_text(f"SubjectID,Channel_0,Label\na,{slide},{label}\n")
    with pytest.raises(AutomedError, match=r"pixels must decode") as err:
        patch_miner([tmp_path / "s.csv"], tmp_path / "m", patch_size="64", overlap=0.0, workers=workers,
                    show_progress=False)  # fmt: skip
    assert err.value.problems[0].file == str(label) and "label map at" in err.value.problems[0].value
    label.write_bytes(label.read_bytes()[:8])  # a header only
    with pytest.raises(AutomedError, match=r"a label map must be an image Pillow or OpenSlide reads"):
        patch_miner(
            [tmp_path / "s.csv"], tmp_path / "m", patch_size="64", workers=workers, show_progress=False
        )
