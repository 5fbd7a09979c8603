"""A fold's training state (epochs, schedule, EMA, history), its checkpoints and what a finished fold left.

Checkpoints (``checkpoint_latest.pt`` every epoch, ``checkpoint_best.pt`` when the EMA improves,
``checkpoint_final.pt`` at the end) hold the weights, the optimizer and scaler state, this state, and the digests of
the plan and training config that made them. ``progress.json`` holds the schedule, the resolved optimizer and the
history (undefined values as null).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from automed.artifacts import fsync_dir, write_json_atomic
from automed.errors import ArtifactError
from automed.plan.schema import Plan
from automed.records import PROGRESS, PROGRESS_VERSION, read_progress, stamped
from automed.train.config import TrainConfig
from automed.train.schedule import Phase


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    val_loss: float
    val_per_class: list[
        float
    ]  # the task's epoch score per class (segmentation: pseudo Dice per foreground label)
    val_score: float  # their summary (NaN when undefined)
    val_score_ema: float  # its moving average: best checkpoint, early stopping, sweep reports
    learning_rate: float
    epoch_seconds: float
    data_wait_fraction: float
    iterations: int
    planned_epochs: int = 0  # the schedule in force after this epoch (a budget re-fits it)
    planned_iterations: int = 0


_OLD_NAMES = {"pseudo_dice": "val_per_class", "mean_fg_dice": "val_score", "ema_fg_dice": "val_score_ema"}


def epoch_log(d: dict[str, Any]) -> EpochLog:
    """An epoch from ``progress.json`` or a checkpoint (histories written before the task-neutral names too)."""
    return EpochLog(**{_OLD_NAMES.get(k, k): v for k, v in d.items()})


@dataclass
class FoldResult:
    fold: int
    folder: Path
    epochs: int
    best_ema: float
    stopped_early: bool
    history: list[EpochLog] = field(default_factory=list)
    schedule_reason: str = ""
    optimizer: str = ""  # resolved, with its initial learning rate: "adamw lr 0.003"


@dataclass
class TrainState:
    epoch: int = 0
    iteration: int = 0
    ema: float | None = None
    best_ema: float = -1.0
    epochs_without_improvement: int = 0
    epochs_total: int = 0
    iterations_per_epoch: int = 0
    val_iterations: int = 0
    phases: list[Phase] = field(default_factory=list)
    history: list[EpochLog] = field(default_factory=list)
    schedule_reason: str = ""
    stopped_early: bool = False
    optimizer: str = ""  # resolved (never "auto"); with lr0, fixed when the schedule is laid out
    lr0: float = 0.0

    def record_score(self, mean: float, decay: float) -> bool:
        """This epoch's validation score into the EMA; whether the EMA improved (the best checkpoint, early
        stopping). An undefined score (no class in any validation patch, none predicted) leaves the EMA as it was
        (a placeholder 0 before the first defined epoch): no evidence either way. The first epoch, and the first
        defined score, set the mark and start the EMA: a score can start below any fixed floor (an R² of -3)."""
        defined = not math.isnan(mean)
        first = defined and all(math.isnan(h.val_score) for h in self.history)
        if defined:
            self.ema = mean if first or self.ema is None else decay * self.ema + (1 - decay) * mean
        elif self.ema is None:
            self.ema = 0.0
        mark = self.epoch == 0 or first
        improved = mark or self.ema > self.best_ema
        self.best_ema = self.ema if mark else max(self.best_ema, self.ema)
        self.epochs_without_improvement = 0 if improved else self.epochs_without_improvement + 1
        return improved

    last_epoch_iterations: int = 0  # a budget's last epoch may be shorter (0: as long as the others)
    budget_s: float | None = None  # the wall time this fold was given (None: a fixed schedule)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        return cls(
            d["epoch"],
            d["iteration"],
            d["ema"],
            d["best_ema"],
            d["epochs_without_improvement"],
            d["epochs_total"],
            d["iterations_per_epoch"],
            d["val_iterations"],
            [Phase(**p) for p in d["phases"]],
            [epoch_log(h) for h in d["history"]],
            d["schedule_reason"],
            d["stopped_early"],
            d.get("optimizer", "sgd"),  # checkpoints written before the optimizer was resolved per fold
            d.get("lr0", 1e-2),
            d.get("last_epoch_iterations", 0),
            d.get("budget_s"),  # checkpoints written before folds recorded their budget
        )

    @property
    def optimizer_text(self) -> str:
        return f"{self.optimizer} lr {self.lr0:g}"

    def write_progress(self, folder: Path, finished: bool = False) -> None:
        extra = {"finished": True, "stopped_early": self.stopped_early} if finished else {}
        record = {
            "schedule": self.schedule_reason,
            "optimizer": self.optimizer_text,
            "budget_s": self.budget_s,
            "history": [asdict(h) for h in self.history],
            **extra,
        }
        write_json_atomic(folder / PROGRESS, stamped(record, PROGRESS_VERSION))

    def result(self, fold: int, folder: Path) -> FoldResult:
        return FoldResult(
            fold,
            folder,
            self.epoch,
            self.best_ema,
            self.stopped_early,
            self.history,
            self.schedule_reason,
            self.optimizer_text,
        )


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``path`` through a temporary file flushed to disk, then an atomic rename.

    One process writes a fold's folder: another's temporary file there is what a killed writer left (a node that
    died, a ``kill -9``), a partial checkpoint that stayed beside the model for good; it is removed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        if stale != tmp:
            stale.unlink(missing_ok=True)
    try:
        with tmp.open("wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:  # a full disk, Ctrl-C: no partial file is left
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ArtifactError.single(path, "the checkpoint must exist", "missing", "train the fold first")
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or overwritten by something else: torch's own message says little
        others = sorted(p.name for p in path.parent.glob("checkpoint_*.pt") if p != path)
        raise ArtifactError.single(
            path,
            "a checkpoint must be a complete torch file written by automed",
            f"unreadable ({type(exc).__name__}: {str(exc)[:120]})",
            f"move it away and use another checkpoint of this fold ({', '.join(others) or 'none left'}): "
            "`--resume` continues from checkpoint_latest.pt; without one the fold trains again",
        ) from exc
    return state


def fold_finished(folder: Path) -> bool:
    p = folder / PROGRESS
    return (
        (folder / "checkpoint_final.pt").is_file() and p.is_file() and bool(read_progress(p).get("finished"))
    )


def finished_result(folder: Path, fold: int) -> FoldResult:
    """The result of a fold whose training already finished (from its ``progress.json``)."""
    prog = read_progress(folder / PROGRESS)
    history = [epoch_log(h) for h in prog["history"]]
    return FoldResult(
        fold,
        folder,
        len(history),
        max((h.val_score_ema for h in history if h.val_score_ema is not None), default=-1.0),
        bool(prog.get("stopped_early")),
        history,
        str(prog.get("schedule", "")),
        str(prog.get("optimizer", "")),
    )


def checkpoint_matches(
    folder: Path, plan: Plan, config: TrainConfig, alternatives: Sequence[TrainConfig] = ()
) -> bool | None:
    """Whether the fold's checkpoint was made by this plan and config, or one of ``alternatives`` (``None``: no
    checkpoint)."""
    digests = {c.digest() for c in (config, *alternatives)}
    for name in ("checkpoint_final.pt", "checkpoint_latest.pt"):
        if (folder / name).is_file():
            ck = load_checkpoint(folder / name)
            return bool(ck.get("config_digest") in digests and ck.get("plan_hash") == plan.hash)
    return None
