"""What a new sweep is refused for before any work (nothing written to its work dir): no bound on its training, or
settings searched that the dataset's task does not use."""

from __future__ import annotations

from automed.errors import ConfigError
from automed.search.space import SearchSpace
from automed.train.config import TrainConfig
from automed.workflow.sweep_stages import SweepOptions


def refuse_unbounded(opts: SweepOptions, space: SearchSpace, base_config: TrainConfig | None) -> None:
    """A sweep with neither a time budget nor trials that fix their epochs (each fold would train 1000 epochs) is
    refused before any work: the work dir gets nothing (no fingerprint, plan or lock)."""
    if (
        opts.budget_s is None
        and not any(space.target(n) == "epochs" for n in space.parameters)
        and "epochs" not in space.fixed
        and (base_config is None or base_config.epochs == TrainConfig().epochs)
    ):
        raise ConfigError.single(
            "--budget",
            "a sweep needs a time budget or a fixed number of epochs per trial",
            "neither given (the default is 1000 epochs per fold)",
            "pass --budget 2h, or list `epochs: [N]` in the grid strategy"
            if opts.grid is not None
            else "pass --budget 2h, or set `fixed: {epochs: N}` in the search space",
        )


def refuse_ignored(space: SearchSpace, task_type: str, source: str) -> None:
    """A space that searches (or fixes) a setting the dataset's task does not use (a classification's loss) would
    train the same model under several names: refused before any work."""
    from automed.tasks.registry import TASKS

    ignored = set(TASKS.get(task_type).ignored_settings) if task_type in TASKS else set()
    used = {space.target(n).split(".")[0] for n in space.parameters} | set(space.fixed)
    if bad := sorted(used & ignored):
        raise ConfigError.single(
            source, f"a {task_type} sweep searches settings its models use", ", ".join(bad),
            "remove them from the space (a classification or regression model has no per-voxel loss, deep "
            "supervision or foreground oversampling)",
        )  # fmt: skip
