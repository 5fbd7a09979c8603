"""Predict with an export's networks (OpenVINO or onnxruntime) through :mod:`automed.runtime`: no torch.

Same preprocessing, Gaussian sliding window, mirror TTA, fold averaging and mapping back to the input geometry as
the bundle's ``predict.py`` (the code is shared); the inference settings (TTA, window step, postprocessing) come from
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
from automed.runtime.backends import choose_runtime, forwards_for
from automed.runtime.pipeline import Spec, preprocess_image, to_original
from automed.runtime.postprocess import apply as postprocess
from automed.runtime.sliding import predict_windows


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
        self.spec = Spec.from_json(meta["spec"])
        inf = {**meta["inference"], **{k: v for k, v in (inference or {}).items() if k in meta["inference"]}}
        self.patch = list(inf["patch"])
        self.n_classes = int(inf["n_classes"])
        self.step = float(inf["step"])
        self.tta = bool(inf["tta"])
        self.postprocessing = list(inf.get("postprocessing") or [])
        self.forwards = forwards_for(folder, meta, chosen, threads)

    @property
    def n_channels(self) -> int:
        return self.spec.n_channels

    def predict_arrays(
        self, channels: np.ndarray, geometry: Geometry, *, probabilities: bool = False
    ) -> Prediction:
        data, props, _ = preprocess_image(channels, list(geometry.spacing_zyx), self.spec)

        def run(x: np.ndarray) -> np.ndarray:
            return predict_windows(self.forwards, x, self.patch, self.n_classes, step=self.step, tta=self.tta)

        probs = (
            np.stack([run(data[:, z]) for z in range(data.shape[1])], axis=1)
            if self.spec.dimension == 2
            else run(data)
        )
        labels, out_probs = to_original(probs, props, self.spec, probabilities)
        if self.postprocessing:
            labels = postprocess(labels, self.postprocessing)
        return Prediction(labels, out_probs)
