"""The result of predicting one case (shared by the torch and the exported-network predictors)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Prediction:
    labels: np.ndarray  # (z, y, x) label values, original geometry
    probabilities: np.ndarray | None  # (K, z, y, x) float32, original geometry, when asked
