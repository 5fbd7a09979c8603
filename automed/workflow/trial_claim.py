"""Each training config of a sweep trains once: a trial claims its resolved config when it starts, and a later trial
with the same config (a sampler drawing a point again, or two values that resolve alike: ``batch_size_scale`` 1.0
and 0.989 both give the plan's batch of 2) is a duplicate that trains nothing and takes the first one's result.

This happens where every engine's trial starts (:func:`automed.workflow.trial.run_trial`), so the Ray and Optuna
engines both get it. Under a sweep-wide lock (``SWEEP/.claims.lock``) the first trial with a config writes its
``trial.json`` (the config and its digest) and holds its ``.running`` lock for as long as it runs (shared: its
folds may run at once in several processes). A duplicate's ``trial.json`` names the trial it repeats
(``duplicate_of``). When that trial no longer runs, the duplicate reports its score on the folds asked (Optuna's
documented pattern for a repeated sample: tell the study the same value) and returns it; while it runs, the
duplicate returns at once with no score (it never holds a trial slot waiting; the engine counts it stopped, and
tells the sampler the original's score once the original has one). A duplicate of a trial stopped early or failed
has no score either, and is no observation for the sampler (FAIL: TPE skips it; PRUNED would rank the config
below every other trial). ``trials.csv`` lists duplicates with that status
and the score their original ends with (a retry or resume of the original included); they count no fold of their
own, so they are never the default, never promoted and never selected. The planner default is the trial whose
config is the default point's, whatever values drew it.

Configs are compared as they train (:func:`training_identity`): ``optimizer: auto`` resolved by the fold's planned
iterations (AdamW for a short schedule, SGD for a long one) and no learning rate as that optimizer's default, so an
``auto`` trial that becomes AdamW and an ``adamw`` trial are one training. Without a fold budget the planned
iterations are the config's own and ``auto`` resolves at the claim; a budgeted fold plans them from its timed
probe, so an ``auto`` trial there is checked again when its first fold's schedule is laid out (:func:`settle`): an
earlier trial with that training makes it a duplicate then, with what any duplicate gets.
"""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from typing import Any

from automed.artifacts import write_json_atomic
from automed.errors import ArtifactError
from automed.plan.schema import Plan
from automed.search.context import Report, SweepContext, trial_dir
from automed.search.space import SearchSpace, resolve
from automed.search.trial_records import RESULT, read_result, read_trial
from automed.train.config import TrainConfig, resolve_optimizer
from automed.workdir import flocked

CLAIMS = ".claims.lock"  # in the sweep dir (trials/ holds trial folders only): held while a trial claims its config
RUNNING = (
    ".running"  # in a trial's folder: held (shared) while it runs; a duplicate takes its result when free
)


def claim(
    ctx: SweepContext, key: str, values: dict[str, Any], plan: Plan, running: contextlib.ExitStack
) -> tuple[Path, TrainConfig, str | None]:
    """The trial's folder, its frozen config, and the earlier trial whose config it has (None: the trial is that
    config's own, and ``running`` holds its ``.running`` lock until the caller's stack closes)."""
    td = trial_dir(ctx, key)
    space = SearchSpace.model_validate(ctx.space)
    base = TrainConfig.model_validate(ctx.base_config)
    config = resolve(space, base, plan, values)
    dumped = config.model_dump(mode="json")
    identity = training_identity(config, _planned(ctx, config))
    tfile = td / "trial.json"
    td.parent.mkdir(parents=True, exist_ok=True)
    with flocked(Path(ctx.sweep_dir) / CLAIMS):
        if tfile.is_file():  # a restarted trial (or another fold of it) keeps what it was
            saved = read_trial(
                tfile, config=True
            )  # a damaged one is refused: it is the config the trial trained
            if saved["config"] != dumped:
                raise ArtifactError.single(
                    tfile,
                    "a restarted trial must have the config it started with",
                    f"sampled values {values}",
                    "start the sweep in a new work dir",
                )
            original = saved.get("duplicate_of")
        else:
            original = _same_training(td.parent, dumped, identity)
            default = bool(ctx.default_point) and original is None
            if default:
                planner = resolve(space, base, plan, ctx.default_point)
                same = identity is not None and identity == training_identity(planner, _planned(ctx, planner))
                default = same or dumped == planner.model_dump(mode="json")
            td.mkdir(exist_ok=True)
            write_json_atomic(
                tfile,
                {
                    "key": key,
                    "values": values,
                    "is_default": default,
                    "config": dumped,
                    "digest": config.digest(),
                    **({"identity": identity} if identity is not None else {}),
                    **({"duplicate_of": original} if original else {}),
                },
            )
        if original is None:
            running.enter_context(flocked(td / RUNNING, fcntl.LOCK_SH))
    return td, config, original


