"""Image-level tasks: classification and regression from the whole image.

The plan's encoder with global pooling and a linear head (:mod:`automed.train.classifier`); cross-entropy (weighted
when the planner found the classes imbalanced) or Huber/MSE on the standardized value; whole-image batches
(:mod:`automed.train.image_data`); the epoch score is the validation cases' macro AUC (classification) or R²
(regression); validation predicts each case from its raw image (:mod:`automed.infer.image_level`) and scores the
fold's table with :mod:`automed.evaluate.image_level` (scikit-learn).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.utils.data import IterableDataset

from automed.artifacts import write_bytes_atomic, write_json_atomic
from automed.data.cases import read_case
from automed.data.dataset import Dataset, load_dataset
from automed.errors import ArtifactError, ConfigError
from automed.evaluate.image_level import (
    epoch_auc,
    epoch_r2,
)
from automed.evaluate.summary import cv_order
from automed.infer.image_level import ImagePredictor
from automed.infer.predict_options import no_window
from automed.plan.schema import ConfigurationPlan, Plan, TargetPlan
from automed.records import CV_SUMMARY_VERSION, stamped
from automed.tasks.base import OwnChoice, metric_keys
from automed.train.classifier import image_network
from automed.train.config import Augmentation, TrainConfig
from automed.train.data import CaseStore, SamplerSpec
from automed.train.image_data import WholeImageStream
from automed.train.meta import ModelMeta, resolve_training
from automed.workdir import WorkDir

if TYPE_CHECKING:
    from automed.data.io import Geometry
    from automed.export.export import ExportResult
    from automed.parallel import Stages
    from automed.tasks.base import Selected


def _target(plan: Plan) -> TargetPlan:
    assert plan.target is not None, "an image-level plan has a target"
    return plan.target


class EpochOutputs:
    """The epoch's validation outputs and targets, scored at the end (AUC or R² need every case at once)."""

    def __init__(self, kind: str, n_classes: int) -> None:
        self.kind, self.n_classes = kind, n_classes
        self.outputs: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []

    def add(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        out = torch.softmax(logits, 1) if self.kind == "classification" else logits[:, 0]
        self.outputs.append(out.detach().cpu().numpy().astype(np.float64))
        self.targets.append(target.detach().cpu().numpy().reshape(-1))

    def result(self) -> tuple[list[float], float]:
        if not self.outputs:
            return [], math.nan
        y, out = np.concatenate(self.targets), np.concatenate(self.outputs)
        if self.kind == "regression":
            r2 = epoch_r2(y, out)
            return [r2], r2
        y = y.astype(np.int64)
        per = [epoch_auc((y == k).astype(np.int64), out[:, k]) for k in range(self.n_classes)]
        return per, epoch_auc(y, out if self.n_classes > 2 else out[:, 1])


class ImageLevelTask:
    """What classification and regression share; the two differ in their loss, metrics and names."""

    name = ""
    score_name = ""
    epoch_metric = ""
    epoch_label = ""
    image_level = True
    # whole images into an encoder and a linear head: no per-voxel loss, no decoder outputs, no foreground patches
    ignored_settings: tuple[str, ...] = ("loss", "deep_supervision", "foreground_oversample")
    links_export = False  # the export runs through its own predict.py
    summary_figures_title = ""

    def build_network(self, plan: Plan, cfg_plan: ConfigurationPlan, config: TrainConfig) -> torch.nn.Module:
        batch = resolve_training(plan, config).batch_size
        if _target(plan).norm == "batch" and batch < 2:
            raise ConfigError.single(
                "batch_size",
                "a batch-normalized encoder (plan target.norm: batch, for regression) trains on batches of 2 or more",
                str(batch),
                "set batch_size to 2 or more in the training config or search space",
            )
        return image_network(plan, cfg_plan, config)

    def build_loss(self, plan: Plan, cfg_plan: ConfigurationPlan, config: TrainConfig) -> nn.Module:
        t = _target(plan)
        if t.loss == "cross_entropy":
            weight = torch.tensor(t.class_weights, dtype=torch.float32) if t.class_weights else None
            return _CrossEntropy(weight)
        return _Regression(nn.HuberLoss() if t.loss == "huber" else nn.MSELoss())

    def augmentation(self, plan: Plan, config: TrainConfig) -> Augmentation:
        """No rescaling when the plan says the target may be a size (see plan_target)."""
        if _target(plan).scale_augmentation:
            return config.augmentation
        # the affine transform also rotates: its scale range must be 1 too, not only the scaling's probability 0
        return config.augmentation.model_copy(update={"scale_p": 0.0, "scale_range": (1.0, 1.0)})

    def encoded_targets(self, plan: Plan, store: CaseStore, case_ids: list[str]) -> dict[str, float]:
        """Each case's target as the network learns it (class index, or the standardized value)."""
        t, out = _target(plan), {}
        for cid in case_ids:
            v = store.get(cid).target
            assert v is not None, f"case {cid} has no ValueToPredict"
            out[cid] = float(t.index_of(v)) if t.kind == "classification" else (v - t.mean) / t.std
        return out

    def batches(
        self,
        plan: Plan,
        store: CaseStore,
        case_ids: list[str],
        spec: SamplerSpec,
        n_batches: int,
        seed: tuple[int, ...],
    ) -> IterableDataset[tuple[torch.Tensor, torch.Tensor]]:
        targets = self.encoded_targets(plan, store, case_ids)
        integer = _target(plan).kind == "classification"
        return WholeImageStream(store, case_ids, spec, n_batches, seed, targets, integer)

    def epoch_scorer(self, plan: Plan, n_classes: int) -> EpochOutputs:
        return EpochOutputs(_target(plan).kind, n_classes)

    def epoch_names(self, plan: Plan) -> list[str]:
        t = _target(plan)
        return metric_keys(t.class_names) if t.kind == "classification" else ["value"]

    def validate(
        self,
        workdir: Path,
        plan: Plan,
        config: TrainConfig,
        fold: int,
        ds: Dataset,
        val_ids: list[str],
        *,
        device: str | None,
        tta: bool,
        mirrors: str = "all",
    ) -> list[dict[str, Any]]:
        """Each validation case predicted from its raw image; the fold's table kept as
        ``validation/predictions.csv``."""
        pred = ImagePredictor.from_folds(
            workdir, plan, config, [fold], device=device, tta=tta, mirrors=mirrors
        )
        rows = self._predict_rows(pred, plan, fold, ds, val_ids)
        out = WorkDir(workdir).fold(config.configuration, fold) / "validation"
        out.mkdir(exist_ok=True)
        pd.DataFrame(rows).to_csv(out / "predictions.csv", index=False)
        return rows

    def _predict_rows(
        self, pred: ImagePredictor, plan: Plan, fold: int, ds: Dataset, case_ids: list[str]
    ) -> list[dict[str, Any]]:
        """One CV row per case: its target and ``pred``'s prediction from the raw image."""
        t = _target(plan)
        by_id = {c.case_id: c for c in ds.cases}
        rows: list[dict[str, Any]] = []
        for cid in case_ids:
            case = by_id[cid]
            cd = read_case(case, ds.images_are_4d)
            res = pred.predict_arrays(cd.channels, cd.geometry)
            assert case.value is not None
            target: float | str = (
                t.class_names[t.index_of(case.value)] if t.kind == "classification" else case.value
            )
            rows.append({"case": cid, "fold": fold, "target": target, **res.row(t)})
        return rows

    def fold_figures(
        self,
        folder: Path,
        rows: list[dict[str, Any]],
        ds: Dataset,
        overlay_ids: list[str],
        names: dict[str, str],
    ) -> list[tuple[str, Figure]]:
        return []  # a fold's table is small; the CV summary draws its curves

    def write_summary(self, rows: list[dict[str, Any]], csv_path: Path, json_path: Path) -> dict[str, Any]:
        summary = self.summarize(rows)
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        # select trusts this table as the CV evidence: a kill mid-write must not leave half of it
        write_bytes_atomic(csv_path, pd.DataFrame(cv_order(rows)).to_csv(index=False).encode())
        write_json_atomic(json_path, stamped(summary, CV_SUMMARY_VERSION))
        return summary

    def own_choice(
        self,
        workdir: Path,
        plan: Plan,
        config: TrainConfig,
        folds: list[int],
        dataset: str,
        out: Path,
        latency_cap: bool = True,
        *,
        rows: list[dict[str, Any]],
        tta: bool,
        mirrors: str = "all",
        deadline: float | None = None,
    ) -> OwnChoice:
        """Mirror TTA kept only when it scores higher on this training's own CV than one plain prediction: flipped
        inputs are not always predicted alike (hippocampus volume regression, 2,050 iterations: R² 0.663 without,
        0.491 with, every flip biased upwards). No postprocessing to decide for a table."""
        if not tta or not rows:
            return OwnChoice()
        ds = load_dataset(dataset)
        plain: list[dict[str, Any]] = []
        for fold in folds:
            pred = ImagePredictor.from_folds(workdir, plan, config, [fold], tta=False)
            plain += self._predict_rows(pred, plan, fold, ds, [r["case"] for r in rows if r["fold"] == fold])
        with_tta, without = self.summarize(rows), self.summarize(plain)
        s_tta, s_plain = self.score(with_tta), self.score(without)
        keep = s_tta > s_plain
        label = self.score_name.removeprefix("cv_")
        reason = (
            f"mirror TTA {'kept' if keep else 'off'}: CV {label} {s_tta:.4f} with, {s_plain:.4f} without "
            f"({'higher' if keep else 'not higher'} with it; without it a case runs one network pass per fold)"
        )
        choice = {"tta": keep, "score_with_tta": s_tta, "score_without_tta": s_plain, "reason": reason}
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            WorkDir(out).root / "tta_choice.json",
            {"choice": choice, "summary_with_tta": with_tta, "summary_without_tta": without},
        )
        return OwnChoice(
            metrics={f"{self.score_name}_tta": s_tta, f"{self.score_name}_no_tta": s_plain},
            tags={"inference": reason},
            artifact=WorkDir(out).root / "tta_choice.json",
            inference={"tta": keep},
            rows=None if keep else plain,
        )

    def summarize(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        raise NotImplementedError

    def score(self, summary: dict[str, Any]) -> float:
        raise NotImplementedError

    def summary_metrics(self, summary: dict[str, Any]) -> dict[str, float | None]:
        raise NotImplementedError

    def summary_figures(
        self, rows: list[dict[str, Any]], summary: dict[str, Any]
    ) -> list[tuple[str, Figure]]:
        raise NotImplementedError

    def summarizable(self, rows: list[dict[str, Any]]) -> bool:
        raise NotImplementedError

    def case_outcomes(self, table: pd.DataFrame) -> pd.DataFrame:
        raise NotImplementedError

    def paired_tests(self, table: pd.DataFrame) -> list[dict[str, Any]]:
        raise NotImplementedError

    def load_predictor(
        self,
        workdir: Path,
        device: str | None,
        *,
        folds: list[int] | None = None,
        step: float | None = None,
    ) -> ImagePredictor:
        no_window(step, workdir)
        return ImagePredictor.from_workdir(workdir, device=device, folds=folds)

    def bundle_predictor(
        self,
        plan: Plan,
        meta: ModelMeta,
        weights: list[Path],
        device: str | None,
        previous: Any = None,
    ) -> ImagePredictor:
        inf = meta.inference
        return ImagePredictor.from_checkpoints(
            plan, meta.config, weights, device=device, tta=inf.tta, mirrors=inf.mirrors
        )

    def ensemble_predictor(self, members: list[Any], postprocessing: list[dict[str, Any]]) -> Any:
        from automed.infer.image_level import ImageEnsemble

        return ImageEnsemble(members)

    def select(
        self,
        workdirs: list[Path],
        out: Path,
        *,
        inference: bool,
        latency_target: float | None,
        max_cases: int,
        device: str | None,
        progress: Stages | None = None,
    ) -> Selected:
        from automed.select.image_level import select_image_level

        return select_image_level(workdirs, out, self, progress)

    def export(
        self,
        predictor: Any,
        source: str | Path,
        out: Path,
        formats: list[str],
        sample: tuple[str, np.ndarray, Geometry] | None,
        *,
        ov_precision: str,
        repeats: int,
        step: Callable[[str], None],
    ) -> ExportResult:
        from automed.export.image_level import export_image_predictor
        from automed.infer.image_level import ImageEnsemble

        if isinstance(predictor, ImageEnsemble):
            raise ArtifactError.single(
                source,
                "an export holds one classification or regression training",
                "a pair chosen by automed select",
                "export each member's work dir (the pair's model_bundle predicts with `automed predict`)",
            )
        from automed.export.link import exported_folds

        folds = exported_folds(source)
        return export_image_predictor(
            predictor,
            out,
            formats,
            sample,
            ov_precision=ov_precision,
            repeats=repeats,
            step=step,
            folds=None if folds is None else folds[0],
        )

    def model_card(self, predictor: Any, report: dict[str, Any], workdir: Path | None) -> str:
        from automed.export.image_level import image_card

        return image_card(predictor, report, workdir)


class _CrossEntropy(nn.Module):
    """Cross-entropy on class indices (``(B,)`` targets), optionally class-weighted."""

    def __init__(self, weight: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.weight: torch.Tensor | None

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(logits.device) if self.weight is not None else None
        return nn.functional.cross_entropy(logits.float(), target, weight=w)


class _Regression(nn.Module):
    """A regression loss on float32 outputs (mixed precision may give bfloat16 or float16 ones)."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.loss(outputs.float(), target.float())
        return out
