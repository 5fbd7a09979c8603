"""Whole-slide defects found in a user-level audit: inputs that were silently skipped or mined into nonsense."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from automed.errors import AutomedError
from automed.testing.synthetic_wsi import default_scene, write_slide
from automed.workflow.patch_miner import patch_miner


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_slide(default_scene(1024, 768, mpp=0.5, seed=3), tmp_path_factory.mktemp("s") / "a.tif")


def test_images_beside_slides_are_named_not_skipped_silently(
    slide: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`automed predict` on a folder holding slides and plain images predicted the slides and skipped the images
    without a word (a slide's label map beside it is fine to skip, a picture the user meant to predict is not)."""
    from automed.wsi.slide import slide_inputs

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "s.tif").write_bytes(slide.read_bytes())
    (folder / "notes.txt").write_text("not an image: ignored, as in a folder of images")
    with caplog.at_level("WARNING", logger="automed"):
        assert [p.name for p in slide_inputs(folder) or []] == ["s.tif"]
    assert not caplog.text
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "patch.png")
    with caplog.at_level("WARNING", logger="automed"):
        assert [p.name for p in slide_inputs(folder) or []] == ["s.tif"]
    assert "1 image(s) beside them are not (patch.png)" in caplog.text


def test_patches_of_a_few_pixels_are_refused_before_work(slide: Path, tmp_path: Path) -> None:
    """--patch-size 1 (or 0.5um at 0.5 um/px) mined millions of one-pixel PNGs: nothing a network can learn from,
    and a position list that grows with the slide's pixel count."""
    for size in ("1", "8", "2um"):
        with pytest.raises(AutomedError, match=r"at least 16 pixels"):
            patch_miner([slide], tmp_path / "m", patch_size=size, show_progress=False)
    assert not (tmp_path / "m").exists()
    res = patch_miner([slide], tmp_path / "m", patch_size="16", num_patches=2, show_progress=False)
    assert res.patches == 2


class _ImageLevel:
    """Stands for a classification model: one class per image, no label map."""

    target = object()

    def predict_arrays(self, channels: np.ndarray, geometry: object, probabilities: bool = False) -> object:
        raise AssertionError("an image-level model must be refused before any block is read")


class _Failing:
    n_channels = 3  # RGB pictures, like a model trained on mined patches

    def predict_arrays(self, channels: np.ndarray, geometry: object, probabilities: bool = False) -> object:
        raise RuntimeError("out of memory")


def test_an_image_level_model_on_a_slide_is_refused_with_the_way_to_go(slide: Path, tmp_path: Path) -> None:
    """A classification model trained on mined patches, given a slide, crashed with "IndexError: too many indices"
    after the tissue mask and left its block store in the output."""
    from automed.workflow.predict_wsi import predict_slides

    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(AutomedError, match=r"segmentation model") as err:
        predict_slides(_ImageLevel(), [slide], out, mpp=1.0, names={0: "a", 1: "b"}, show_progress=False)
    assert "patch-miner" in err.value.problems[0].fix
    assert not list(out.iterdir())


def test_a_failed_slide_prediction_leaves_no_block_store(slide: Path, tmp_path: Path) -> None:
    from automed.workflow.predict_wsi import predict_slides

    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RuntimeError, match=r"out of memory"):
        predict_slides(_Failing(), [slide], out, mpp=1.0, names={0: "a", 1: "b"}, show_progress=False)
    assert not list(out.iterdir())  # the hidden .a.blocks folder is gone too


