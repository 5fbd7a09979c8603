"""Predict with an export's networks (OpenVINO or onnxruntime) through :mod:`automed.runtime`: no torch.

Same preprocessing, Gaussian sliding window, mirror TTA, fold (and pair) averaging and mapping back to the input
geometry as the bundle's ``predict.py`` (the code is shared: :class:`automed.runtime.model.BundleModel`); the inference
settings (TTA, window step, postprocessing) come from the work dir's ``model.json`` when given, so a later ``automed
select`` still applies without re-exporting. ``automed predict --folds`` runs only those of the export's fold networks
and ``--step-size`` moves its window, as ``predict.py``'s own options do (:mod:`automed.runtime.options`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from automed.data.io import Geometry
from automed.errors import ArtifactError
from automed.infer.predict_options import checked_step, chosen_folds, folds_refused
from automed.infer.prediction import Prediction
from automed.records import read_bundle_meta
from automed.runtime.backends import choose_runtime
from automed.runtime.model import BundleModel
from automed.runtime.options import OptionError, held_folds, with_folds


class ExportedPredictor:
    """The networks of an ``automed export`` folder with its pre/post-processing."""

    def __init__(
        self,
        folder: Path,
        *,
        runtime: str | None = None,
        threads: int | None = None,
        inference: dict[str, Any] | None = None,
        folds: list[int] | None = None,
        step: float | None = None,
        held: list[int] | None = None,
    ) -> None:
        """``folds``: only these of the export's folds predict; ``step``: the window's step instead of the model's;
        ``held``: the fold numbers of its networks for an export that does not record them (the linked work dir's
        folds: its link proves the networks are those checkpoints, in that order)."""
        meta = read_bundle_meta(folder)
        if folds is not None:
            where = folder / "preprocess.json"
            if "members" in meta:  # a pair: the same folds of each member, a member lacking one named
                meta = _pair_folds(meta, folds, where)
            else:  # automed predict's own check and words
                have = held_folds(meta) or held or []
                meta = with_folds({**meta, "folds": have}, chosen_folds(folds, have, have, where), where)
        inference = {**(inference or {}), **({} if checked_step(step, folder) is None else {"step": step})}
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
        return Prediction(labels, probs, self.size_note(channels.shape[1:], geometry.spacing_zyx))

    def size_note(self, shape_zyx: Sequence[int], spacing_zyx: Sequence[float]) -> str | None:
        """The warning that the image covers less than half of a member's patch along every axis, else ``None``."""
        return self.model.size_note(shape_zyx, spacing_zyx)


def _pair_folds(meta: dict[str, Any], folds: list[int], where: Path) -> dict[str, Any]:
    """A pair's ``preprocess.json`` narrowed to ``folds`` of each member (:func:`with_folds`, the bundle's rule),
    its refusal in its words as a :class:`ConfigError`."""
    try:
        return with_folds(meta, folds, where)
    except OptionError as exc:
        raise folds_refused(exc, [], where) from exc
