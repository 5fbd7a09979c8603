"""Whole slides: reading and pixel size, the tissue mask, the patch miner and training on its CSV (issue 18)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from automed.errors import AutomedError
from automed.testing.synthetic_wsi import default_scene, write_label_png, write_slide
from automed.workflow.patch_miner import patch_miner
from automed.wsi.slide import slide_handle, slide_info
from automed.wsi.tissue import tissue_mask
from tests.conftest import shared

W, H = 2048, 1536


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wsi")
    slides = {}
    for name, seed in (("slideA", 1), ("slideB", 2)):
        scene = default_scene(W, H, mpp=0.5, seed=seed)
        slides[name] = write_slide(scene, root / f"{name}.tif")
        write_label_png(scene, root / f"{name}_label.png", downsample=8)
    rows = [f"{n},{n}.tif,{n}_label.png" for n in slides]
    (root / "slides.csv").write_text("SubjectID,Channel_0,Label\n" + "\n".join(rows) + "\n")
    return {"root": root, **slides}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_synthetic_slide_levels_mpp_and_tissue_mask(synthetic: dict[str, Path]) -> None:
    info = slide_info(synthetic["slideA"])
    assert (info.width, info.height, info.mpp, info.vendor) == (W, H, 0.5, "generic-tiff")
    assert info.downsamples == (1.0, 2.0, 4.0)
    assert info.level_for(1.0) == (1, 1.0) and info.level_for(3.0) == (2, 1.5)
    mask = tissue_mask(slide_handle(synthetic["slideA"]))
    scene = default_scene(W, H, mpp=0.5, seed=1)
    c = (np.arange(mask.mask.shape[1]) + 0.5) * mask.scale
    r = (np.arange(mask.mask.shape[0]) + 0.5) * mask.scale
    truth = scene.labels(*np.meshgrid(c, r)) > 0
    assert (mask.mask == truth).mean() > 0.98
    assert not mask.mask[truth == 0].mean() > 0.01  # glass stays out


@pytest.mark.slow
def test_mining_with_labels_keeps_tissue_only_and_matches_the_label_map(
    synthetic: dict[str, Path], tmp_path: Path
) -> None:
    res = patch_miner(
        [synthetic["root"] / "slides.csv"], tmp_path / "m", patch_size="64", mpp=1.0, show_progress=False
    )
    rows = _rows(res.csv)
    assert len(rows) == res.patches > 20 and {r["PatientID"] for r in rows} == {"slideA", "slideB"}
    scene = default_scene(W, H, mpp=0.5, seed=1)
    for r in rows:
        x, y, size0 = int(r["Info_X"]), int(r["Info_Y"]), int(r["Info_Size0"])
        assert size0 == 128  # 64 px at 1.0 um/px from a 0.5 um/px slide
        img = np.asarray(Image.open(res.folder / r["Channel_0"]))
        assert img.shape == (64, 64, 3)
        assert Image.open(res.folder / r["Channel_0"]).info["dpi"][0] == pytest.approx(25400.0, rel=1e-3)
        lab = np.asarray(Image.open(res.folder / r["Label"]))
        if r["PatientID"] == "slideA":
            c = x + (np.arange(64) + 0.5) * 2
            rr = y + (np.arange(64) + 0.5) * 2
            truth = scene.labels(*np.meshgrid(c, rr))
            assert (lab == truth).mean() > 0.9  # the label map is 1/8 scale: edges are blocky
            assert float(r["Info_TissueFraction"]) >= 0.5 and (truth > 0).mean() > 0.35
        fractions = [float(r[k]) for k in r if k.startswith("Info_LabelFraction_")]
        assert sum(fractions) == pytest.approx(1.0, abs=1e-3)
    assert (res.folder / "tissue" / "slideA.png").is_file() and (res.folder / "mining.json").is_file()


@pytest.mark.slow
def test_patch_csv_loads_with_slide_grouped_folds(synthetic: dict[str, Path], tmp_path: Path) -> None:
    from automed.data.dataset import load_dataset
    from automed.data.splits import make_splits

    res = patch_miner(
        [synthetic["slideA"], synthetic["slideB"]], tmp_path / "m", patch_size="128", show_progress=False
    )
    ds = load_dataset(res.csv)
    assert len(ds.cases) == res.patches
    splits = make_splits(ds, n_folds=2, seed=0)
    slide_of = {c.case_id: c.subject for c in ds.cases}
    for fold in splits["folds"]:
        assert not {slide_of[i] for i in fold["train"]} & {slide_of[i] for i in fold["val"]}


@pytest.mark.slow
def test_patch_classes_from_the_label_map(synthetic: dict[str, Path], tmp_path: Path) -> None:
    from automed.data.dataset import load_dataset

    res = patch_miner([synthetic["root"] / "slides.csv"], tmp_path / "m", patch_size="64", mpp=2.0,
                      class_from_label=True, show_progress=False)  # fmt: skip
    rows = _rows(res.csv)
    assert "Label" not in rows[0] and not (res.folder / "labels").exists()
    for r in rows:
        fractions = {
            int(k.rsplit("_", 1)[1]): float(v) for k, v in r.items() if k.startswith("Info_LabelFraction_")
        }
        assert int(r["ValueToPredict"]) == max(fractions, key=lambda k: fractions[k])
    ds = load_dataset(res.csv)
    assert {c.value for c in ds.cases} >= {1.0, 2.0}


def test_cmu1_micrometres_to_pixels() -> None:
    path = shared("histology", "CMU-1-Small-Region.svs")
    info = slide_info(path)
    assert info.mpp == pytest.approx(0.499) and (info.width, info.height) == (2220, 2967)


def test_cmu1_mining_in_micrometres(tmp_path: Path) -> None:
    path = shared("histology", "CMU-1-Small-Region.svs")
    res = patch_miner([path], tmp_path / "m", patch_size="100um", mpp=1.0, num_patches=5, show_progress=False)
    (s,) = res.slides
    assert (s["patch_px"], s["size0"], s["level"]) == (100, round(100 / 0.499), 0)
    rows = _rows(res.csv)
    assert len(rows) == 5 and all(
        np.asarray(Image.open(res.folder / r["Channel_0"])).shape == (100, 100, 3) for r in rows
    )


@pytest.mark.slow
def test_slide_without_pixel_size_refused_until_mpp(tmp_path: Path) -> None:
    path = shared("histology", "TCGA-CR-7395-01A-01-TS1.svs")
    with pytest.raises(AutomedError, match="pass --mpp"):
        patch_miner([path], tmp_path / "m", show_progress=False)
    assert not (tmp_path / "m").exists()
    res = patch_miner([path], tmp_path / "m", mpp=0.5, num_patches=6, read="random", show_progress=False)
    assert res.slides[0]["mpp_source"] == "--mpp" and res.patches == 6
    assert len(list((tmp_path / "m" / "patches").rglob("*.png"))) == 6


def test_a_slide_a_little_coarser_than_asked_is_mined_at_the_asked_resolution(
    synthetic: dict[str, Path], tmp_path: Path
) -> None:
    """A 40x scan is 0.2266-0.2527 um/px and "0.25" its usual name: --mpp 0.25 on an Aperio slide of 0.2527 was
    refused (a 0.1 % limit), as was predicting it with a model trained at 0.25. Up to 5 % finer than the slide is
    read from level 0, enlarged."""
    res = patch_miner([synthetic["slideA"]], tmp_path / "m", mpp=0.49, patch_size="64", num_patches=3,
                      read="random", show_progress=False)  # fmt: skip
    assert res.patches == 3
    pngs = sorted((tmp_path / "m" / "patches").rglob("*.png"))
    assert pngs and all(Image.open(p).size == (64, 64) for p in pngs)
    (slide,) = res.slides
    assert (slide["target_mpp"], slide["level"], slide["size0"]) == (
        0.49,
        0,
        63,
    )  # 63 level-0 pixels, enlarged


def test_bad_mining_input(synthetic: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "notes.svs").write_text("not a slide")
    with pytest.raises(AutomedError, match="OpenSlide reads"):
        patch_miner([tmp_path / "notes.svs"], tmp_path / "m", show_progress=False)
    with pytest.raises(AutomedError, match="at the slide's own resolution or coarser"):
        patch_miner([synthetic["slideA"]], tmp_path / "m", mpp=0.47, show_progress=False)  # 6 % finer
    with pytest.raises(AutomedError, match="patch size"):
        patch_miner([synthetic["slideA"]], tmp_path / "m", patch_size="big", show_progress=False)
    with pytest.raises(AutomedError, match="Did you mean"):
        patch_miner([synthetic["slideA"]], tmp_path / "m", read="randm", show_progress=False)
    assert not (tmp_path / "m").exists()


class ColorPredictor:
    """A known-answer stand-in for a model: the nearest of the scene's colours (glass, stain 1, stain 2) per pixel."""

    n_channels = 3  # RGB pictures, like a model trained on mined patches

    def predict_arrays(self, channels: np.ndarray, geometry: object, probabilities: bool = False) -> object:
        from automed.infer.prediction import Prediction
        from automed.testing.synthetic_wsi import GLASS, STAINS

        rgb = channels[:, 0].transpose(1, 2, 0)
        ref = np.array([GLASS, STAINS[0], STAINS[1]], np.float32)
        d = ((rgb[..., None, :] - ref) ** 2).sum(-1)
        p = np.exp(-(d - d.min(-1, keepdims=True)) / 500.0)
        p /= p.sum(-1, keepdims=True)
        return Prediction(
            d.argmin(-1)[None].astype(np.uint8), p.transpose(2, 0, 1)[:, None].astype(np.float32)
        )