def training_identity(config: TrainConfig, iterations: int | None) -> dict[str, Any] | None:
    """What ``config`` trains: its dump with the optimizer and initial learning rate it resolves to at ``iterations``
    planned iterations (:func:`~automed.train.config.resolve_optimizer`). None: ``auto`` whose iterations are not
    known yet (a budgeted fold plans them from its timed probe)."""
    if config.optimizer == "auto" and iterations is None:
        return None
    name, lr, _ = resolve_optimizer(config, iterations or 0)  # an explicit optimizer ignores the iterations
    return {**config.model_dump(mode="json"), "optimizer": name, "learning_rate": lr}


def _planned(ctx: SweepContext, config: TrainConfig) -> int | None:
    """A fold's planned iterations when known before it trains: the config's own without a fold budget."""
    return config.epochs * config.iterations_per_epoch if ctx.fold_budget_s is None else None


def _identity_of(t: dict[str, Any]) -> dict[str, Any] | None:
    """A claimed trial's training identity: recorded, else (a trial.json written before it was) its explicit
    optimizer's."""
    if t.get("identity") is not None:
        return dict(t["identity"])
    return training_identity(TrainConfig.model_validate(t["config"]), None)


def _same_training(
    trials: Path, config: dict[str, Any] | None, identity: dict[str, Any] | None, besides: str = ""
) -> str | None:
    """The trial (not itself a duplicate, nor ``besides``) that claimed ``config``, or a config that trains as
    ``identity`` says, first, if any."""
    for tfile in sorted(trials.glob("*/trial.json")):
        t = read_trial(tfile, config=True)  # a damaged one is refused, as everywhere the sweep reads it
        if t.get("duplicate_of") or t["key"] == besides:
            continue
        if t["config"] == config or (identity is not None and _identity_of(t) == identity):
            return str(t["key"])
    return None


class SameTraining(Exception):  # noqa: N818  (an outcome that ends training, not an error)
    """Raised in a trial whose ``auto`` optimizer resolved to the training of ``original``: it stops and is that
    trial's duplicate (:func:`settle`)."""

    def __init__(self, original: str) -> None:
        super().__init__(f"trains as trial {original}")
        self.original = original


def settle(ctx: SweepContext, key: str, optimizer: str) -> str | None:
    """The second check of an ``auto`` trial, once its first fold resolved ``optimizer``: records its training
    identity in its ``trial.json`` and returns the trial that claimed that training before (None: none, it trains
    on). That trial is then the original of this one (``duplicate_of``) and of this one's duplicates, and the
    planner default if this one was."""
    tfile = trial_dir(ctx, key) / "trial.json"
    with flocked(Path(ctx.sweep_dir) / CLAIMS):
        saved = read_trial(tfile, config=True)
        if (
            saved.get("identity") is not None
        ):  # settled before: by another fold of it running at once, or a restart
            return str(saved["duplicate_of"]) if saved.get("duplicate_of") else None
        config = TrainConfig.model_validate(saved["config"]).model_copy(update={"optimizer": optimizer})
        identity = training_identity(config, None)
        original = _same_training(tfile.parent.parent, None, identity, besides=key)
        update: dict[str, Any] = {"identity": identity}
        if original is not None:
            update.update(duplicate_of=original, is_default=False)
            if saved.get("is_default"):  # the default's training is the original's
                ofile = tfile.parent.parent / original / "trial.json"
                write_json_atomic(ofile, {**read_trial(ofile), "is_default": True})
            for dfile in tfile.parent.parent.glob("*/trial.json"):  # its own duplicates repeat the original
                dup = read_trial(dfile)
                if dup.get("duplicate_of") == key:
                    write_json_atomic(dfile, {**dup, "duplicate_of": original})
        write_json_atomic(tfile, {**saved, **update})
    return original


def reuse(
    ctx: SweepContext, key: str, original: str, folds: list[int], report: Report | None
) -> dict[str, Any]:
    """A duplicate's result: none of its own. When ``original`` no longer runs, its score on ``folds`` (reported to
    the engine as validated), or no score when it has not validated them all; while it runs, no score and
    ``pending`` at once: a duplicate never holds a trial slot waiting (the trials table gives it the score the
    original ends with, :func:`automed.search.report.trials_table`)."""
    otd = trial_dir(ctx, original)
    out: dict[str, Any] = {"key": key, "duplicate_of": original, "folds": {}, "n_folds_done": 0}
    try:
        with flocked(otd / RUNNING, fcntl.LOCK_EX | fcntl.LOCK_NB):
            result = read_result(otd / RESULT) or {}  # none, or damaged (recomputed): no score yet
    except BlockingIOError:  # the original runs (or runs another fold)
        return {**out, "pending": True}
    done = result.get("folds", {})
    if folds and all(str(f) in done for f in folds) and "score" in result:
        out["score"] = float(done[str(folds[0])]["score"] if len(folds) == 1 else result["score"])
        if report is not None:
            report({"epoch": 0.0, "score": out["score"], "validated": 1.0})
    return out
