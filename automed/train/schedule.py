"""Learning-rate schedules over iterations, and how a wall-clock budget becomes epochs x iterations."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Phase:
    """One schedule phase: ``lr0`` decays over ``[start, start + length)`` iterations."""

    start: int
    length: int
    lr0: float


def learning_rate(kind: str, phases: list[Phase], iteration: int, exponent: float = 0.9) -> float:
    ph = phases[-1]
    for p in reversed(phases):  # the newest phase (an extension) wins over the one it cut short
        if p.start <= iteration < p.start + p.length:
            ph = p
            break
    t = min(max(iteration - ph.start, 0) / max(ph.length, 1), 1.0)
    if kind == "constant":
        return ph.lr0
    if kind == "cosine":
        return float(ph.lr0 * 0.5 * (1 + math.cos(math.pi * t)))
    return float(ph.lr0 * (1 - t) ** exponent)


@dataclass(frozen=True)
class BudgetPlan:
    epochs: int
    iterations_per_epoch: int
    val_iterations: int
    reason: str


def plan_budget(
    seconds: float, step_s: float, iterations_per_epoch: int, val_iterations: int, min_epochs: int = 10
) -> BudgetPlan:
    """Epochs and iterations that fit ``seconds`` of training given a measured ``step_s`` per iteration.

    Validation iterations cost about a third of a training step (forward only). When fewer than ``min_epochs`` full
    epochs fit, epochs are shortened (never below 5 iterations) so the EMA and early stopping still see enough points.
    """
    val_cost = val_iterations * step_s / 3
    per_epoch = iterations_per_epoch * step_s + val_cost
    epochs = int(seconds // per_epoch)
    ipe, vit = iterations_per_epoch, val_iterations
    if epochs < min_epochs:
        per = seconds / min_epochs
        vit = max(1, min(val_iterations, int(per * 0.1 / (step_s / 3))))
        ipe = max(5, int((per - vit * step_s / 3) // step_s))
        epochs = max(1, int(seconds // (ipe * step_s + vit * step_s / 3)))
    # the probe and the validation reserve took the whole share: the run said "budget: -10 s ... 1 epochs"
    short = seconds < ipe * step_s + vit * step_s / 3
    reason = (
        f"{max(0.0, seconds):.0f} s at {step_s:.3f} s per iteration: {max(1, epochs)} epochs x {ipe} iterations "
        f"(+ {vit} validation iterations per epoch)"
        + ("; too little time for one epoch, so the shortest (a model barely trained)" if short else "")
    )
    return BudgetPlan(max(1, epochs), ipe, vit, reason)


def refit_iterations(
    seconds_left: float,
    epoch_s: float,
    iterations_per_epoch: int,
    val_iterations: int,
    min_partial: float = 0.25,
) -> int:
    """Training iterations that still fit in ``seconds_left`` given measured epochs of ``epoch_s`` (training and
    validation): whole epochs, plus a shorter last one when at least ``min_partial`` of an epoch fits next to its
    validation (a validation iteration costs about a third of a training one, as in :func:`plan_budget`)."""
    if seconds_left <= 0 or epoch_s <= 0:
        return 0
    full = int(seconds_left // epoch_s)
    rest = seconds_left - full * epoch_s
    val_s = epoch_s * (val_iterations / 3) / (iterations_per_epoch + val_iterations / 3)
    step_s = (epoch_s - val_s) / iterations_per_epoch
    partial = int((rest - val_s) // step_s) if rest > val_s else 0
    if partial < max(1, math.ceil(min_partial * iterations_per_epoch)):
        partial = 0
    return full * iterations_per_epoch + partial


# the share of a fold's time that goes to training steps (validation and start-up take the rest)
OVERHEAD = 0.75


@dataclass(frozen=True)
class FoldChoice:
    folds: int
    iterations_per_model: int
    reason: str
    step_s: float  # the measured seconds per step it was decided from


@dataclass(frozen=True)
class WidthChoice:
    """The network width (features of the first stage) a budget trains: ``iterations_per_model`` each."""

    base_features: int
    iterations_per_model: int
    reason: str


def choose_width(
    seconds: float,
    step_s: dict[int, float],
    folds: int,
    min_iterations: int,
    overhead: float = OVERHEAD,
) -> WidthChoice:
    """Of the widths timed in ``step_s`` (base features -> seconds per step), the widest whose ``folds`` models
    each still get ``min_iterations`` in ``seconds``, else the one that gets the most (a small network that
    converges beats a large one that has barely started)."""
    its = {w: int(max(0.0, seconds) * overhead / s) // folds for w, s in step_s.items()}
    fits = [w for w, n in its.items() if n >= min_iterations]
    w = max(fits) if fits else max(its, key=lambda k: (its[k], k))
    planned = max(step_s)
    timed = ", ".join(f"{k}: {its[k]}" for k in sorted(its, reverse=True))
    if w == planned:
        reason = f"width: the plan's {planned} base features ({its[w]} iterations per model)"
    else:
        reason = (
            f"width auto: {w} base features instead of the plan's {planned} - iterations per model by width "
            f"({timed}); each model needs {min_iterations} (budget.min_iterations_per_model), so the "
            + ("widest that gets them" if fits else "one that gets the most iterations (no width gets them)")
        )
    return WidthChoice(w, its[w], reason)


def _hms(seconds: float) -> str:
    """``1h05m``, ``12m`` or ``40s``: a duration as ``--budget`` takes it (minutes rounded up)."""
    if seconds < 60:
        return f"{max(1, math.ceil(seconds))}s"
    minutes = math.ceil(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def choose_fold_count(
    seconds: float,
    step_s: float,
    n_folds: int,
    min_iterations: int,
    counts: list[int],
    overhead: float = OVERHEAD,
) -> FoldChoice:
    """How many folds (of an ``n_folds`` split) a budget of ``seconds`` can train well: the most in ``counts`` that
    each still get ``min_iterations``, else the fewest. ``overhead`` is the share of a fold's time that goes to
    training steps (the rest: per-epoch validation, the fold's final validation, start-up)."""
    total = int(max(0.0, seconds) * overhead / step_s)
    allowed = sorted({c for c in counts if 1 <= c <= n_folds}) or [1]
    beyond = sorted({c for c in counts if c > n_folds})  # said, not dropped without a word
    fits = [c for c in allowed if total // c >= min_iterations]
    k = max(fits) if fits else allowed[0]
    reason = (
        f"folds auto: {k} of {n_folds} - the budget buys about {total} training iterations at {step_s:.3f} s "
        f"each; each model needs at least {min_iterations} to converge (budget.min_iterations_per_model of the "
        f"planner preset), so {k} fold(s) of about {total // k} iterations"
        + (
            ""
            if fits
            else f" (fewer than that: one model gets them all; {min_iterations} take about "
            f"{_hms(min_iterations * step_s / overhead)} of training here)"
        )
        + (f"; budget.fold_counts {beyond} exceed the {n_folds}-fold split: not used" if beyond else "")
    )
    return FoldChoice(k, total // k, reason, step_s)


@dataclass(frozen=True)
class ScreenChoice:
    """Whether a budget screens several configurations: ``configurations`` each train fold 0 for ``share_s``
    seconds, and the best on its fold-0 validation trains ``folds`` folds in all (its fold 0 among them)."""

    configurations: list[str]  # empty: no screening
    folds: int
    share_s: float
    reason: str
    steps: dict[str, float] = field(
        default_factory=dict
    )  # the measured seconds per step of each configuration


def choose_screening(
    seconds: float,
    step_s: dict[str, float],
    n_folds: int,
    min_iterations: int,
    counts: list[int],
    overhead: float = OVERHEAD,
) -> ScreenChoice:
    """Screen the configurations of ``step_s`` (seconds per training step of each) when every screening model and
    every later fold of the winner can get ``min_iterations``: the most folds in ``counts`` that allows, else no
    screening (the caller keeps its default configuration and fold rule)."""
    names = list(step_s)
    if len(names) < 2:
        return ScreenChoice([], 0, 0.0, "")
    allowed = sorted({c for c in counts if 1 <= c <= n_folds}) or [1]
    for k in reversed(allowed):
        models = len(names) + k - 1  # fold 0 of each configuration, then the winner's other folds
        share = seconds / models
        its = {n: int(share * overhead / s) for n, s in step_s.items()}
        if min(its.values()) >= min_iterations:
            each = ", ".join(f"{n} ~{i}" for n, i in its.items())
            return ScreenChoice(
                names,
                k,
                share,
                f"configurations auto: screening {len(names)} on fold 0 ({share:.0f} s each: {each} iterations); "
                f"the best fold-0 validation score trains {k} fold(s) of {n_folds}",
                dict(step_s),
            )
    slowest = max(step_s, key=lambda n: step_s[n])
    few = int(seconds / len(names) * overhead / step_s[slowest])
    return ScreenChoice(
        [],
        0,
        0.0,
        f"configurations auto: no screening - {len(names)} configurations would give {slowest} about {few} "
        f"iterations each (< {min_iterations}, budget.min_iterations_per_model), so the default configuration "
        "gets the whole budget",
        dict(step_s),
    )


def refit_reason(reason: str, iterations: int, epochs: int, epoch_s: float) -> str:
    """The schedule's reason with its re-fit part replaced: how many re-fits and the latest (one line however long
    the run)."""
    base, _, old = reason.partition("; re-fitted")
    m = re.match(r" (\d+) times", old)
    n = int(m.group(1)) + 1 if m else (2 if old else 1)
    times = f" {n} times" if n > 1 else ""
    last = f"last to {iterations} iterations ({epochs} epochs) at {epoch_s:.1f} s/epoch"
    return f"{base}; re-fitted{times} to measured epoch times, {last}"


def cut_reason(epoch: int, done: int, planned: int, step_s: float, probed_s: float | None) -> str:
    """What the schedule's reason gains when a budget's hard end cuts epoch ``epoch`` short."""
    probed = f" where the probe measured {probed_s:.3f} s" if probed_s else ""
    # (a budget already spent when the schedule was laid gets the shortest schedule, which the hard end cuts on a
    # machine as fast as probed too)
    why = (
        "the machine ran slower than when probed"
        if not probed_s or step_s > probed_s
        else "too short a budget"
    )
    return (
        f"; stopped in epoch {epoch} after {done} of its {planned} iterations: the budget is used up"
        f" ({step_s:.3f} s per step{probed}: {why})"
    )