@pytest.mark.slow
def test_wsi_prediction_is_a_pyramid_of_the_slide_with_the_right_labels(tmp_path: Path) -> None:
    import openslide

    from automed.workflow.predict_wsi import predict_slides

    scene = default_scene(3000, 2000, mpp=0.5, seed=4)
    slide = write_slide(scene, tmp_path / "s.tif")
    out = tmp_path / "out"
    out.mkdir()
    names = {0: "glass", 1: "a", 2: "b"}
    predict_slides(
        ColorPredictor(), [slide], out, mpp=1.0, names=names, save_probabilities=True, show_progress=False
    )
    labels = openslide.OpenSlide(str(out / "s_labels.tif"))
    assert labels.dimensions == (3000, 2000) and labels.level_count >= 3
    assert float(labels.properties["openslide.mpp-x"]) == pytest.approx(0.5)
    got = np.asarray(labels.read_region((0, 0), 0, labels.dimensions))[..., 0]
    truth = scene.labels(*np.meshgrid(np.arange(3000) + 0.5, np.arange(2000) + 0.5))
    assert (got == truth).mean() > 0.995
    low = np.asarray(labels.read_region((0, 0), 2, labels.level_dimensions[2]))[..., 0]
    assert (low == truth[2::4, 2::4][: low.shape[0], : low.shape[1]]).mean() > 0.99
    prob_a = openslide.OpenSlide(str(out / "s_prob_a.tif"))
    pa = np.asarray(prob_a.read_region((0, 0), 1, prob_a.level_dimensions[1]))[..., 0]
    assert pa[truth[1::2, 1::2][: pa.shape[0], : pa.shape[1]] == 1].mean() > 200
    for f in ("s_heatmap_a.png", "s_heatmap_b.png", "s_overlay.png", "s_counts.png"):
        assert Image.open(out / f).size[0] > 10
    tiles = _rows(out / "s_tiles.csv")
    assert len(tiles) == 6 and all(r["predicted"] == "True" for r in tiles)
    assert not list(out.glob(".*"))  # the block store is gone


