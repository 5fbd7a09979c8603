"""What a sweep engine is given and returns; engines register themselves by name (``--engine``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from automed.registry import Registry

ENGINES: Registry[Any] = Registry("sweep engine")


@dataclass(frozen=True)
class SearchSpec:
    """How the search stage samples and stops trials."""

    n_trials: int
    folds: list[int]
    concurrency: int
    sampler: Literal["tpe", "random"] = "tpe"
    scheduler: Literal["asha", "none"] = "asha"
    seed: int = 0
    grace_epochs: int = 2
    reduction_factor: int = 2
    max_epochs: int = 10_000
    time_budget_s: float | None = None
    retries: int = 1  # restarts of a failed trial (it resumes from its checkpoint) before it counts as failed


@dataclass(frozen=True)
class TrialOutcome:
    key: str
    status: Literal["complete", "stopped", "error"]
    error: str = ""
