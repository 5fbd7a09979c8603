"""Several trainings predicting together: the mean of their probabilities in the input's geometry, then the
selection's postprocessing. This is what ``automed select`` measured when it chose a pair (it averages the CV
probabilities, which are stored in the original geometry too)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from automed.data.io import Geometry
from automed.errors import ArtifactError
from automed.infer.prediction import Prediction
from automed.runtime.model import average


class EnsemblePredictor:
    """Member predictors (each a fold ensemble of one training) with equal weights."""

    def __init__(self, members: list[Any], postprocessing: list[dict[str, Any]] | None = None) -> None:
        first = members[0]
        for m in members[1:]:
            if m.n_channels != first.n_channels or m.spec.label_values != first.spec.label_values:
                raise ArtifactError.single(
                    "ensemble.json",
                    "ensemble members must take the same channels and predict the same labels",
                    f"{m.n_channels} channels, labels {m.spec.label_values} vs {first.n_channels}, "
                    f"{first.spec.label_values}",
                    "ensemble trainings of the same dataset",
                )
        self.members = members
        self.postprocessing = list(postprocessing or [])
        self.plan = first.plan
        self.device = first.device
        self.label_values = np.asarray(first.spec.label_values, dtype=np.int16)

    @property
    def n_channels(self) -> int:
        return int(self.members[0].n_channels)

    @property
    def tta(self) -> bool:
        return bool(self.members[0].tta)

    @tta.setter
    def tta(self, value: bool) -> None:
        for m in self.members:
            m.tta = value

    def predict_arrays(
        self, channels: np.ndarray, geometry: Geometry, *, probabilities: bool = False
    ) -> Prediction:

        def member_probabilities(m: Any) -> np.ndarray:
            own, m.postprocessing = m.postprocessing, []  # only the ensemble's own postprocessing applies
            try:
                p = m.predict_arrays(channels, geometry, probabilities=True).probabilities
            finally:
                m.postprocessing = own
            assert p is not None
            return np.asarray(p)

        labels, mean = average(
            map(member_probabilities, self.members), self.label_values, self.postprocessing
        )
        note = self.size_note(channels.shape[1:], geometry.spacing_zyx)
        return Prediction(labels, mean if probabilities else None, note)

    def size_note(self, shape_zyx: Sequence[int], spacing_zyx: Sequence[float]) -> str | None:
        """The first member's warning that the image covers less than half of its patch along every axis."""
        notes = (m.size_note(shape_zyx, spacing_zyx) for m in self.members)
        return next((n for n in notes if n), None)