def test_wsi_prediction_skips_glass(tmp_path: Path) -> None:
    from automed.testing.synthetic_wsi import Ellipse, SyntheticSlide
    from automed.workflow.predict_wsi import predict_slides

    scene = SyntheticSlide(4096, 1024, 0.5, [Ellipse(500, 500, 300, 300)])
    out = tmp_path / "out"
    out.mkdir()
    predict_slides(ColorPredictor(), [write_slide(scene, tmp_path / "g.tif")], out, mpp=0.5,
                   names={0: "glass", 1: "a", 2: "b"}, show_progress=False)  # fmt: skip
    tiles = _rows(out / "g_tiles.csv")
    assert [r["predicted"] for r in tiles] == (["True", "True"] + ["False"] * 6) * 2  # 8 x 2 blocks of 512
    assert not list(out.glob("g_prob_*"))


def test_wsi_inference_memory_does_not_hold_the_slide(tmp_path: Path) -> None:
    """Writing a level-0 pyramid walks tiles through a bounded block cache (the bench measures RSS)."""
    from automed.wsi.infer import BlockGrid
    from automed.wsi.pyramid import CACHE, BlockReader

    scene = default_scene(4096, 1024, mpp=0.5)
    info = slide_info(write_slide(scene, tmp_path / "w.tif"))
    grid = BlockGrid(info, 0.5, block=128)
    store = tmp_path / "store"
    store.mkdir()
    nbx, nby = grid.n_blocks
    for bx in range(nbx):
        for by in range(nby):
            np.save(store / f"L_{bx}_{by}.npy", np.full((128, 128), (bx + by) % 3, np.uint8))
    reader = BlockReader(grid, store, "L")
    from automed.wsi.pyramid import write_pyramid

    write_pyramid(reader, tmp_path / "p.tif")
    assert len(reader.cache) <= CACHE < nbx * nby


