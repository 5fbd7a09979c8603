"""The task protocol and its registry.

A task owns everything that depends on what is predicted: the network head and loss, the per-epoch validation score
(early stopping, ASHA reports), the per-case metrics and their cross-validation summary, the one score that ranks
folds, trials and trainings (sweep objective, selection, registry champion), and how a prediction is written. The
workflow asks the task (:func:`automed.tasks.registry.task_for`); nothing else names a metric.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import torch

    from automed.data.io import Geometry
    from automed.plan.schema import ConfigurationPlan
    from automed.train.config import TrainConfig


class Task(Protocol):
    name: str
    score_name: str  # the MLflow metric a CV summary's score is logged as

    def build_network(self, cfg_plan: ConfigurationPlan, config: TrainConfig) -> torch.nn.Module: ...

    def build_loss(self, cfg_plan: ConfigurationPlan, config: TrainConfig) -> Any: ...

    def epoch_counts(self, logits: torch.Tensor, target: torch.Tensor, n_classes: int) -> np.ndarray:
        """What one validation batch adds to the epoch's score (summed over the epoch's batches)."""
        ...

    def epoch_score(self, counts: np.ndarray) -> tuple[list[float], float]:
        """Per-class values and their mean for the epoch (NaN where undefined)."""
        ...

    def case_rows(
        self,
        case_id: str,
        fold: int,
        reference: np.ndarray,
        prediction: np.ndarray,
        labels: dict[int, str],
        spacing: tuple[float, ...],
    ) -> list[dict[str, Any]]:
        """Metric rows of one validation case."""
        ...

    def summarize(self, rows: list[dict[str, Any]]) -> dict[str, Any]: ...

    def score(self, summary: dict[str, Any]) -> float:
        """The number that ranks a summary (always finite)."""
        ...

    def summary_metrics(self, summary: dict[str, Any], names: dict[str, str]) -> dict[str, float | None]:
        """A CV summary as MLflow metrics (undefined values stay None and are not logged)."""
        ...

    def write_prediction(self, labels: np.ndarray, geometry: Geometry, path: Path) -> None: ...
