"""A fold ensemble of image-level networks (classification, regression): raw image in, one row out.

The image goes through the plan's preprocessing in memory (transpose, crop to non-zero, normalize, resample), is
centre-cropped or padded to the plan's input shape, and every fold network predicts it, under every combination of
flipped axes when ``tta`` (test-time mirroring, as in training's augmentation; a training keeps it only when it
scored higher on its CV, :meth:`automed.tasks.image_level.ImageLevelTask.own_choice`). Classification averages the softmax
probabilities; regression averages the standardized outputs and maps them back to the target's units.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from automed.data.io import Geometry
from automed.errors import ArtifactError
from automed.infer.predict_options import chosen_folds
from automed.plan.schema import Plan, TargetPlan
from automed.plan.variants import effective_plan
from automed.preprocess.pipeline import spec_for
from automed.runtime.image_model import prepared_noted
from automed.runtime.sliding import mirror_axes_sets
from automed.train.classifier import image_network
from automed.train.config import TrainConfig
from automed.train.device import usable_device
from automed.train.meta import load_model, resolve_training
from automed.train.state import load_checkpoint
from automed.workdir import WorkDir


@dataclass(frozen=True)
class ImagePrediction:
    """Classification: ``probabilities`` per class and the predicted ``label`` (its ValueToPredict and name);
    regression: ``value``."""

    probabilities: np.ndarray | None
    label: float | None
    name: str | None
    value: float | None
    note: str | None = (
        None  # a warning of :func:`automed.runtime.image_model.prepared_noted`: the image's size
    )

    def row(self, target: TargetPlan) -> dict[str, float | str]:
        """The prediction as a table row: ``prediction`` (class name or value), ``probability_<class>`` columns."""
        if self.probabilities is None:
            assert self.value is not None
            return {"prediction": self.value}
        assert self.name is not None
        probs = {
            f"probability_{n}": float(p) for n, p in zip(target.class_names, self.probabilities, strict=True)
        }
        return {"prediction": self.name, **probs}


class ImagePredictor:
    """Fold networks of one image-level configuration plus the plan that preprocesses their input."""

    def __init__(
        self,
        plan: Plan,
        configuration: str,
        models: list[torch.nn.Module],
        *,
        device: torch.device,
        tta: bool,
        mirrors: str = "all",
    ) -> None:
        assert plan.target is not None, "an image-level plan has a target"
        self.plan, self.target = plan, plan.target
        self.cfg = plan.configurations[configuration]
        self.spec = spec_for(plan, self.cfg)
        self.models = [m.eval().to(device) for m in models]
        self.device, self.tta, self.mirrors = device, tta, mirrors

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
        tta: bool = True,
        mirrors: str = "all",
    ) -> ImagePredictor:
        paths = [
            WorkDir(workdir).fold(config.configuration, f) / f"checkpoint_{checkpoint}.pt" for f in folds
        ]
        return cls.from_checkpoints(plan, config, paths, device=device, tta=tta, mirrors=mirrors)

    @classmethod
    def from_checkpoints(
        cls,
        plan: Plan,
        config: TrainConfig,
        paths: list[Path],
        *,
        device: str | None = None,
        tta: bool = True,
        mirrors: str = "all",
    ) -> ImagePredictor:
        patch = resolve_training(plan, config).patch_size
        plan = effective_plan(plan, config)
        cfg = plan.configurations[config.configuration]
        plan = plan.model_copy(
            update={
                "configurations": {
                    **plan.configurations,
                    cfg.name: cfg.model_copy(update={"patch_size": patch}),
                }
            }
        )
        models: list[torch.nn.Module] = []
        for path in paths:
            m = image_network(plan, cfg, config)
            m.load_state_dict(load_checkpoint(path)["model"])
            models.append(m)
        return cls(plan, config.configuration, models, device=usable_device(device), tta=tta, mirrors=mirrors)

    @classmethod
    def from_workdir(
        cls, workdir: str | Path, *, device: str | None = None, folds: list[int] | None = None
    ) -> ImagePredictor:
        """The model ``automed train`` recorded in ``WORKDIR/model.json`` (``folds``: some of its trained folds)."""
        wd = Path(workdir)
        meta = load_model(wd)
        return cls.from_folds(
            wd,
            Plan.load(WorkDir(wd).plan),
            meta.config,
            chosen_folds(folds, meta.folds, meta.predict_folds, wd),
            checkpoint=meta.checkpoint,
            device=device,
            tta=meta.inference.tta,
            mirrors=meta.inference.mirrors,
        )

    def input_tensor(self, channels: np.ndarray, geometry: Geometry) -> torch.Tensor:
        """The preprocessed image at the network's input shape, as a batch of one (the bundle's own code)."""
        return self._prepared(channels, geometry)[0]

    def _prepared(self, channels: np.ndarray, geometry: Geometry) -> tuple[torch.Tensor, str | None]:
        shape = list(self.cfg.patch_size)
        x, note = prepared_noted(
            channels.astype(np.float32, copy=False), list(geometry.spacing_zyx), self.spec, shape
        )
        return torch.from_numpy(x), note

    @property
    def n_channels(self) -> int:
        return self.plan.n_channels

    def predict_arrays(
        self, channels: np.ndarray, geometry: Geometry, *, probabilities: bool = True
    ) -> ImagePrediction:
        """Predict one case given as ``(C, z, y, x)`` arrays with its geometry (classification always gives its
        probabilities)."""
        x, note = self._prepared(channels, geometry)
        x = x.to(self.device)
        flips = mirror_axes_sets(x.ndim - 2, self.tta, self.mirrors)
        outs = []
        with torch.no_grad():
            for model in self.models:
                for axes in flips:
                    out = model(torch.flip(x, axes) if axes else x).float()
                    outs.append(torch.softmax(out, 1) if self.target.kind == "classification" else out)
        mean = torch.stack(outs).mean(0)[0].cpu().numpy().astype(np.float64)
        if self.target.kind == "regression":
            return ImagePrediction(
                None, None, None, float(mean[0] * self.target.std + self.target.mean), note
            )
        k = int(np.argmax(mean))
        return ImagePrediction(mean, self.target.class_values[k], self.target.class_names[k], None, note)


class ImageEnsemble:
    """Several image-level trainings predicting together (a pair ``automed select`` chose): the mean of their class
    probabilities, or of their values, as selection measured on CV."""

    def __init__(self, members: list[ImagePredictor]) -> None:
        first = members[0]
        for m in members[1:]:
            if m.n_channels != first.n_channels or m.target.class_names != first.target.class_names:
                raise ArtifactError.single(
                    "ensemble.json",
                    "ensemble members must take the same channels and predict the same classes",
                    f"{m.target.class_names} vs {first.target.class_names}",
                    "ensemble trainings of the same dataset",
                )
        self.members, self.target, self.plan = members, first.target, first.plan
        self.device = first.device

    @property
    def n_channels(self) -> int:
        return self.members[0].n_channels

    @property
    def tta(self) -> bool:
        return self.members[0].tta

    @tta.setter
    def tta(self, value: bool) -> None:
        for m in self.members:
            m.tta = value

    def predict_arrays(
        self, channels: np.ndarray, geometry: Geometry, *, probabilities: bool = True
    ) -> ImagePrediction:
        outs = [m.predict_arrays(channels, geometry) for m in self.members]
        note = outs[0].note
        if self.target.kind == "regression":
            return ImagePrediction(None, None, None, float(np.mean([o.value for o in outs])), note)
        mean = np.mean([np.asarray(o.probabilities) for o in outs], axis=0)
        k = int(np.argmax(mean))
        return ImagePrediction(mean, self.target.class_values[k], self.target.class_names[k], None, note)
