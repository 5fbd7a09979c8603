"""The options and results of ``automed train`` and the work dir's MLflow state (``tracking.json``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from automed.artifacts import write_json_atomic
from automed.records import TRACKING_VERSION, read_tracking, stamped
from automed.train.meta import ModelMeta

# a fold's or a trial's Ray resources unless --trial-resources says otherwise
DEFAULT_RESOURCES = {"cpu": 1.0, "gpu": 0.0}


@dataclass
class TrainOptions:
    folds: int = 5
    only_folds: list[int] | None = None
    budget_s: float | None = None
    device: str | None = None
    tracking_uri: str | None = None
    register: bool = True
    folds_asked: int | None = None  # --folds N beyond the subject groups: what was typed (folds: what trains)
    validation_tta: bool = True
    validation_mirrors: str = "all"  # which mirrorings TTA averages (the preset's inference.mirrors)
    workers: int | None = None
    preset: str | None = None
    parallel_folds: int = 1
    auto_configuration: bool = False  # 3d_fullres when planned, else 2d
    folds_auto: bool = False  # --folds auto: the budget decides how many folds of the split to train
    folds_reason: str = ""  # why that many (shape.auto_folds)
    # configurations screened on fold 0 first (shape.plan_screening): configurations, share_s, folds, reason
    screen: dict[str, Any] | None = None
    previous_workdir: str | None = None  # 3d_cascade_fullres: the 3d_lowres training it refines
    cv_workdir: str | None = None  # --folds all: the cross-validation training whose evidence it inherits
    ray_address: str | None = None  # folds as Ray tasks on this cluster (default: RAY_ADDRESS, else here)
    # None: not typed (DEFAULT_RESOURCES; on a resume, the saved ones); a new training records what it used
    fold_resources: dict[str, float] | None = None
    keep_case_ids: bool = False  # case IDs as they are in MLflow (default: keyed pseudonyms, automed.privacy)
    latency_cap: bool = (
        True  # several folds predict within one network's nnU-Net-default time (--full-ensemble: off)
    )
    overlays: int = 0  # validation cases drawn into each fold's MLflow run (opt-in: they show patient images)
    task: str | None = None  # --task: the task chosen by the user instead of by the targets
    max_voxels: int | None = None  # --max-voxels: the largest image verify lets through (None: its default)

    def resources(self) -> dict[str, float]:
        """A fold's Ray resources: what ``--trial-resources`` asked, else the default."""
        return dict(self.fold_resources) if self.fold_resources is not None else dict(DEFAULT_RESOURCES)


@dataclass
class TrainResult:
    workdir: Path
    cv_summary: dict[str, Any]
    model: ModelMeta
    fold_epochs: dict[int, int] = field(default_factory=dict)
    registered: dict[str, Any] | None = None
    folds_reason: str = ""  # --folds auto: how many folds the budget trains, and why


@dataclass
class TrackingState:
    """The work dir's MLflow state (``tracking.json``)."""

    path: Path
    uri: str
    experiment: str
    parent_run_id: str = ""
    fold_runs: dict[str, str] = field(default_factory=dict)
    registry: str = (
        ""  # the registry apart from the tracking store it registers in (MLFLOW_REGISTRY_URI), if any
    )

    def save(self) -> None:
        saved = read_tracking(self.path) if self.path.is_file() else {}
        state = {k: v for k, v in asdict(self).items() if k != "path"}
        # where this work dir was when it logged (local only): a copy resumed elsewhere is told from a moved one
        state["workdir"] = str(self.path.parent.resolve())
        write_json_atomic(self.path, stamped({**saved, **state}, TRACKING_VERSION))
