"""``automed predict`` warns when the network sees only part of an image (one at another resolution than the
training images is centre-cropped to the input shape) instead of predicting it silently (issue 15 audit)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from automed.runtime.image_model import prepared_input, scale_note
from automed.runtime.pipeline import Spec


def test_an_image_four_times_the_input_gets_a_note() -> None:
    note = scale_note((112, 112), [28, 28])
    assert note is not None and "112 x 112" in note and "25% x 25%" in note and "resample" in note


def test_images_near_the_input_size_get_none() -> None:
    assert scale_note((50, 56), [28, 28]) is None  # cropped as in training, the plan says so
    assert scale_note((14, 14), [28, 28]) is None


def test_the_prepared_input_reports_the_image_shape_before_the_crop() -> None:
    norm = {"channel": 0, "scheme": "zscore", "use_nonzero_mask": False, "clip_low": None, "clip_high": None,
            "mean": None, "std": None}  # fmt: skip
    spec = Spec([0, 1, 2], [0, 1, 2], [1.0, 1.0], 2, [norm], 3, 0, 3.0, [], 1)
    x, own = prepared_input(np.ones((1, 1, 60, 40), np.float32), [1.0, 1.0, 1.0], spec, [28, 28])
    assert x.shape == (1, 1, 28, 28) and own == (60, 40)


def test_predict_logs_the_note_of_a_case(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The prediction loop says a prediction's note, naming its case (for a table and for label maps alike)."""
    import SimpleITK as sitk

    from automed.infer.inputs import discover
    from automed.workflow.predict import _predict_cases

    sitk.WriteImage(sitk.GetImageFromArray(np.ones((8, 8), np.uint8)), str(tmp_path / "t00.png"))
    res = SimpleNamespace(row=lambda target: {"prediction": 1.0}, note="it sees the central 25% x 25% of it")
    predictor = SimpleNamespace(target=None, predict_arrays=lambda *a, **k: res)
    cases = discover(tmp_path / "t00.png", 1, 2)
    with caplog.at_level(logging.WARNING, logger="automed"):
        _predict_cases(predictor, cases, tmp_path, "W", "nifti", False, False, None, False)
    assert "t00: it sees the central 25% x 25%" in caplog.text
