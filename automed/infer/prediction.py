"""The result of predicting one case (shared by the torch and the exported-network predictors)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Prediction:
    labels: np.ndarray  # (z, y, x) label values, original geometry
    probabilities: np.ndarray | None  # (K, z, y, x) float32, original geometry, when asked
    # the image covers less than half of the network's patch along every axis at the model's spacing (a pixel spacing
    # other than the training images', most likely): :func:`automed.runtime.image_model.input_small_note`
    note: str | None = None
