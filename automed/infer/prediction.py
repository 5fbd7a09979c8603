"""The result of predicting one case (shared by the torch and the exported-network predictors)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from automed.errors import ArtifactError
from automed.runtime.pipeline import Spec


@dataclass
class Prediction:
    labels: np.ndarray  # (z, y, x) label values, original geometry
    probabilities: np.ndarray | None  # (K, z, y, x) float32, original geometry, when asked


def specs_of(predictor: Any) -> list[Spec]:
    """The :class:`Spec` of every training behind ``predictor``: a torch predictor's own, a pair's members', an
    export's (``model``: a bundle model's members, or an image-level one's spec)."""
    if isinstance(getattr(predictor, "spec", None), Spec):
        return [predictor.spec]
    found = [s for m in getattr(predictor, "members", []) for s in specs_of(m)]
    model = getattr(predictor, "model", None)
    return found + (specs_of(model) if model is not None else [])


def picture_reading(predictor: Any) -> str:
    """How ``predictor``'s model reads its inputs' pictures (``picture_spacing`` of its plan or bundle: a model
    trained before PNG pixel sizes were read takes every PNG at 1 mm per pixel, as it was trained)."""
    found = sorted({s.picture_spacing for s in specs_of(predictor)})
    if len(found) > 1:
        raise ArtifactError.single(
            "ensemble.json", "the trainings of a pair must read pictures alike (picture_spacing)", found,
            "pair trainings made by one automed version (or retrain the earlier one)",
        )  # fmt: skip
    if not found:
        raise TypeError(f"{type(predictor).__name__} holds no preprocessing spec to read its inputs by")
    return found[0]
