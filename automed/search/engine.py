"""What a sweep engine is given and returns, and the :class:`Engine` base the Ray and Optuna engines share;
engines register themselves by name (``--engine``).

Call order of a sweep: ``Engine(address, resources, temp_dir, show_progress)`` -> :meth:`Engine.check_nodes` ->
:meth:`Engine.concurrency` -> :meth:`Engine.search` (sampled trials, with early stopping) and/or
:meth:`Engine.evaluate` (fixed (trial, folds) units: promotion, grids) -> :meth:`Engine.close`. Both receive the
objective (``automed.workflow.trial.run_trial``) as an argument.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

from automed.registry import Registry
from automed.search.context import Objective, SweepContext
from automed.search.space import SearchSpace

Unit = tuple[str, dict[str, Any], list[int]]  # (trial key, sampled values, folds)


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
    status: Literal["complete", "stopped", "timed out", "error"]  # stopped: by the scheduler (or a duplicate)
    error: str = ""


class Engine(ABC):
    """One way to run trials: samples configs (Optuna's TPE or random), stops weak trials, runs units."""

    name: ClassVar[str]

    def __init__(
        self,
        address: str | None,
        resources: dict[str, float],
        temp_dir: str | None = None,
        show_progress: bool = True,
    ) -> None:
        self.address = address
        self.resources = resources
        self.temp_dir = temp_dir
        self.show_progress = show_progress

    @abstractmethod
    def concurrency(self) -> int:
        """How many trials run at once with the requested resources per trial."""

    @abstractmethod
    def check_nodes(self, readable: list[str], writable: str) -> list[str]:
        """Raise a ConfigError naming every node that cannot read ``readable`` or write ``writable``; the nodes."""

    @abstractmethod
    def search(
        self,
        objective: Objective,
        ctx: SweepContext,
        space: SearchSpace,
        points: list[dict[str, Any]],
        spec: SearchSpec,
        resume: bool,
    ) -> list[TrialOutcome]:
        """Sample ``spec.n_trials`` trials (``points`` first), each trained on ``spec.folds`` by ``objective``."""

    @abstractmethod
    def evaluate(
        self,
        objective: Objective,
        ctx: SweepContext,
        units: list[Unit],
        concurrency: int,
        retries: int,
        resume: bool,
        stage: str = "promote",
    ) -> list[TrialOutcome]:
        """Run fixed (trial, folds) units, ``concurrency`` at a time."""

    def close(self) -> None:  # noqa: B027  (engines without resources to free keep it)
        """Free what the engine started."""

    def trial_context(self, ctx: SweepContext) -> SweepContext:
        """``ctx`` with the CPU threads one trial may use."""
        return replace(ctx, threads=max(1, int(self.resources.get("cpu", 1))))

    @staticmethod
    def sampler(spec: SearchSpec, worker: int = 0, started: int = 0) -> Any:
        """Optuna's seeded sampler for ``spec`` (both engines sample with Optuna); ``worker``: the index of a process
        sampling the same study beside others (each gets its own seed, else all draw the same values); ``started``:
        trials the study holds already (a resumed search)."""
        import optuna

        seed = spec.seed + 7919 * worker + 104729 * started
        if spec.sampler == "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, spec.n_trials // 3))
        return optuna.samplers.RandomSampler(seed=seed)


ENGINES: Registry[type[Engine]] = Registry("sweep engine")
