"""A fold ensemble that turns raw images into label maps in the input's own geometry.

``Predictor.predict_arrays`` runs the plan's preprocessing in memory (transpose, crop, normalize, resample), the
sliding window over every fold model, then maps probabilities back: resampled to the cropped shape (order 1, thick
axis separately), arg-max, pasted into the uncropped volume, transposed back, class indices mapped to label values.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automed.data.io import Geometry
from automed.errors import ArtifactError
from automed.infer.predict_options import chosen_folds
from automed.infer.prediction import Prediction
from automed.infer.sliding_window import predict_volume, window_corners
from automed.plan.schema import Plan
from automed.plan.variants import effective_plan
from automed.preprocess.pipeline import Preprocessed, preprocess_arrays, preprocess_label, spec_for
from automed.preprocess.previous_stage import check_first_stage
from automed.runtime.image_model import input_small_note
from automed.runtime.pipeline import to_original
from automed.runtime.postprocess import apply as apply_postprocessing
from automed.runtime.postprocess import class_bias
from automed.runtime.sliding import mirror_axes_sets
from automed.train.config import TrainConfig
from automed.train.data import with_previous
from automed.train.device import autocast_dtype, usable_device
from automed.train.meta import load_model, resolve_training
from automed.train.networks import segmentation_network
from automed.train.state import load_checkpoint
from automed.workdir import WorkDir


class Predictor:
    """Fold models of one configuration plus the plan that preprocesses their input."""

    def __init__(
        self,
        plan: Plan,
        configuration: str,
        models: list[torch.nn.Module],
        *,
        device: torch.device,
        amp: bool = True,
        step: float = 0.5,
        tta: bool = True,
        mirrors: str = "all",
        whole_image_factor: float = 0.0,
        patch: list[int] | None = None,
        postprocessing: list[dict[str, Any]] | None = None,
        previous: Predictor | None = None,
    ) -> None:
        self.plan = plan
        self.configuration = configuration
        self.cfg = plan.configurations[configuration]
        self.spec = spec_for(plan, self.cfg)
        self.models = [m.eval().to(device) for m in models]
        self.device = device
        self.amp_dtype = autocast_dtype(device, amp)
        self.step = step
        self._tta = tta  # its own setting; the cascade's first stage keeps its own (see the tta setter)
        self.mirrors = mirrors  # which mirrorings tta averages (automed.runtime.sliding.mirror_axes_sets)
        self.whole_image_factor = whole_image_factor
        self.postprocessing = list(postprocessing or [])  # steps chosen on CV (automed.select)
        self.label_values = sorted(int(k) for k in plan.labels)
        self.patch = list(patch or self.cfg.patch_size)
        self.previous = previous  # a cascade: the 3d_lowres stage whose prediction is an extra input
        if self.cfg.previous_stage and previous is None:
            raise ArtifactError.single(
                configuration,
                f"{configuration} predicts from the prediction of {self.cfg.previous_stage}",
                "no previous stage given",
                "load the model with Predictor.from_workdir or from its bundle",
            )

    @property
    def n_channels(self) -> int:
        return self.plan.n_channels

    @property
    def tta(self) -> bool:
        return self._tta

    @tta.setter
    def tta(self, value: bool) -> None:
        """Mirror TTA on or off, for a cascade's first stage too (``automed predict --no-tta``)."""
        self._tta = value
        if self.previous is not None:
            self.previous.tta = value

    @classmethod
    def from_folds(
        cls,
        workdir: Path,
        plan: Plan,
        config: TrainConfig,
        folds: list[int],
        *,
        checkpoint: str = "final",
        device: str | None = None,
        **kwargs: Any,
    ) -> Predictor:
        paths = [
            WorkDir(workdir).fold(config.configuration, f) / f"checkpoint_{checkpoint}.pt" for f in folds
        ]
        if plan.configurations[config.configuration].previous_stage and "previous" not in kwargs:
            # a cascade fold's validation: the first stage as it made the training inputs (its validation TTA)
            kwargs["previous"] = previous_stage(workdir, folds, device=device, tta=kwargs.get("tta", True))
        return cls.from_checkpoints(plan, config, paths, device=device, **kwargs)

    @classmethod
    def from_checkpoints(
        cls,
        plan: Plan,
        config: TrainConfig,
        paths: list[Path],
        *,
        device: str | None = None,
        **kwargs: Any,
    ) -> Predictor:
        """One network per checkpoint file (training checkpoints or the bundle's weight files)."""
        patch = resolve_training(plan, config).patch_size
        plan = effective_plan(plan, config)
        models = []
        for path in paths:
            m = segmentation_network(plan.configurations[config.configuration], config)
            m.load_state_dict(load_checkpoint(path)["model"])
            models.append(m)
        return cls(plan, config.configuration, models, device=usable_device(device), patch=patch, **kwargs)

    @classmethod
    def from_workdir(
        cls,
        workdir: str | Path,
        *,
        device: str | None = None,
        folds: list[int] | None = None,
        **kwargs: Any,
    ) -> Predictor:
        """Load the model that ``automed train`` recorded in ``WORKDIR/model.json``, with the inference settings in
        force (``automed select``'s choice, ``inference.json``, when there is one); ``folds``: some of its trained
        folds instead (a cascade's first stage follows them)."""
        wd = Path(workdir)
        meta = load_model(wd)
        inf = meta.inference
        kwargs.setdefault("postprocessing", inf.postprocessing)
        kwargs.setdefault("tta", inf.tta)
        kwargs.setdefault("mirrors", inf.mirrors)
        kwargs.setdefault("step", inf.step)
        kwargs.setdefault("whole_image_factor", inf.whole_image_factor)
        plan, chosen = Plan.load(WorkDir(wd).plan), chosen_folds(folds, meta.folds, meta.predict_folds, wd)
        if plan.configurations[meta.config.configuration].previous_stage and "previous" not in kwargs:
            # prediction: the first stage with its own inference settings, as the registered bundle predicts
            kwargs["previous"] = previous_stage(wd, chosen, device=device)
        return cls.from_folds(
            wd,
            plan,
            meta.config,
            chosen,
            checkpoint=meta.checkpoint,
            device=device,
            **kwargs,
        )

    def variant(self, n_models: int, *, tta: bool, step: float, mirrors: str) -> Predictor:
        """This predictor with its first ``n_models`` fold networks and other inference settings; the networks are
        shared, not loaded again. A cascade's first stage follows as :meth:`from_folds` builds it for a fold's
        validation (its first ``n_models`` networks, the same TTA, its own step and mirror set)."""
        other = copy.copy(self)
        other.models = self.models[:n_models]
        if self.previous is not None:
            prev = self.previous
            other.previous = prev.variant(n_models, tta=tta, step=prev.step, mirrors=prev.mirrors)
        other.tta, other.step, other.mirrors = tta, step, mirrors
        return other

    def preprocess(self, channels: np.ndarray, geometry: Geometry) -> Preprocessed:
        """One case given as ``(C, z, y, x)`` arrays with its geometry, preprocessed by the plan (the same for every
        :meth:`variant`)."""
        return preprocess_arrays(
            channels.astype(np.float32, copy=False), None, geometry, self.plan, self.cfg, self.label_values
        )

    def work(self, pre: Preprocessed) -> tuple[object, ...]:
        """What predicting the preprocessed case ``pre`` computes: the networks, their mirrorings, the windows (the
        step itself when whole images may be predicted), the postprocessing and a cascade's first stage. Two
        variants of one predictor with equal work predict the case identically, at the same cost."""
        shape = pre.data.shape[2:] if self.cfg.network.dimension == 2 else pre.data.shape[1:]
        windows = (
            tuple(window_corners(shape, self.patch, self.step)) if self.whole_image_factor == 0 else self.step
        )
        return (*self._settings(), windows)

    def _settings(self) -> tuple[object, ...]:
        prev = None if self.previous is None else (*self.previous._settings(), self.previous.step)
        flips = mirror_axes_sets(len(self.patch), self.tta, self.mirrors)
        post = json.dumps(self.postprocessing, sort_keys=True)
        return (tuple(id(m) for m in self.models), tuple(flips), self.whole_image_factor, post, prev)

    def predict_arrays(
        self, channels: np.ndarray, geometry: Geometry, *, probabilities: bool = False
    ) -> Prediction:
        """Predict one case given as ``(C, z, y, x)`` arrays with its geometry (and :meth:`size_note`'s warning)."""
        pred = self.predict_preprocessed(
            self.preprocess(channels, geometry), channels, geometry, probabilities
        )
        pred.note = self.size_note(channels.shape[1:], geometry.spacing_zyx)
        return pred

    def size_note(self, shape_zyx: Sequence[int], spacing_zyx: Sequence[float]) -> str | None:
        """A warning when an image of ``shape_zyx`` pixels at ``spacing_zyx`` mm covers less than half of the
        patch along every axis at the model's spacing (:func:`~automed.runtime.image_model.input_small_note`)."""
        return input_small_note(shape_zyx, spacing_zyx, self.spec, self.patch, every_axis=True)

    def predict_preprocessed(
        self, pre: Preprocessed, channels: np.ndarray, geometry: Geometry, probabilities: bool = False
    ) -> Prediction:
        """:meth:`predict_arrays` of a case already preprocessed (``pre``: :meth:`preprocess` of ``channels``)."""
        net = self.cfg.network
        run = partial(
            predict_volume,
            self.models,
            patch=self.patch,
            n_classes=net.n_classes,
            divisor=net.divisor,
            step=self.step,
            tta=self.tta,
            mirrors=self.mirrors,
            device=self.device,
            amp_dtype=self.amp_dtype,
            whole_image_factor=self.whole_image_factor,
        )
        data = pre.data
        if self.previous is not None:
            first = self.previous.predict_arrays(channels, geometry).labels
            prev = preprocess_label(first, pre.properties, self.plan, self.cfg, self.label_values)
            data = with_previous(data, prev, net.n_classes)
        if net.dimension == 2:
            probs = np.stack([run(data[:, z]) for z in range(data.shape[1])], axis=1)
        else:
            probs = run(data)
        return self.export(probs, pre.properties, probabilities)

    def export(self, probs: np.ndarray, props: dict[str, Any], probabilities: bool) -> Prediction:
        """Map probabilities at the target spacing back to the original image grid, then postprocess the labels."""
        labels, out_probs = to_original(
            probs, props, self.spec, probabilities, class_bias(self.postprocessing)
        )
        if self.postprocessing:
            labels = apply_postprocessing(labels, self.postprocessing)
        return Prediction(labels, out_probs)


def previous_stage(
    workdir: Path, folds: list[int], *, device: str | None, tta: bool | None = None
) -> Predictor:
    """A cascade's first stage: the linked 3d_lowres training's models of the same ``folds`` (a validation fold sees
    the prediction of the model that held its cases out, as in training), without postprocessing (training saw
    its raw validation predictions), with its own mirror set. ``tta`` ``None`` (prediction): its own TTA and window
    step, as its registered bundle predicts; a bool (a cascade fold's validation): that TTA at the default step, as
    its validation predictions that the cascade trained on were made."""
    prev = check_first_stage(workdir)
    meta = load_model(prev)
    return Predictor.from_folds(
        prev,
        Plan.load(WorkDir(prev).plan),
        meta.config,
        meta.first_stage_folds(folds),
        checkpoint=meta.checkpoint,
        device=device,
        mirrors=meta.inference.mirrors,
        **(
            {
                "tta": meta.inference.tta,
                "step": meta.inference.step,
                "whole_image_factor": meta.inference.whole_image_factor,
            }
            if tta is None
            else {"tta": tta}
        ),
    )
