"""How a ``--budget`` shapes a training (``--folds auto``): a timed probe of fold 0's model and data on this machine,
then the planner preset's rules (``budget:`` in ``planners/*.yaml``) decide whether to screen the planned
configurations on fold 0 first (without ``--configuration``) and how many folds of the split to train."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from automed.data.splits import read_splits
from automed.errors import ConfigError
from automed.plan.preset import load_preset
from automed.plan.schema import Plan
from automed.tasks.base import Task
from automed.train.config import TrainConfig
from automed.train.schedule import (
    OVERHEAD,
    FoldChoice,
    ScreenChoice,
    WidthChoice,
    choose_fold_count,
    choose_screening,
    choose_width,
)
from automed.train.trainer import step_seconds
from automed.workdir import ALL_DATA, WorkDir
from automed.workflow.fold_runs import FINAL_RESERVE_S

SPLIT_FOLDS = 5  # --folds auto trains the first folds of nnU-Net's five-fold split


def _fold0_step(
    wd: Path, plan: Plan, config: TrainConfig, task: Task, device: str | None, workers: int | None
) -> float:
    """Seconds per training step of ``config``'s fold 0 model and data on this machine (a timed probe)."""
    fold0 = read_splits(WorkDir(wd).splits)["folds"][0]
    return step_seconds(
        wd, plan, config, fold0["train"], fold0["val"], task=task, device=device, workers=workers
    )


def _n_folds(wd: Path) -> int:
    return int(read_splits(WorkDir(wd).splits)["n_folds"])


def auto_folds(
    wd: Path,
    plan: Plan,
    config: TrainConfig,
    task: Task,
    *,
    preset: str,
    deadline: float,
    device: str | None,
    workers: int | None,
    step_s: float | None = None,
) -> FoldChoice:
    """The number of folds (the first ones of ``splits.json``) the time left until ``deadline`` trains well;
    ``step_s``: the step time a screening probe measured already (else fold 0 is timed here)."""
    step = step_s if step_s is not None else _fold0_step(wd, plan, config, task, device, workers)
    rules = load_preset(preset).budget
    left = deadline - time.perf_counter() - FINAL_RESERVE_S
    choice = choose_fold_count(left, step, _n_folds(wd), rules.min_iterations_per_model, rules.fold_counts)
    if _capped(config):  # what the budget buys is not what trains: said
        note = f"; the config caps each model at {config.epochs} epoch(s) of {config.iterations_per_epoch} iterations"
        choice = replace(choice, reason=choice.reason + note)
    return choice


def _capped(config: TrainConfig) -> bool:
    """Whether the config caps the epochs a budget lays out (``--epochs`` with ``--budget``)."""
    return config.epochs < TrainConfig().epochs


def width_rule_applies(plan: Plan, config: TrainConfig, preset: str) -> bool:
    """Whether the budget's width rule may narrow ``config``'s network at all (so a probe is worth timing)."""
    rules = load_preset(preset).budget
    planned = plan.configurations[config.configuration].network.features_per_stage[0]
    # capped epochs: the user chose how long each model trains; a narrower network would only lose capacity
    return (
        rules.shrink_width
        and config.base_features is None
        and planned // 2 >= rules.min_base_features
        and not _capped(config)
    )


