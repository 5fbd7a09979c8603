"""A registered model used the MLflow way (``mlflow.pyfunc.load_model(...).predict``) refuses what automed predict
refuses: a NaN voxel had made a segmentation all background and a classification NaN probabilities with a class
still named; a 2D classifier took volumes; spacing 0 crashed (ZeroDivisionError), NaN crashed, -1 was taken; an
empty batch crashed in np.stack."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from automed.registry_model import EnsembleModel, load_bundle


def _model(predictor: Any) -> EnsembleModel:
    model = EnsembleModel()
    model.predictor = predictor
    return model


@pytest.mark.slow  # (a training: small_training)
def test_a_segmentation_pyfunc_refuses_nan_and_bad_spacing(small_training: dict[str, Path]) -> None:
    model = _model(load_bundle(small_training["W"] / "model_bundle"))
    x = np.random.default_rng(0).normal(size=(1, 1, 12, 24, 24)).astype(np.float32)
    assert model.predict(None, x).shape == (1, 12, 24, 24)
    bad = x.copy()
    bad[0, 0, 3, 4, 5] = np.nan
    with pytest.raises(
        ValueError, match=r"input voxels must be finite intensities; found 1 .* in image\(s\) \[0\]"
    ):
        model.predict(None, bad)
    for value in (0.0, float("nan"), -1.0):
        with pytest.raises(ValueError, match=r"spacing_z must be a finite number of mm above 0"):
            model.predict(None, x, params={"spacing_z": value})
    assert model.predict(None, x[:0]).shape == (0, 12, 24, 24)


def test_an_image_level_pyfunc_refuses_the_other_dimension_and_answers_an_empty_batch() -> None:
    target = SimpleNamespace(kind="classification", class_names=["one", "two"])
    plan = SimpleNamespace(original_median_spacing=[1.0, 1.0, 1.0], image_dimension=2, target=target)

    def predict_arrays(case: np.ndarray, geo: Any) -> Any:
        return SimpleNamespace(
            row=lambda t: {"prediction": "one", "probability_one": 0.7, "probability_two": 0.3}
        )

    model = _model(SimpleNamespace(plan=plan, target=target, predict_arrays=predict_arrays))
    pictures = np.zeros((2, 1, 1, 32, 32), np.float32)
    assert list(model.predict(None, pictures)["prediction"]) == ["one", "one"]
    with pytest.raises(ValueError, match=r"trained on pictures or single slices \(2D\); found volumes"):
        model.predict(None, np.zeros((1, 1, 5, 32, 32), np.float32))
    empty = model.predict(None, pictures[:0])
    assert list(empty.columns) == ["prediction", "probability_one", "probability_two"] and len(empty) == 0
