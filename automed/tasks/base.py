"""The task protocol and its registry.

A task owns everything that depends on what is predicted: the network head and loss, the training and validation
batches, the per-epoch validation score (best checkpoint, early stopping, ASHA reports), the validation of a fold's
cases with their metrics and cross-validation summary, the one score that ranks folds, trials and trainings (sweep
objective, selection, registry champion), and what training decides on its own CV for inference; after training,
the choice ``automed select`` makes among its trainings, its export and model card, and what a report compares between
its runs. The workflow asks the task (:func:`automed.tasks.registry.task_for`); nothing else names a metric.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch
    from matplotlib.figure import Figure
    from torch.utils.data import IterableDataset

    from automed.data.dataset import Dataset
    from automed.data.io import Geometry
    from automed.export.export import ExportResult
    from automed.parallel import Stages
    from automed.plan.schema import ConfigurationPlan, Plan
    from automed.train.config import Augmentation, TrainConfig
    from automed.train.data import CaseStore, SamplerSpec
    from automed.train.meta import ModelMeta


def metric_keys(names: list[str]) -> list[str]:
    """One MLflow key part per class or label name (:func:`automed.tracking.safe_key`), distinct: names that become
    the same key (other scripts turn into underscores: 良性 and 悪性 are both ``__``) get their position appended,
    so one class's metrics never replace another's; names that stay distinct keep their keys."""
    from automed.tracking import safe_key

    keys = [safe_key(n) for n in names]
    clash = {k for k in keys if keys.count(k) > 1}
    out = [f"{k}_{i}" if k in clash else k for i, k in enumerate(keys)]
    return out if len(set(out)) == len(out) else [f"{k}_{i}" for i, k in enumerate(keys)]


class EpochScorer(Protocol):
    """Accumulates one epoch's validation batches into the task's epoch score."""

    def add(self, logits: torch.Tensor, target: torch.Tensor) -> None: ...

    def result(self) -> tuple[list[float], float]:
        """Per-class values and their summary for the epoch (NaN where undefined)."""
        ...


@dataclass(frozen=True)
class OwnChoice:
    """A training's inference decision on its own CV: postprocessing steps, and what to log about it."""

    postprocessing: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float | None] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifact: Path | None = None  # logged under selection/
    # prediction settings chosen on measured cost (tta, step, folds), None: every fold with TTA at step 0.5
    inference: dict[str, Any] | None = None
    # the CV rows of the chosen inference when it differs from the validation's (they replace the CV table)
    rows: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class Selected:
    """What ``automed select`` chose among a task's trainings and pairs, before it is recorded and logged."""

    # selection.json: candidates, the chosen one (members also relative to the folder), ...
    record: dict[str, Any]
    # the chosen candidate's CV score before postprocessing, always finite: the measure it was chosen by, and what
    # the registry records (a training registers its own the same way: the champion agrees with select's choice)
    score: float
    metrics: dict[str, float | None]  # for the select run in MLflow
    # a single chosen training got new inference settings (inference.json): registered again with them
    settled: bool = False


