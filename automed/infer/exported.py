"""Predict with an export's networks (OpenVINO or onnxruntime) through :mod:`automed.runtime`: no torch.

Same preprocessing, Gaussian sliding window, mirror TTA, fold (and pair) averaging and mapping back to the input
geometry as the bundle's ``predict.py`` (the code is shared: :class:`automed.runtime.model.BundleModel`); the inference settings (TTA, window step, postprocessing) come from
the work dir's ``model.json`` when given, so a later ``automed select`` still applies without re-exporting.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from automed.data.io import Geometry
from automed.errors import ArtifactError
from automed.infer.prediction import Prediction
from automed.runtime.backends import choose_runtime
from automed.runtime.model import BundleModel


class ExportedPredictor:
    """The networks of an ``automed export`` folder with its pre/post-processing."""

    def __init__(
        self,
        folder: Path,
        *,
        runtime: str | None = None,
        threads: int | None = None,
        inference: dict[str, Any] | None = None,
    ) -> None:
        meta = json.loads((folder / "preprocess.json").read_text())
        chosen = choose_runtime(runtime, meta["files"])
        if chosen is None:
            raise ArtifactError.single(
                folder,
                "predicting with an export needs its runtime installed",
                f"runtime {runtime or 'openvino/onnx'}; export has {sorted(meta['files'])}",
                "pip install openvino (or onnxruntime), or predict with --runtime torch",
            )
        self.runtime = chosen
        self.folder = folder
        self.model = BundleModel(folder, meta, chosen, threads=threads, overrides=inference)

    @property
    def n_channels(self) -> int:
        return self.model.n_channels

    @property
    def tta(self) -> bool:
        return self.model.tta

    @tta.setter
    def tta(self, value: bool) -> None:
        self.model.tta = value

    def predict_arrays(
        self, channels: np.ndarray, geometry: Geometry, *, probabilities: bool = False
    ) -> Prediction:
        labels, probs = self.model.predict(channels, list(geometry.spacing_zyx), probabilities)
        return Prediction(labels, probs)
