"""A PNG's pixel size from its pHYs chunk (as ``automed patch-miner`` writes the slide's): ITK reads every PNG as 1 mm
per pixel, so a mined patch's distances (HD95, NSD) were in pixels. Training (the data layer) and the bundle's runtime
read it alike; a fingerprint taken before, at 1 mm per pixel, is taken anew, and a resumed training refused."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from automed import api
from automed.data.dataset import load_dataset
from automed.data.io import read_header, read_image
from automed.data.verify import verify
from automed.errors import ArtifactError
from automed.fingerprint.extract import extract_fingerprint, inputs_hash, inputs_unchanged, png_spacings_read
from automed.fingerprint.schema import Fingerprint
from automed.runtime.grid import channel_grid_mismatch
from automed.runtime.io import (
    LEGACY_PICTURE_SPACING,
    MICROSCOPE_PIXEL_MM,
    Case,
    phys_pixel_mm,
    png_spacing,
    read_case,
    spacing_zyx,
)
from automed.workdir import WorkDir
from automed.workflow.prepare import check_same_cases

UM = 0.5  # micrometres per pixel, as a slide mined at 0.5 um/px


def _png(path: Path, array: np.ndarray, dpi: float | None = 25400.0 / UM, phys: bytes | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    if phys is not None:
        info.add(b"pHYs", phys)
    Image.fromarray(array).save(path, format="PNG", pnginfo=info, **({"dpi": (dpi, dpi)} if dpi else {}))
    return path


def test_the_pixel_size_is_read_from_phys_in_both_readers(tmp_path: Path) -> None:
    grey = _png(tmp_path / "g.png", np.arange(48, dtype=np.uint8).reshape(6, 8))
    rgb = _png(tmp_path / "c.png", np.zeros((6, 8, 3), dtype=np.uint8))
    for f in (grey, rgb):
        assert png_spacing(f) == pytest.approx((UM / 1000, UM / 1000), rel=1e-5)
        assert read_image(f)[1].spacing_zyx == pytest.approx((1.0, UM / 1000, UM / 1000), rel=1e-5)
        assert read_header(f).geometry.spacing == pytest.approx((UM / 1000, UM / 1000), rel=1e-5)
        _, ref = read_case(Case("x", (f,), ".nii.gz"))  # the bundle's reader: prediction agrees with training
        assert spacing_zyx(ref) == pytest.approx([1.0, UM / 1000, UM / 1000], rel=1e-5)
    arrays, _ = read_image(grey)
    assert arrays[0].tolist() == [
        np.arange(48, dtype=np.uint8).reshape(6, 8).tolist()
    ]  # the pixels as before


def test_without_a_metric_phys_a_png_stays_at_one_mm(tmp_path: Path) -> None:
    plain = _png(tmp_path / "plain.png", np.zeros((4, 5), dtype=np.uint8), dpi=None)
    aspect = _png(tmp_path / "aspect.png", np.zeros((4, 5), dtype=np.uint8), dpi=None,
                  phys=struct.pack(">IIB", 3, 2, 0))  # fmt: skip
    assert png_spacing(aspect) is None and png_spacing(plain) is None
    for f in (plain, aspect):
        assert read_image(f)[1].spacing == (1.0, 1.0) and read_header(f).geometry.spacing == (1.0, 1.0)
    assert png_spacing(tmp_path / "missing.png") is None
    (tmp_path / "text.png").write_text("not a picture")
    assert png_spacing(tmp_path / "text.png") is None


@pytest.mark.parametrize("dpi", [72, 96, 300, 600, 2540])
def test_a_print_or_screen_dpi_is_not_a_pixel_size(tmp_path: Path, dpi: int) -> None:
    """Photographs and scans saved at a dpi (a rendering hint) read at 1 mm per pixel, as before pHYs was read: a
    dataset of them at mixed dpis is not resampled, and its earlier fingerprint is not taken anew."""
    f = _png(tmp_path / "photo.png", np.zeros((4, 5, 3), dtype=np.uint8), dpi=dpi)
    assert phys_pixel_mm(f) == pytest.approx((25.4 / dpi, 25.4 / dpi), rel=1e-3)  # recorded, per metre
    assert png_spacing(f) is None and 25.4 / dpi >= MICROSCOPE_PIXEL_MM
    assert read_image(f)[1].spacing == (1.0, 1.0) and read_header(f).geometry.spacing == (1.0, 1.0)
    assert spacing_zyx(read_case(Case("x", (f,), ".nii.gz"))[1]) == [1.0, 1.0, 1.0]
    ds = load_dataset(_png_dataset(tmp_path / "d", label_dpi=None, image_dpi=dpi))
    assert not png_spacings_read(ds)
    assert extract_fingerprint(ds, workers=1, show_progress=False).median_spacing == [1.0, 1.0, 1.0]


def test_just_under_the_microscope_threshold_is_read(tmp_path: Path) -> None:
    f = _png(tmp_path / "fine.png", np.zeros((4, 5), dtype=np.uint8), dpi=2600)
    assert png_spacing(f) == pytest.approx((25.4 / 2600, 25.4 / 2600), rel=1e-4)
    assert read_image(f)[1].spacing == pytest.approx((25.4 / 2600, 25.4 / 2600), rel=1e-4)
    # a model trained before pHYs was read (legacy reading) reads it at 1 mm, in automed and the bundle alike
    assert read_image(f, LEGACY_PICTURE_SPACING)[1].spacing == (1.0, 1.0)
    assert spacing_zyx(read_case(Case("x", (f,), ".nii.gz"), LEGACY_PICTURE_SPACING)[1]) == [1.0, 1.0, 1.0]


def test_channels_of_two_pixel_sizes_are_off_one_grid(tmp_path: Path) -> None:
    a = _png(tmp_path / "a.png", np.zeros((4, 5), dtype=np.uint8))
    b = _png(tmp_path / "b.png", np.zeros((4, 5), dtype=np.uint8), dpi=25400.0)
    problem = channel_grid_mismatch([a, b])
    assert problem is not None and "spacing" in problem
    assert (
        channel_grid_mismatch([a, b], LEGACY_PICTURE_SPACING) is None
    )  # both at 1 mm, as a legacy model read them


def _png_dataset(
    root: Path, label_dpi: float | None = 25400.0 / UM, image_dpi: float | None = 25400.0 / UM
) -> Path:
    rng = np.random.default_rng(0)
    training = []
    for i in range(2):
        lab = np.zeros((12, 16), dtype=np.uint8)
        lab[3:8, 4:11] = 1
        _png(root / "imagesTr" / f"p{i}.png", rng.integers(1, 255, (12, 16), dtype=np.uint8), dpi=image_dpi)
        _png(root / "labelsTr" / f"p{i}.png", lab, dpi=label_dpi)
        training.append({"image": f"./imagesTr/p{i}.png", "label": f"./labelsTr/p{i}.png"})
    meta = {"name": "Patches", "tensorImageSize": "2D", "modality": {"0": "H&E"},
            "labels": {"0": "background", "1": "tumour"}, "numTraining": 2, "training": training}  # fmt: skip
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_the_fingerprint_records_the_pixel_size_in_mm(tmp_path: Path) -> None:
    ds = load_dataset(_png_dataset(tmp_path / "d"))
    fp = extract_fingerprint(ds, workers=1, show_progress=False)
    assert fp.median_spacing == pytest.approx([1.0, UM / 1000, UM / 1000], rel=1e-5)
    assert all(c.spacing == pytest.approx([1.0, UM / 1000, UM / 1000], rel=1e-5) for c in fp.cases)


def test_a_label_png_saved_without_the_pixel_size_still_verifies(tmp_path: Path) -> None:
    """A mask written by numpy/PIL without ``dpi`` beside a picture that has one: the label takes the picture's
    pixel size (as it did when both were read as 1 mm), not a refusal of a dataset that verified before."""
    report = verify(
        load_dataset(_png_dataset(tmp_path / "d", label_dpi=None)), workers=1, show_progress=False
    )
    assert report.n_cases == 2
    # the other way round: a mask with a microscope's pHYs beside a picture saved without it (both were 1 mm)
    swapped = _png_dataset(tmp_path / "e", label_dpi=25400.0 / UM, image_dpi=None)
    assert verify(load_dataset(swapped), workers=1, show_progress=False).n_cases == 2


def test_an_earlier_fingerprint_at_one_mm_is_taken_again_and_a_resumed_training_refused(
    tmp_path: Path,
) -> None:
    root = _png_dataset(tmp_path / "d")
    wd = tmp_path / "W"
    first = api.plan_dataset(root, wd, workers=1, show_progress=False, configurations=["2d"])
    ds = load_dataset(root)
    assert inputs_unchanged(ds, first.fingerprint)
    # as the automed before this one wrote it: every PNG at 1 mm per pixel, its files stamped by inputs_version 2
    data = json.loads((wd / "fingerprint.json").read_text())
    for c in data["cases"]:
        c["spacing"] = [1.0, 1.0, 1.0]
    data["median_spacing"], data["inputs_version"] = [1.0, 1.0, 1.0], 2
    data["inputs_hash"] = inputs_hash(ds, data["samples_per_case"], data["seed"], version=2)
    Fingerprint.model_validate(data).with_hash().save(wd / "fingerprint.json")
    old = Fingerprint.load(wd / "fingerprint.json")
    assert not inputs_unchanged(
        ds, old
    )  # same files, yet read anew: the spacing they now give is another one
    wdir = WorkDir(wd)
    with pytest.raises(ArtifactError, match=r"read every PNG as 1 mm per pixel.*pHYs.*new --output"):
        check_same_cases(ds, wdir)
    checkpoint = (
        wd / "train" / "2d" / "fold_0" / "checkpoint_final.pt"
    )  # folds trained on the 1 mm fingerprint
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"")
    with pytest.raises(ArtifactError, match=r"keeps its fingerprint.json.*read every PNG as 1 mm per pixel"):
        api.plan_dataset(root, wd, workers=1, show_progress=False, configurations=["2d"])
    assert (
        json.loads((wd / "fingerprint.json").read_text())["inputs_version"] == 2
    )  # kept as its folds had it
    checkpoint.unlink()
    again = api.plan_dataset(root, wd, workers=1, show_progress=False, configurations=["2d"])
    assert not again.fingerprint_reused
    assert again.fingerprint.median_spacing == pytest.approx([1.0, UM / 1000, UM / 1000], rel=1e-5)
    assert again.fingerprint.inputs_version == 3 and inputs_unchanged(ds, again.fingerprint)
