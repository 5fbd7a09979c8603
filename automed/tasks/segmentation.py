"""Semantic segmentation: U-Net-family networks with softmax heads, Dice + cross-entropy with deep supervision,
pseudo Dice per epoch, Dice/IoU/HD95/NSD per label and case (the absent-structure rule of
:mod:`automed.evaluate.summary`), the foreground mean Dice as the score, label maps written in the input geometry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from automed.data.io import Geometry, write_image
from automed.evaluate.metrics import case_metrics
from automed.evaluate.summary import metrics_rows, score, summarize
from automed.plan.schema import ConfigurationPlan
from automed.train.config import TrainConfig
from automed.train.losses import DeepSupervisionLoss, build_loss
from automed.train.networks import build_network


class Segmentation:
    name = "segmentation"
    score_name = "cv_dice_fg_mean"

    def build_network(self, cfg_plan: ConfigurationPlan, config: TrainConfig) -> torch.nn.Module:
        net = cfg_plan.network.model_copy(
            update={
                "architecture": config.architecture or cfg_plan.network.architecture,
                "deep_supervision": config.deep_supervision,
            }
        )
        return build_network(net)

    def build_loss(self, cfg_plan: ConfigurationPlan, config: TrainConfig) -> DeepSupervisionLoss:
        return build_loss(config.loss, cfg_plan.batch_dice, cfg_plan.network.strides)

    def epoch_counts(self, logits: torch.Tensor, target: torch.Tensor, n_classes: int) -> np.ndarray:
        """(TP, FP, FN) per class of the arg-max against the target."""
        pred = logits.argmax(1)
        t = target[:, 0]
        out = np.zeros((n_classes, 3))
        for k in range(1, n_classes):
            p, r = pred == k, t == k
            out[k] = [float((p & r).sum()), float((p & ~r).sum()), float((~p & r).sum())]
        return out

    def epoch_score(self, counts: np.ndarray) -> tuple[list[float], float]:
        """Pseudo Dice per foreground class over the epoch's validation patches, and their mean. A class absent
        from every patch and never predicted has none (NaN, as in nnU-Net); the mean is over the classes that have
        one (NaN when none has)."""
        tp, fp, fn = counts[:, 0], counts[:, 1], counts[:, 2]
        dice = [
            float(2 * tp[k] / (2 * tp[k] + fp[k] + fn[k])) if (tp[k] + fp[k] + fn[k]) > 0 else float("nan")
            for k in range(1, len(counts))
        ]
        defined = [d for d in dice if not np.isnan(d)]
        return dice, float(np.mean(defined)) if defined else float("nan")

    def case_rows(
        self,
        case_id: str,
        fold: int,
        reference: np.ndarray,
        prediction: np.ndarray,
        labels: dict[int, str],
        spacing: tuple[float, ...],
    ) -> list[dict[str, Any]]:
        per = case_metrics(reference, prediction, sorted(labels), spacing)
        return metrics_rows(case_id, fold, per, labels)

    def summarize(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return summarize(rows)

    def score(self, summary: dict[str, Any]) -> float:
        return score(summary["foreground_mean"]["dice"])

    def summary_metrics(self, summary: dict[str, Any], names: dict[str, str]) -> dict[str, float | None]:
        fg = summary["foreground_mean"]
        out: dict[str, float | None] = {
            self.score_name: fg["dice"],
            "cv_hd95_fg_mean": fg["hd95"],
            "cv_nsd_fg_mean": fg["nsd"],
        }
        for lab, entry in summary["mean"].items():
            nm = names.get(lab, lab)
            out[f"cv_dice_{nm}"] = entry["dice"]
            out[f"cv_hd95_{nm}"] = entry["hd95"]
            out[f"cv_cases_both_empty_{nm}"] = entry["n_both_empty"]  # cases where the label is undefined
        return out

    def write_prediction(self, labels: np.ndarray, geometry: Geometry, path: Path) -> None:
        write_image(labels, geometry, path)