class Task(Protocol):
    name: str
    score_name: str  # the MLflow metric a CV summary's score is logged as
    epoch_metric: str  # the MLflow metric of the per-epoch validation score
    epoch_label: str  # how a person reads it ("pseudo-Dice", "AUC", "R²")
    image_level: bool  # one prediction per image (a table) rather than per voxel (label maps)
    ignored_settings: tuple[
        str, ...
    ]  # training config fields the task does not use (set: said; searched: refused)
    # `automed predict` on the training runs its export (export_link.json) instead of torch
    links_export: bool
    summary_figures_title: str  # what summary_figures draws, as a report heading ("" when none)

    def build_network(
        self, plan: Plan, cfg_plan: ConfigurationPlan, config: TrainConfig
    ) -> torch.nn.Module: ...

    def build_loss(self, plan: Plan, cfg_plan: ConfigurationPlan, config: TrainConfig) -> Any: ...

    def augmentation(self, plan: Plan, config: TrainConfig) -> Augmentation:
        """The training augmentation: the config's, less what the task's target cannot bear."""
        ...

    def batches(
        self,
        plan: Plan,
        store: CaseStore,
        case_ids: list[str],
        spec: SamplerSpec,
        n_batches: int,
        seed: tuple[int, ...],
    ) -> IterableDataset[tuple[torch.Tensor, torch.Tensor]]:
        """Training batches (``spec.augment`` set) or the epoch's validation batches."""
        ...

    def epoch_scorer(self, plan: Plan, n_classes: int) -> EpochScorer: ...

    def epoch_names(self, plan: Plan) -> list[str]:
        """Names of the epoch score's per-class values, safe for MLflow keys."""
        ...

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
        """Predict the fold's validation cases from the raw images, keep the predictions in the fold's
        ``validation/`` folder and return the per-case metric rows."""
        ...

    def fold_figures(
        self,
        folder: Path,
        rows: list[dict[str, Any]],
        ds: Dataset,
        overlay_ids: list[str],
        names: dict[str, str],
    ) -> list[tuple[str, Figure]]:
        """Figures for a fold's MLflow run beyond its progress plot (``names``: case id -> name to show)."""
        ...

    def summarize(self, rows: list[dict[str, Any]]) -> dict[str, Any]: ...

    def write_summary(self, rows: list[dict[str, Any]], csv_path: Path, json_path: Path) -> dict[str, Any]:
        """The CV rows as a per-case CSV and the summary as JSON; returns the summary."""
        ...

    def score(self, summary: dict[str, Any]) -> float:
        """The number that ranks a summary (always finite)."""
        ...

    def summary_metrics(self, summary: dict[str, Any]) -> dict[str, float | None]:
        """A CV summary as MLflow metrics (undefined values stay None and are not logged)."""
        ...

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
        """What a training decides for its inference on its own CV ``rows`` (validated with mirror TTA when
        ``tta``): segmentation, largest-component postprocessing, and with ``latency_cap`` folds/TTA/step so that a
        case predicts in no more time than one network with nnU-Net's default inference; image-level tasks, whether
        TTA helps. ``out`` receives the decision's artifacts; ``deadline`` (a ``--budget``'s end, perf_counter): the
        timings stop adding cases once it has passed (one case at least)."""
        ...

    def summary_figures(
        self, rows: list[dict[str, Any]], summary: dict[str, Any]
    ) -> list[tuple[str, Figure]]:
        """Figures of a CV summary (ROC, confusion matrix, ...); none for segmentation yet."""
        ...

    def summarizable(self, rows: list[dict[str, Any]]) -> bool:
        """Whether per-case rows hold what :meth:`summarize` needs (a classification table of hard labels, as
        ``automed metrics`` takes, has no class probabilities)."""
        ...

    def case_outcomes(self, table: pd.DataFrame) -> pd.DataFrame:
        """A per-case table of runs (``run``, ``case``, ...) with the column its paired tests compare."""
        ...

    def paired_tests(self, table: pd.DataFrame) -> list[dict[str, Any]]:
        """Tests between every two runs of :meth:`case_outcomes`' table on the cases both predicted, Holm-corrected."""
        ...

    def load_predictor(
        self,
        workdir: Path,
        device: str | None,
        *,
        folds: list[int] | None = None,
        step: float | None = None,
    ) -> Any:
        """The torch predictor of a concluded training's work dir (its model.json, inference settings in force);
        ``folds``: some of its trained folds instead of its own (refused when it lacks one), ``step``: another
        sliding-window step (refused by a task that has no window)."""
        ...

    def bundle_predictor(
        self,
        plan: Plan,
        meta: ModelMeta,
        weights: list[Path],
        device: str | None,
        previous: Any = None,
    ) -> Any:
        """The predictor of a model bundle's weight files (``previous``: a cascade's first stage, loaded)."""
        ...

    def ensemble_predictor(self, members: list[Any], postprocessing: list[dict[str, Any]]) -> Any:
        """The mean of several trainings' predictors (a pair ``automed select`` chose)."""
        ...

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
        """``predictor``'s networks converted to ``formats`` with the standalone bundle in ``out``, checked against
        torch (parity, latency) on ``sample``; ``step`` is told each step as it starts. Refuses what the task cannot
        export (a cascade, an image-level pair), naming ``source`` (the model as given)."""
        ...

    def model_card(self, predictor: Any, report: dict[str, Any], workdir: Path | None) -> str:
        """The export's MODEL_CARD.md (``report``: the export's checks; ``workdir``: None for a registered model)."""
        ...

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
        """``automed select``'s choice among concluded trainings of this task and their pairs on CV (``out``: the
        selection folder), with what it settles for a single chosen training: segmentation, its postprocessing and
        (``inference``: measured, within ``latency_target``) TTA, step and folds in ``inference.json``; image-level,
        nothing (the model as it is). Writes no ``selection.json`` (the caller records the choice). ``progress``
        shows its stages as they go."""
        ...