def test_a_linked_slide_is_named_as_the_user_named_it(slide: Path, tmp_path: Path) -> None:
    """Slides are often linked into a project under case IDs (the archive's own names may be barcodes or names of
    people). A linked file passed by itself was named after its target (a folder of the same links was not)."""
    archive = tmp_path / "archive"
    archive.mkdir()
    target = archive / "Doe_John_2015.tif"
    target.write_bytes(slide.read_bytes())
    project = tmp_path / "project"
    project.mkdir()
    (project / "case_017.tif").symlink_to(target)
    res = patch_miner([project / "case_017.tif"], tmp_path / "m", patch_size="64", num_patches=2,
                      show_progress=False)  # fmt: skip
    assert [s["slide"] for s in res.slides] == ["case_017"]
    written = [p.relative_to(res.folder).as_posix() for p in res.folder.rglob("*")]
    texts = [p.read_text() for p in res.folder.rglob("*") if p.suffix in (".csv", ".json")]
    assert not any("Doe" in t for t in written + texts)


def test_a_slide_of_glass_only_has_no_tissue(tmp_path: Path) -> None:
    """An all-glass slide (a blank, an empty region cut out) with the scanner's pixel noise: Otsu split the noise in
    two, closing and hole filling joined the speckle, and 99 % of the glass was "tissue" (every block predicted, every
    patch read and rejected only as white)."""
    from automed.testing.synthetic_wsi import SyntheticSlide
    from automed.wsi.slide import slide_handle
    from automed.wsi.tissue import tissue_mask

    glass = write_slide(SyntheticSlide(1024, 768, 0.5, []), tmp_path / "glass.tif")
    assert tissue_mask(slide_handle(glass)).mask.mean() < 0.01
    scene = default_scene(1024, 768, mpp=0.5, seed=3)  # the same noise over tissue: the mask still follows it
    mask = tissue_mask(slide_handle(write_slide(scene, tmp_path / "t.tif")))
    c = (np.arange(mask.mask.shape[1]) + 0.5) * mask.scale
    r = (np.arange(mask.mask.shape[0]) + 0.5) * mask.scale
    assert (mask.mask == (scene.labels(*np.meshgrid(c, r)) > 0)).mean() > 0.98


def test_slide_outputs_replace_earlier_ones_only_when_finished(tmp_path: Path) -> None:
    """Slides write many files each: a run into a new folder that fails leaves no folder (it left one holding only
    automed's marker); into an existing folder (--overwrite of earlier predictions, or an empty one) a run writes
    beside what is there and replaces it only once it has finished (it was refused), so a failed or killed one
    leaves the folder as it was."""
    from automed.workflow.predict_output import STAGING, into_output

    def writes(*names: str) -> Any:
        def run(dest: Path) -> list[Path]:
            for n in names:
                (dest / n).write_text(n)
            return [dest / n for n in names]

        return run

    def fails(dest: Path) -> list[Path]:
        (dest / "half.tif").write_text("half")
        raise RuntimeError("the slide has no pixel size")

    out = tmp_path / "P"
    with pytest.raises(RuntimeError):
        into_output(out, fails)
    assert not out.exists()
    out.mkdir()  # made by the user, empty: a failed run leaves it empty, not holding half an output
    with pytest.raises(RuntimeError):
        into_output(out, fails)
    assert sorted(p.name for p in out.iterdir()) == [".automed-output.json"]
    assert into_output(out, writes("a_labels.tif", "a_overlay.png")) == [out / "a_labels.tif", out / "a_overlay.png"]  # fmt: skip
    with pytest.raises(RuntimeError):
        into_output(out, fails)
    assert sorted(p.name for p in out.iterdir()) == [".automed-output.json", "a_labels.tif", "a_overlay.png"]
    (out / STAGING).mkdir()  # a killed run's
    (out / STAGING / "x.tif").write_text("x")
    assert into_output(out, writes("b_labels.tif")) == [out / "b_labels.tif"]
    assert sorted(p.name for p in out.iterdir()) == [".automed-output.json", "b_labels.tif"]