@pytest.mark.slow
def test_train_on_mined_patches(synthetic: dict[str, Path], tmp_path: Path) -> None:
    """A tiny 2D segmentation training straight from patches.csv (RGB patches, label maps), folds by slide."""
    from automed import api

    res = patch_miner(
        [synthetic["root"] / "slides.csv"], tmp_path / "m", patch_size="64", mpp=2.0, show_progress=False
    )
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("epochs: 1\niterations_per_epoch: 2\nval_iterations: 1\n")
    out = api.train(res.csv, tmp_path / "W", config=cfg, folds=2, workers=0, register=False,
                    tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", show_progress=False)  # fmt: skip
    assert (out.workdir / "model.json").is_file()
    import json

    plan = json.loads((out.workdir / "plan.json").read_text())
    assert "2d" in plan["configurations"]
    splits = json.loads((out.workdir / "splits.json").read_text())
    for fold in splits["folds"]:
        assert {i.split("_")[0] for i in fold["train"]}.isdisjoint({i.split("_")[0] for i in fold["val"]})
    # the trained model predicts a slide at its training resolution (found in mining.json beside the CSV)
    import openslide

    pred = api.predict(out.workdir, synthetic["slideA"], tmp_path / "P", show_progress=False)
    assert [p.name for p in pred] == ["slideA_labels.tif"]
    labels = openslide.OpenSlide(str(pred[0]))
    assert labels.dimensions == (W, H)
    values = np.unique(np.asarray(labels.read_region((0, 0), 1, labels.level_dimensions[1]))[..., 0])
    assert set(values.tolist()) <= {0, 1, 2}
    again = api.predict(out.workdir, synthetic["slideA"], tmp_path / "P", overwrite=True, show_progress=False)
    assert again == pred  # --overwrite replaces the earlier predictions
    # a run killed (SIGKILL) mid-slide leaves its marker and the slide's block store: no earlier predictions (the
    # folder was refused without --overwrite, the fix naming --continue, which slides refuse)
    from automed.artifacts import mark_output

    (tmp_path / "K").mkdir()
    mark_output(tmp_path / "K", "predictions")
    (tmp_path / "K" / ".slideA.blocks").mkdir()
    (tmp_path / "K" / ".slideA.blocks" / "0_0.npz").write_bytes(b"block")
    assert [
        p.name for p in api.predict(out.workdir, synthetic["slideA"], tmp_path / "K", show_progress=False)
    ] == ["slideA_labels.tif"]
    assert not (tmp_path / "K" / ".slideA.blocks").exists()
    assert not (tmp_path / "P" / ".automed-new-predictions").exists()
    from automed.errors import AutomedError

    with pytest.raises(AutomedError, match="not whole slides"):  # --review is for images; refused before work
        api.predict(out.workdir, synthetic["slideA"], tmp_path / "R", review=True, show_progress=False)
    with pytest.raises(
        AutomedError, match="DICOM series"
    ):  # a slide's label map is a TIFF, never a DICOM SEG
        api.predict(
            out.workdir, synthetic["slideA"], tmp_path / "R", output_format="dicom-seg", show_progress=False
        )
    assert not (tmp_path / "R").exists()
    # a selection folder predicts slides at its chosen training's resolution (it had been "not a training work
    # dir": --mpp needed), and a registered model's bundle carries it in model.json (it carried none)
    from automed.train.meta import read_meta
    from automed.workflow.predict_wsi import model_mpp

    assert read_meta(out.workdir / "model.json").slide_mpp == 2.0
    api.select([out.workdir], tmp_path / "S", inference=False, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
               show_progress=False)  # fmt: skip
    by_selection = api.predict(tmp_path / "S", synthetic["slideA"], tmp_path / "PS", show_progress=False)
    assert [p.name for p in by_selection] == ["slideA_labels.tif"]
    from automed.select.register import write_model_bundle
    from automed.train.meta import load_model

    bundle = write_model_bundle(
        out.workdir, load_model(out.workdir), tmp_path / "bundle"
    )  # what is registered
    assert model_mpp("models:/automed-patches@champion", None, bundle) == 2.0
    # the training's resolution is its fingerprint's: mining again into the same folder at another resolution (no
    # --overwrite needed: the same kind of output) had made slides predict at that one, without a word
    assert json.loads((out.workdir / "fingerprint.json").read_text())["slide_mpp"] == 2.0
    patch_miner(
        [synthetic["root"] / "slides.csv"], tmp_path / "m", patch_size="64", mpp=4.0, show_progress=False
    )
    assert model_mpp(out.workdir, None) == 2.0
    # the CV cases are gone from the dataset now: select says so (it had crashed with a KeyError mid-scoring)
    with pytest.raises(AutomedError, match=r"CV case\(s\) no longer in it"):
        api.select([out.workdir], tmp_path / "S2", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                   show_progress=False)  # fmt: skip
