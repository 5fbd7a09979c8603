"""A fold ensemble that turns raw images into label maps in the input's own geometry.

``Predictor.predict_arrays`` runs the plan's preprocessing in memory (transpose, crop, normalize, resample), the
sliding window over every fold model, then maps probabilities back: resampled to the cropped shape (order 1, thick
axis separately), arg-max, pasted into the uncropped volume, transposed back, class indices mapped to label values.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automed.data.io import Geometry
from automed.errors import ArtifactError
from automed.infer.prediction import Prediction
from automed.infer.sliding_window import predict_volume
from automed.plan.schema import Plan
from automed.plan.variants import effective_plan
from automed.preprocess.pipeline import preprocess_arrays, spec_for
from automed.runtime.pipeline import to_original
from automed.runtime.postprocess import apply as apply_postprocessing
from automed.train.config import TrainConfig
from automed.train.device import autocast_dtype, pick_device
from automed.train.trainer import fold_dir, load_checkpoint, network_for

MODEL_FILE = "model.json"


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
        whole_image_factor: float = 0.0,
        patch: list[int] | None = None,
        postprocessing: list[dict[str, Any]] | None = None,
    ) -> None:
        self.plan = plan
        self.configuration = configuration
        self.cfg = plan.configurations[configuration]
        self.spec = spec_for(plan, self.cfg)
        self.models = [m.eval().to(device) for m in models]
        self.device = device
        self.amp_dtype = autocast_dtype(device, amp)
        self.step = step
        self.tta = tta
        self.whole_image_factor = whole_image_factor
        self.postprocessing = list(postprocessing or [])  # steps chosen on CV (automed.select)
        self.label_values = sorted(int(k) for k in plan.labels)
        self.patch = list(patch or self.cfg.patch_size)

    @property
    def n_channels(self) -> int:
        return self.plan.n_channels

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
        paths = [fold_dir(workdir, config.configuration, f) / f"checkpoint_{checkpoint}.pt" for f in folds]
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
        plan = effective_plan(plan, config)
        models = []
        for path in paths:
            m = network_for(plan.configurations[config.configuration], config)
            m.load_state_dict(load_checkpoint(path)["model"])
            models.append(m)
        return cls(
            plan, config.configuration, models, device=pick_device(device), patch=config.patch_size, **kwargs
        )

    @classmethod
    def from_workdir(
        cls,
        workdir: str | Path,
        *,
        device: str | None = None,
        folds: list[int] | None = None,
        **kwargs: Any,
    ) -> Predictor:
        """Load the model that ``automed train`` recorded in ``WORKDIR/model.json``."""
        wd = Path(workdir)
        mfile = wd / MODEL_FILE
        if not mfile.is_file():
            raise ArtifactError.single(
                mfile,
                "a training work dir must hold model.json",
                "missing",
                "run `automed train DATASET -o WORKDIR` first (or pass an MLflow model URI)",
            )
        meta = json.loads(mfile.read_text())
        plan = Plan.load(wd / "plan.json")
        config = TrainConfig.model_validate(meta["config"])
        inf = meta.get("inference", {})
        kwargs.setdefault("postprocessing", inf.get("postprocessing", []))
        kwargs.setdefault("tta", inf.get("tta", True))
        kwargs.setdefault("step", inf.get("step", 0.5))
        return cls.from_folds(
            wd,
            plan,
            config,
            folds or inf.get("folds") or meta["folds"],
            checkpoint=meta.get("checkpoint", "final"),
            device=device,
            **kwargs,
        )

    def predict_arrays(
        self, channels: np.ndarray, geometry: Geometry, *, probabilities: bool = False
    ) -> Prediction:
        """Predict one case given as ``(C, z, y, x)`` arrays with its geometry."""
        pre = preprocess_arrays(
            channels.astype(np.float32, copy=False), None, geometry, self.plan, self.cfg, self.label_values
        )
        net = self.cfg.network
        run = partial(
            predict_volume,
            self.models,
            patch=self.patch,
            n_classes=net.n_classes,
            divisor=net.divisor,
            step=self.step,
            tta=self.tta,
            device=self.device,
            amp_dtype=self.amp_dtype,
            whole_image_factor=self.whole_image_factor,
        )
        data = pre.data
        if net.dimension == 2:
            probs = np.stack([run(data[:, z]) for z in range(data.shape[1])], axis=1)
        else:
            probs = run(data)
        return self.export(probs, pre.properties, probabilities)

    def export(self, probs: np.ndarray, props: dict[str, Any], probabilities: bool) -> Prediction:
        """Map probabilities at the target spacing back to the original image grid, then postprocess the labels."""
        labels, out_probs = to_original(probs, props, self.spec, probabilities)
        if self.postprocessing:
            labels = apply_postprocessing(labels, self.postprocessing)
        return Prediction(labels, out_probs)