def test_a_csv_listing_whole_slides_is_refused_with_the_way_that_tiles_them(
    slide: Path, tmp_path: Path
) -> None:
    """`automed predict -i slides.csv`: the CSV's slides were taken as image cases, read whole at the slide's own
    pixel size rather than tiled at the model's (and a real slide read whole does not fit in memory)."""
    from automed.wsi.slide import slide_inputs

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "patch.png")
    (tmp_path / "patches.csv").write_text("SubjectID,Channel_0\npatch,patch.png\n")
    assert slide_inputs(tmp_path / "patches.csv") is None  # a CSV of patches is predicted as images
    (tmp_path / "slides.csv").write_text(f"SubjectID,Channel_0\npatch,patch.png\ns,{slide}\n")
    with pytest.raises(
        AutomedError, match="whole slides are predicted from a slide or a folder of slides"
    ) as err:
        slide_inputs(tmp_path / "slides.csv")
    assert err.value.problems[0].value == f"1 slide(s) listed, e.g. {slide.name}"


def test_slides_are_found_at_any_depth_each_named_by_its_place(
    slide: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Predict read slides at the top of the input folder alone: `IN/patient 1/s.tif` was "no images found" for a
    segmentation model and read whole as a picture by an image-level one (other inputs are found at any depth)."""
    from automed.workflow.predict_slide_inputs import found_slides

    root = tmp_path / "IN"
    (root / "patient 1" / "scan").mkdir(parents=True)
    (root / "top.tif").symlink_to(slide)
    (root / "patient 1" / "s.tif").symlink_to(slide)
    (root / "patient 1" / "scan" / "s.svs.tif").symlink_to(slide)
    (root / "other").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "other" / "patch.png")
    with caplog.at_level("WARNING", logger="automed"):
        found = found_slides(root)
    assert found is not None
    slides, names = found
    assert names == ["top", "patient_1_s", "patient_1_scan_s"]  # the top's name as before; deeper: safe IDs
    assert slides == [
        root / "top.tif",
        root / "patient 1" / "s.tif",
        root / "patient 1" / "scan" / "s.svs.tif",
    ]
    assert "3 slide(s) predicted; 1 image(s) in other folders are not (other/patch.png)" in caplog.text
    assert found_slides(root / "other") is None  # no slide: images, predicted as such
    assert found_slides(root / "patient 1" / "s.tif") == ([root / "patient 1" / "s.tif"], ["s"])


def test_two_slides_of_one_output_name_are_refused_naming_both(slide: Path, tmp_path: Path) -> None:
    from automed.workflow.predict_slide_inputs import found_slides

    root = tmp_path / "IN"
    (root / "a_b").mkdir(parents=True)
    (root / "a").mkdir()
    (root / "a_b" / "c.tif").symlink_to(slide)
    (root / "a" / "B_c.tif").symlink_to(slide)
    with pytest.raises(
        AutomedError,
        match=r"a/B_c\.tif and a_b/c\.tif are named 'a_B_c' and 'a_b_c', which differ only in letter case",
    ) as err:
        found_slides(root)
    assert "rename one of them" in err.value.problems[0].fix
    (root / "e").mkdir()  # two files of one name in one folder keep their own outputs, as at the top
    (root / "a" / "B_c.tif").rename(root / "e" / "x.tif")
    (root / "e" / "x.tiff").symlink_to(slide)
    found = found_slides(root)
    assert found is not None and found[1] == ["a_b_c", "e_x", "e_x_2"]
    same = tmp_path / "same"  # one output name from two places
    (same / "a_b").mkdir(parents=True)
    (same / "a").mkdir()
    (same / "a_b" / "c.tif").symlink_to(slide)
    (same / "a" / "b_c.tif").symlink_to(slide)
    with pytest.raises(AutomedError, match=r"a/b_c\.tif and a_b/c\.tif are both 'a_b_c'"):
        found_slides(same)
    cased = tmp_path / "cased"  # output names that differ only in letter case: one file on a case-blind disk
    cased.mkdir()
    (cased / "A.tif").symlink_to(slide)
    (cased / "a.tif").symlink_to(slide)
    with pytest.raises(
        AutomedError, match=r"A\.tif and a\.tif are named 'A' and 'a', which differ only in letter case"
    ):
        found_slides(cased)


class _Background:
    """Stands for a segmentation model that finds nothing: every pixel background, cheaply."""

    n_channels = 3  # RGB pictures, like a model trained on mined patches

    def predict_arrays(self, channels: np.ndarray, geometry: object, probabilities: bool = False) -> object:
        from automed.infer.prediction import Prediction

        h, w = channels.shape[-2:]
        probs = np.zeros((2, 1, h, w), np.float32)
        probs[0] = 1.0
        return Prediction(np.zeros((1, h, w), np.int16), probs)


def test_a_slide_below_the_input_folder_writes_outputs_named_by_its_place(
    slide: Path, tmp_path: Path
) -> None:
    """found_slides' names are the outputs' (two slides named s in two folders no longer write one s_labels.tif)."""
    from automed.workflow.predict_slide_inputs import found_slides
    from automed.workflow.predict_wsi import predict_slides

    root = tmp_path / "IN"
    for folder in ("p1", "p2"):
        (root / folder).mkdir(parents=True)
        (root / folder / "s.tif").symlink_to(slide)
    found = found_slides(root)
    assert found is not None
    out = tmp_path / "out"
    out.mkdir()
    written = predict_slides(_Background(), found[0], out, mpp=2.0, names={0: "background", 1: "tumour"},
                             show_progress=False, stems=found[1])  # fmt: skip
    assert [p.name for p in written] == ["p1_s_labels.tif", "p2_s_labels.tif"]
    assert (out / "p2_s_tiles.csv").is_file() and (out / "p1_s_overlay.png").is_file()


def test_patch_miner_says_train_only_when_its_csv_has_a_target(slide: Path, tmp_path: Path) -> None:
    """A README audit: `automed patch-miner slides/ -o patches` (no label maps, no slide values) ended with "train
    on it: automed train patches/patches.csv -o WORK", which training then refused (no target). The last line now
    says why the CSV has no target and how to give one; with a Label column it still says to train."""
    from typer.testing import CliRunner

    from automed.cli import app

    folder = tmp_path / "slides"
    folder.mkdir()
    (folder / "a.tif").symlink_to(slide)
    args = ["-q", "patch-miner", "--patch-size", "128", "--mpp", "2", "--num-patches", "2", "--workers", "0"]
    r = CliRunner().invoke(app, [*args, str(folder), "-o", str(tmp_path / "p")], env={"COLUMNS": "400"})
    said = " ".join(r.output.split())
    assert r.exit_code == 0, r.output
    assert "train on it" not in said
    assert "has no Label or ValueToPredict column" in said and "would refuse it" in said
    label = tmp_path / "a_label.png"
    Image.fromarray(np.zeros((96, 128), np.uint8)).save(label)
    (tmp_path / "s.csv").write_text(f"SubjectID,Channel_0,Label\na,{slide},{label}\n")
    r = CliRunner().invoke(
        app, [*args, str(tmp_path / "s.csv"), "-o", str(tmp_path / "q")], env={"COLUMNS": "400"}
    )
    said = " ".join(r.output.split())
    assert r.exit_code == 0, r.output
    # (a console narrower than the path breaks it over lines)
    tight = "".join(r.output.split())
    assert f"trainonit:automedtrain{tmp_path / 'q' / 'patches.csv'}-oWORK" in tight


def test_explain_refuses_whole_slides_with_the_way_to_go(slide: Path, tmp_path: Path) -> None:
    """A pyramidal TIFF was read as a 4-channel picture ("save the picture as RGB"), an .svs as no image at all."""
    from automed.workflow.explain import explain

    folder = tmp_path / "slides"
    folder.mkdir()
    (folder / slide.name).symlink_to(slide)
    for given in (slide, folder):
        with pytest.raises(AutomedError, match=r"does not tile whole slides") as err:
            explain(tmp_path / "no_model", given, tmp_path / "maps")  # refused before any model is read
        assert "automed patch-miner" in err.value.problems[0].fix
    assert not (tmp_path / "maps").exists()
