"""A segmentation model given an image that covers less than half of its patch at the model's spacing (the same
12x24x24 case stored at 0.2 mm instead of the training's 1 mm: about 2x5x5 voxels at the model's spacing, zero-padded
into the patch) predicted it without a word, where an image-level model warns; ``automed explain`` said neither
model's warning. Now automed predict, explain and the exported bundle say it, naming the case."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

from automed.runtime.image_model import input_small_note
from automed.runtime.model import BundleModel
from automed.runtime.pipeline import Spec

NORM = {"channel": 0, "scheme": "zscore", "use_nonzero_mask": False, "clip_low": None, "clip_high": None,
        "mean": None, "std": None}  # fmt: skip


def _spec(transpose: list[int], spacing: list[float], dimension: int) -> Spec:
    return Spec(transpose, transpose, spacing, dimension, [NORM], 3, 0, 3.0, [0, 1], 1)


def test_the_note_is_taken_on_the_networks_axes() -> None:
    # (z, y, x) = 10 x 40 x 40 at 5 x 0.5 x 0.5 mm; transposed so that z is last, the model at 1 x 1 x 5 mm
    spec = _spec([1, 2, 0], [1.0, 1.0, 5.0], 3)
    assert (
        input_small_note([10, 40, 40], [5.0, 0.5, 0.5], spec, [16, 16, 8], every_axis=True) is None
    )  # 20x20x10
    note = input_small_note([10, 40, 40], [5.0, 0.5, 0.5], spec, [48, 48, 24], every_axis=True)
    assert note is not None and "the image is 40 x 40 x 10 pixels at 0.5 x 0.5 x 5 mm" in note
    assert "about 20 x 20 x 10 pixels, the network takes 48 x 48 x 24" in note and "along every axis" in note
    flat = _spec([0, 1, 2], [1.0, 1.0], 2)  # a 2D configuration: the in-plane axes, whatever the slice count
    assert input_small_note([3, 24, 24], [9.0, 1.0, 1.0], flat, [24, 24], every_axis=True) is None
    assert input_small_note([300, 24, 24], [1.0, 0.2, 0.2], flat, [24, 24], every_axis=True) is not None


def test_a_case_short_along_one_axis_at_the_right_spacing_is_no_warning() -> None:
    """A segmentation patch is the training images' median shape: a training case of 20 slices where most have 64
    (partial coverage, at the right spacing) was told its spacing was likely wrong (review finding)."""
    spec = _spec([0, 1, 2], [1.0, 1.0, 1.0], 3)
    assert input_small_note([20, 48, 48], [1.0, 1.0, 1.0], spec, [64, 48, 48], every_axis=True) is None
    assert input_small_note([20, 48, 48], [1.0, 1.0, 1.0], spec, [64, 48, 48]) is not None  # image-level rule


def test_the_bundle_model_says_a_members_note() -> None:
    members = [SimpleNamespace(spec=_spec([0, 1, 2], [1.0, 1.0, 1.0], 3), patch=[8, 16, 16])]
    model = SimpleNamespace(members=members)
    assert BundleModel.size_note(model, [12, 24, 24], [1.0, 1.0, 1.0]) is None  # type: ignore[arg-type]
    note = BundleModel.size_note(model, [12, 24, 24], [0.2, 0.2, 0.2])  # type: ignore[arg-type]
    assert note is not None and "about 2.4 x 4.8 x 4.8 pixels" in note


@pytest.mark.slow
def test_predict_and_explain_warn_of_a_segmentation_input_at_a_fifth_of_the_spacing(
    small_training: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from automed import api

    case = sitk.ReadImage(str(small_training["ds"] / "imagesTr" / "case_000.nii.gz"))
    inputs = tmp_path / "in"
    inputs.mkdir()
    sitk.WriteImage(case, str(inputs / "fits.nii.gz"))
    case.SetSpacing((0.2, 0.2, 0.2))
    sitk.WriteImage(case, str(inputs / "tiny.nii.gz"))
    with caplog.at_level(logging.WARNING, logger="automed"):
        written = api.predict(small_training["W"], inputs, tmp_path / "P", show_progress=False)
    assert len(written) == 2
    said = [r.getMessage() for r in caplog.records if "covers less than half" in r.getMessage()]
    pixels = " x ".join(
        map(str, reversed(case.GetSize()))
    )  # (z, y, x), the network's axes (no transpose here)
    assert len(said) == 1 and said[0].startswith(f"warning: tiny: the image is {pixels} pixels at 0.2 x"), (
        said
    )
    assert "pixel spacing other than the training images'" in said[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="automed"):
        maps = api.explain(small_training["W"], inputs, tmp_path / "E", show_progress=False)
    assert sorted(p.name for p in maps) == sorted(
        f"{c}_gcam.{e}" for c in ("fits", "tiny") for e in ("nii.gz", "png")
    )
    said = [r.getMessage() for r in caplog.records if "covers less than half" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"warning: tiny: the image is {pixels} pixels"), said


def test_the_bundle_warns_of_a_segmentation_input_at_a_fifth_of_the_spacing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from automed.runtime import cli
    from automed.runtime import model as runtime_model

    def forward(x: np.ndarray) -> np.ndarray:  # background everywhere
        return np.stack([np.ones(x.shape[:1] + x.shape[2:]), np.zeros(x.shape[:1] + x.shape[2:])], axis=1)

    monkeypatch.setattr(runtime_model, "forwards_for", lambda *a, **k: [forward])
    monkeypatch.setattr(cli, "_runtime", lambda *a: "onnx")
    spec = _spec([0, 1, 2], [1.0, 1.0, 1.0], 3).to_json()
    meta = {"task": "segmentation", "files": {"onnx": ["fold_0.onnx"]}, "spec": spec,
            "inference": {"patch": [8, 16, 16], "n_classes": 2, "step": 0.5, "tta": False}}  # fmt: skip
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "preprocess.json").write_text(json.dumps(meta))
    inputs = tmp_path / "in"
    inputs.mkdir()
    image = sitk.GetImageFromArray(np.random.default_rng(0).random((12, 24, 24)).astype(np.float32))
    sitk.WriteImage(image, str(inputs / "fits.nii.gz"))
    image.SetSpacing((0.2, 0.2, 0.2))
    sitk.WriteImage(image, str(inputs / "tiny.nii.gz"))
    assert cli.main(["-i", str(inputs), "-o", str(tmp_path / "out")], bundle=bundle) == 0
    err = capsys.readouterr().err
    assert "warning: tiny: the image is 12 x 24 x 24 pixels at 0.2 x 0.2 x 0.2 mm" in err, err
    assert "fits:" not in err and (tmp_path / "out" / "tiny.nii.gz").is_file()
