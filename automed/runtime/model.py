"""An export's networks with their pre/post-processing, as one numpy model: ``BundleModel.predict``.

``preprocess.json`` describes one training (``spec``, ``inference``, ``files`` at the top) or, for a pair chosen by
``automed select``, several (``members``: each with its own ``spec``, ``inference`` and ``files``; the top-level
``inference`` holds the pair's postprocessing). One training: its folds' probabilities are averaged inside the
sliding window, mapped back to the input geometry and postprocessed. Several: each member's probabilities in the
input geometry are averaged, the argmax is taken, then the pair's postprocessing (what selection measured).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .backends import Forward, forwards_for
from .image_model import input_small_note
from .pipeline import Spec, preprocess_image, to_original
from .postprocess import apply as postprocess
from .postprocess import class_bias, decide
from .sliding import predict_windows

INFERENCE_OVERRIDES = ("tta", "step", "postprocessing")


def members_of(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The trainings a bundle's ``preprocess.json`` holds (one for a single training)."""
    return list(meta["members"]) if "members" in meta else [meta]


class _Member:
    """One training's fold networks with its preprocessing and sliding-window settings."""

    def __init__(self, forwards: list[Forward], meta: dict[str, Any], overrides: dict[str, Any]) -> None:
        inf = {**meta["inference"], **{k: v for k, v in overrides.items() if k in meta["inference"]}}
        self.spec = Spec.from_json(meta["spec"])
        self.forwards = forwards
        self.patch = list(inf["patch"])
        self.n_classes = int(inf["n_classes"])
        self.step = float(inf["step"])
        self.tta = bool(inf["tta"])
        self.mirrors = str(inf.get("mirrors", "all"))  # bundles before the even mirror set: all
        self.postprocessing = list(inf.get("postprocessing") or [])

    def probabilities(
        self, channels: np.ndarray, spacing_zyx: list[float]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Class probabilities at the target spacing and the properties to map them back."""
        data, props, _ = preprocess_image(channels, spacing_zyx, self.spec)

        def run(x: np.ndarray) -> np.ndarray:
            return predict_windows(
                self.forwards,
                x,
                self.patch,
                self.n_classes,
                step=self.step,
                tta=self.tta,
                mirrors=self.mirrors,
            )

        if self.spec.dimension == 2:
            return np.stack([run(data[:, z]) for z in range(data.shape[1])], axis=1), props
        return run(data), props


class BundleModel:
    """Every member of an export for one runtime (``openvino`` or ``onnx``); ``predict`` gives label maps (and
    probabilities) in the input's geometry."""

    def __init__(
        self,
        root: Path,
        meta: dict[str, Any],
        runtime: str,
        *,
        threads: int | None = None,
        device: str = "cpu",
        overrides: dict[str, Any] | None = None,
    ) -> None:
        overrides = overrides or {}
        self.members = [
            _Member(forwards_for(root, m, runtime, threads, device), m, overrides) for m in members_of(meta)
        ]
        self.ensemble = "members" in meta
        # a pair's own postprocessing (overrides come from a single training's model.json only)
        self.postprocessing = list(meta["inference"].get("postprocessing") or []) if self.ensemble else []
        first = self.members[0].spec
        self.n_channels = first.n_channels
        self.label_values = np.asarray(first.label_values, dtype=np.int16)

    @property
    def dimension(self) -> int:
        """3 when any member's network is 3D (it takes volumes only), else 2."""
        return max(int(m.spec.dimension) for m in self.members)

    @property
    def tta(self) -> bool:
        return self.members[0].tta

    @tta.setter
    def tta(self, value: bool) -> None:
        for m in self.members:
            m.tta = value

    def size_note(self, shape_zyx: Sequence[int], spacing_zyx: Sequence[float]) -> str | None:
        """A warning when an image of ``shape_zyx`` pixels at ``spacing_zyx`` mm covers less than half of a
        member's patch along every axis at its spacing (:func:`input_small_note`), else ``None``."""
        notes = (
            input_small_note(shape_zyx, spacing_zyx, m.spec, m.patch, every_axis=True) for m in self.members
        )
        return next((n for n in notes if n), None)

    def predict(
        self, channels: np.ndarray, spacing_zyx: list[float], probabilities: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(C, z, y, x)`` image -> label values ``(z, y, x)`` in its grid (and class probabilities when asked)."""
        if not self.ensemble:
            m = self.members[0]
            probs, props = m.probabilities(channels, spacing_zyx)
            labels, out = to_original(probs, props, m.spec, probabilities, class_bias(m.postprocessing))
            return (postprocess(labels, m.postprocessing) if m.postprocessing else labels), out

        def member_probabilities(m: _Member) -> np.ndarray:
            probs, props = m.probabilities(channels, spacing_zyx)
            p = to_original(probs, props, m.spec, probabilities=True)[1]
            assert p is not None
            return p

        labels, mean = average(
            map(member_probabilities, self.members), self.label_values, self.postprocessing
        )
        return labels, (mean if probabilities else None)


def average(
    probabilities: Iterable[np.ndarray], label_values: np.ndarray, postprocessing: list[dict[str, Any]]
) -> tuple[np.ndarray, np.ndarray]:
    """Several trainings' class probabilities (each in the input geometry) -> (label values of the mean's argmax,
    with the class bias among ``postprocessing`` and its label-map steps; the mean). Shared with automed's torch
    ensemble (:mod:`automed.infer.ensemble`)."""
    total: np.ndarray | None = None
    n = 0
    for p in probabilities:
        total = p if total is None else total + p
        n += 1
    assert total is not None
    mean = total / n
    labels = label_values[decide(mean, class_bias(postprocessing))]
    return (postprocess(labels, postprocessing) if postprocessing else labels), mean
