"""``automed predict`` and the exported bundle warn when an image covers less than half of the network's input along
an axis at the model's spacing, as they warn when it is more than twice the input: a 24x24 DICOM at 0.2 mm (about
5x5 pixels at the model's 1 mm) was zero-padded to the 24x24 input and predicted without a word."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

from automed.data.io import Geometry
from automed.infer.image_level import ImagePredictor
from automed.runtime import cli
from automed.runtime.image_model import prepared_noted, small_note
from automed.runtime.pipeline import Spec
from tests.test_bundle_scale_note import _bundle, stub_networks

NORM = {"channel": 0, "scheme": "zscore", "use_nonzero_mask": False, "clip_low": None, "clip_high": None,
        "mean": None, "std": None}  # fmt: skip


def test_an_image_under_half_the_input_at_the_models_spacing_gets_a_note() -> None:
    note = small_note([24, 24], [0.2, 0.2], [1.0, 1.0], [24, 24])
    assert note is not None and "24 x 24 pixels at 0.2 x 0.2 mm (4.8 x 4.8 mm)" in note
    assert "model's spacing (1 x 1 mm) that is about 4.8 x 4.8 pixels, the network takes 24 x 24" in note
    assert "pixel spacing other than the training images'" in note
    assert small_note([24, 24], [1.0, 1.0], [1.0, 1.0], [24, 24]) is None
    assert small_note([12, 40], [1.0, 1.0], [1.0, 1.0], [24, 24]) is None  # half: padded as in training
    assert small_note([11, 40], [1.0, 1.0], [1.0, 1.0], [24, 24]) is not None  # one axis is enough


def test_automed_predicts_input_carries_the_note() -> None:
    """automed predict's torch predictor prepares its input with the runtime's function, so it says the same."""
    spec = Spec([0, 1, 2], [0, 1, 2], [1.0, 1.0], 2, [NORM], 3, 0, 3.0, [], 1)
    image = np.random.default_rng(0).random((1, 1, 24, 24)).astype(np.float32) + 1
    fake = SimpleNamespace(cfg=SimpleNamespace(patch_size=[24, 24]), spec=spec)
    geometry = Geometry((24, 24), (0.2, 0.2), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0))
    x, note = ImagePredictor._prepared(fake, image, geometry)  # type: ignore[arg-type]
    assert tuple(x.shape) == (1, 1, 24, 24) and note is not None and "about 4.8 x 4.8 pixels" in note
    assert prepared_noted(image, [1.0, 1.0, 1.0], spec, [24, 24])[1] is None


def test_the_bundle_warns_about_a_dicom_at_a_fifth_of_the_spacing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = stub_networks(monkeypatch, tmp_path)
    pixels = np.random.default_rng(1).integers(1, 200, (28, 28)).astype(np.uint8)
    tiny = sitk.GetImageFromArray(pixels)
    tiny.SetSpacing((0.2, 0.2))
    sitk.WriteImage(tiny, str(inputs / "tiny.dcm"))
    sitk.WriteImage(sitk.GetImageFromArray(pixels), str(inputs / "fit.png"))
    assert cli.main(["-i", str(inputs), "-o", str(tmp_path / "out")], bundle=_bundle(tmp_path / "b")) == 0
    err = capsys.readouterr().err
    assert "warning: tiny: the image is 28 x 28 pixels at 0.2 x 0.2 mm (5.6 x 5.6 mm)" in err
    assert "the network takes 28 x 28" in err and "fit:" not in err