def asked_folds(
    wd: Path,
    plan: Plan,
    config: TrainConfig,
    task: Task,
    n_models: int,
    *,
    deadline: float,
    device: str | None,
    workers: int | None,
) -> FoldChoice:
    """The iterations each of the ``n_models`` folds the user asked for (``--folds N``, ``--fold``, ``--folds all``)
    gets in the time left until ``deadline``, from a timed probe of fold 0 (what the width rule decides from)."""
    step = _fold0_step(wd, plan, config, task, device, workers)
    left = deadline - time.perf_counter() - FINAL_RESERVE_S
    total = int(max(0.0, left) * OVERHEAD / step)
    reason = (
        f"folds as asked: {n_models} model(s) of about {total // n_models} iterations at {step:.3f} s each"
    )
    return FoldChoice(n_models, total // n_models, reason, step)


def auto_width(
    wd: Path,
    plan: Plan,
    config: TrainConfig,
    task: Task,
    folds: FoldChoice,
    *,
    preset: str,
    deadline: float,
    device: str | None,
    workers: int | None,
) -> WidthChoice | None:
    """A narrower network when even ``folds``' models would fall short of the preset's iterations per model:
    the width halved (each timed on fold 0) down to ``budget.min_base_features`` until one gets them; ``None``
    when the config sets the width itself, the preset turns the rule off or the plan's width is the best."""
    rules = load_preset(preset).budget
    planned = plan.configurations[config.configuration].network.features_per_stage[0]
    if (
        not width_rule_applies(plan, config, preset)
        or folds.iterations_per_model >= rules.min_iterations_per_model
    ):
        return None
    steps = {planned: folds.step_s}
    width, pick = planned, None
    while width // 2 >= rules.min_base_features:
        width //= 2
        narrow = config.model_copy(update={"base_features": width})
        steps[width] = _fold0_step(wd, plan, narrow, task, device, workers)
        left = deadline - time.perf_counter() - FINAL_RESERVE_S
        pick = choose_width(left, steps, folds.folds, rules.min_iterations_per_model)
        if pick.iterations_per_model >= rules.min_iterations_per_model:
            break
    return pick if pick is not None and pick.base_features != planned else None


def screening_candidates(plan: Plan, preset: str) -> list[str]:
    """The configurations a budget may screen: every planned one a training can start from (a cascade's second
    stage needs its first on every fold), when the preset allows screening and there are at least two."""
    if plan.target is not None or not load_preset(preset).budget.screen_configurations:
        return []
    names = [n for n, c in plan.configurations.items() if c.previous_stage is None]
    return names if len(names) > 1 else []


def plan_screening(
    wd: Path,
    plan: Plan,
    config: TrainConfig,
    task: Task,
    names: list[str],
    *,
    preset: str,
    deadline: float,
    device: str | None,
    workers: int | None,
) -> ScreenChoice:
    """Whether the time left until ``deadline`` screens ``names`` (each timed on fold 0, preprocessed already)."""
    steps = {
        n: _fold0_step(wd, plan, config.model_copy(update={"configuration": n}), task, device, workers)
        for n in names
    }
    rules = load_preset(preset).budget
    left = deadline - time.perf_counter() - FINAL_RESERVE_S
    return choose_screening(left, steps, _n_folds(wd), rules.min_iterations_per_model, rules.fold_counts)


def fold_count(
    folds: int | str | None, budget_s: float | None, only_folds: list[int] | None
) -> tuple[int, bool, list[int] | None]:
    """``(folds of the split, decided by the budget, folds to train)`` from ``--folds`` (a number, ``auto``,
    ``all`` or unset) and ``--fold``."""
    text = folds.strip().lower() if isinstance(folds, str) else None
    if folds is None:
        return SPLIT_FOLDS, budget_s is not None and only_folds is None, _checked(only_folds, SPLIT_FOLDS)
    if text == "all":
        if only_folds is not None:
            raise ConfigError.single(
                "--folds all",
                "--folds all trains one model on every case",
                f"--fold {only_folds}",
                "drop --fold",
            )
        return SPLIT_FOLDS, False, [ALL_DATA]
    if text == "auto":
        if budget_s is None:
            raise ConfigError.single(
                "--folds",
                "--folds auto decides from the budget",
                "auto without --budget",
                "add --budget or a number",
            )
        return SPLIT_FOLDS, only_folds is None, _checked(only_folds, SPLIT_FOLDS)
    try:
        n = int(folds)
    except ValueError:
        raise ConfigError.single(
            "--folds",
            "--folds is a number of folds, auto or all",
            repr(folds),
            "write e.g. --folds 5 or --folds auto",
        ) from None
    if n < 2:  # one fold would validate on its own training cases
        raise ConfigError.single("--folds", "a cross-validation split has at least 2 folds", n,
                                 "write e.g. --folds 5, or --folds all for one model on every case")  # fmt: skip
    return n, False, _checked(only_folds, n)


def _checked(only_folds: list[int] | None, n: int) -> list[int] | None:
    """``--fold`` values: folds of the ``n``-fold split, each once."""
    if only_folds is not None and (
        any(not 0 <= f < n for f in only_folds) or len(set(only_folds)) < len(only_folds)
    ):
        raise ConfigError.single("--fold", f"--fold names folds of the {n}-fold split (0 to {n - 1}), each once",
                                 only_folds, f"pick among 0-{n - 1}, or change --folds")  # fmt: skip
    return only_folds
