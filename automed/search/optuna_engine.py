"""The single-machine engine (``--engine optuna``): Optuna with a journal file, several local processes, no Ray.

Same search space, objective (:func:`automed.workflow.trial.run_trial`) and tracking as the Ray engine; ASHA becomes
Optuna's ``SuccessiveHalvingPruner`` on the same per-epoch score. The study lives in ``SWEEP/optuna/journal.log``
(Optuna's ``JournalFileBackend``: safe for several processes, faster than SQLite). Trials left RUNNING by a killed
driver are marked failed on ``--resume`` and enqueued again under the same key, so they continue from their fold
checkpoint in their own folder.
"""

from __future__ import annotations

import os
import socket
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Literal

from automed.errors import ConfigError, Problem
from automed.parallel import process_pool
from automed.search.context import Objective, Report, SweepContext, trial_dir
from automed.search.engine import ENGINES, Engine, SearchSpec, TrialOutcome, Unit
from automed.search.report import mark_stopped
from automed.search.space import SearchSpace, choice_label, suggest
from automed.workdir import flocked

KEY_ATTR = "automed_key"
DUPLICATE_ATTR = "duplicate_of"  # the key of the trial a duplicate repeats


def _storage(ctx: SweepContext) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    folder = Path(ctx.sweep_dir) / "optuna"
    folder.mkdir(exist_ok=True)
    return JournalStorage(JournalFileBackend(str(folder / "journal.log")))


def _study(ctx: SweepContext, spec: SearchSpec, worker: int = 0) -> Any:
    """The shared study; ``worker``: the process's index, which offsets its sampler's seed (processes seeded alike
    would draw the same configurations), as do the trials already in the study (a resumed search draws new points,
    not the killed run's first ones again)."""
    import optuna

    pruner: Any = (
        optuna.pruners.SuccessiveHalvingPruner(
            min_resource=spec.grace_epochs, reduction_factor=spec.reduction_factor
        )
        if spec.scheduler == "asha"
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        study_name="search",
        storage=_storage(ctx),
        direction="maximize",
        sampler=Engine.sampler(spec, worker),
        pruner=pruner,
        load_if_exists=True,
    )
    if started := len(study.get_trials(deepcopy=False)):
        study.sampler = Engine.sampler(spec, worker, started)
    return study


def _with_retries(
    objective: Objective,
    ctx: SweepContext,
    key: str,
    values: dict[str, Any],
    folds: list[int],
    retries: int,
    report: Report | None = None,
) -> dict[str, Any]:
    import optuna

    for attempt in range(retries + 1):
        try:
            return objective(ctx, key, values, folds, report)
        except optuna.TrialPruned:
            raise
        except Exception:
            if attempt == retries:
                raise
    raise AssertionError("unreachable")


def _search_worker(
    objective: Objective, ctx: SweepContext, spec: SearchSpec, quota: int, worker: int
) -> None:
    """One process: run ``quota`` trials of the shared study (or until time is up)."""
    import optuna

    # not Optuna's "Trial N failed ... because of the following error" and traceback: the sweep's summary says a
    # failed trial once (its traceback in its failed.json)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = _study(ctx, spec, worker)
    space = SearchSpace.model_validate(ctx.space)

    def run(trial: optuna.Trial) -> float:
        key = str(trial.user_attrs.get(KEY_ATTR) or f"t{trial.number:04d}")
        trial.set_user_attr(KEY_ATTR, key)
        values = suggest(space, trial)
        last = {"step": -1}

        def report(m: dict[str, float]) -> None:
            step = int(m["epoch"])
            if m.get("validated") or step <= last["step"]:
                return
            last["step"] = step
            trial.report(m["score"], step)
            if trial.should_prune():
                mark_stopped(trial_dir(ctx, key), "scheduler", step)  # not the budget's stop (trials.csv)
                raise optuna.TrialPruned()

        try:
            out = _with_retries(objective, ctx, key, values, spec.folds, spec.retries, report)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            trial.set_user_attr("error", " ".join(str(exc).split())[:1000])
            raise
        if out.get("duplicate_of"):
            trial.set_user_attr(DUPLICATE_ATTR, str(out["duplicate_of"]))
            if "score" not in out:  # its original runs, or ended without a score: told later, or never
                raise _NoObservationError()
        return float(out["score"])

    def resolve(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        _tell_duplicates(ctx, study)

    study.optimize(run, n_trials=quota, timeout=spec.time_budget_s, catch=(Exception,), callbacks=[resolve])


class _NoObservationError(Exception):
    """A duplicate with no score of its own yet: the trial ends FAIL (TPE skips it), not PRUNED (TPE would rank
    it below every trial, its config judged worst before its original ended)."""


def _tell_duplicates(ctx: SweepContext, study: Any) -> None:
    """Each duplicate that ended without a score (:class:`_NoObservationError`) whose original now has one is told that
    score: a COMPLETE trial under the duplicate's key supersedes its FAIL one. Run after every trial ends, in the
    process that ran it, so whichever of a duplicate and its original ends last tells it; under a lock, so two
    processes never tell it twice. A duplicate of a trial that ends without a score stays FAIL: no observation."""
    import optuna
    from optuna.trial import TrialState

    with flocked(Path(ctx.sweep_dir) / "optuna" / "duplicates.lock"):
        latest: dict[str, Any] = {}
        for t in study.get_trials(deepcopy=False):
            if KEY_ATTR in t.user_attrs and t.state.is_finished():
                latest[t.user_attrs[KEY_ATTR]] = t
        for t in latest.values():
            original = latest.get(t.user_attrs.get(DUPLICATE_ATTR, ""))
            if t.state == TrialState.FAIL and original is not None and original.state == TrialState.COMPLETE:
                study.add_trial(
                    optuna.trial.create_trial(
                        params=t.params,
                        distributions=t.distributions,
                        value=original.value,
                        user_attrs=t.user_attrs,
                    )
                )


def _evaluate_one(
    objective: Objective, ctx: SweepContext, key: str, values: dict[str, Any], folds: list[int], retries: int
) -> TrialOutcome:
    try:
        _with_retries(objective, ctx, key, values, folds, retries)
    except Exception as exc:
        return TrialOutcome(key, "error", " ".join(str(exc).split())[:1000])
    return TrialOutcome(key, "complete")


class OptunaEngine(Engine):
    name = "optuna"

    def __init__(
        self,
        address: str | None,
        resources: dict[str, float],
        temp_dir: str | None = None,
        show_progress: bool = True,
    ) -> None:
        super().__init__(address, resources, temp_dir, show_progress)
        if address:
            raise ConfigError.single(
                "--ray-address",
                "the optuna engine runs on this machine only",
                address,
                "use --engine ray for a cluster, or drop --ray-address",
            )

    def concurrency(self) -> int:
        return max(1, int((os.cpu_count() or 1) // max(self.resources.get("cpu", 1), 1e-3)))

    def check_nodes(self, readable: list[str], writable: str) -> list[str]:
        problems = [
            Problem(p, "the sweep must read the dataset and its work dir", "not readable", "check the path")
            for p in readable
            if not os.access(p, os.R_OK)
        ]
        if not os.access(writable, os.W_OK):
            problems.append(
                Problem(writable, "the sweep must write its work dir", "not writable", "choose another -o")
            )
        if problems:
            raise ConfigError(problems, "the sweep cannot start")
        return [socket.gethostname()]

    def _pool(self, n: int) -> ProcessPoolExecutor:
        return process_pool(n, "spawn")

    def search(
        self,
        objective: Objective,
        ctx: SweepContext,
        space: SearchSpace,
        points: list[dict[str, Any]],
        spec: SearchSpec,
        resume: bool,
    ) -> list[TrialOutcome]:
        import optuna
        from optuna.trial import TrialState

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        ctx = self.trial_context(ctx)
        study = _study(ctx, spec)
        requeued: set[str] = set()
        if not study.trials:
            for pt in points:
                study.enqueue_trial({k: choice_label(v) for k, v in pt.items()})
        elif resume:  # trials a killed driver left RUNNING: fail them, run them again under their key
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                key = str(t.user_attrs.get(KEY_ATTR, f"t{t.number:04d}"))
                study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                study.enqueue_trial(t.params, user_attrs={KEY_ATTR: key})
                requeued.add(key)
        finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        done = {str(t.user_attrs.get(KEY_ATTR)) for t in study.get_trials(deepcopy=False, states=finished)}
        remaining = max(0, spec.n_trials - len(done - requeued))
        n = max(1, min(spec.concurrency, remaining))
        quotas = [remaining // n + (1 if w < remaining % n else 0) for w in range(n)]
        with self._pool(n) as pool:  # each process runs its share, so exactly n_trials run in all
            futures = [
                pool.submit(_search_worker, objective, ctx, spec, q, w) for w, q in enumerate(quotas) if q > 0
            ]
            for f in futures:
                f.result()
        out = []
        state_map: dict[TrialState, Literal["complete", "stopped", "error"]] = {
            TrialState.COMPLETE: "complete",
            TrialState.PRUNED: "stopped",
            TrialState.FAIL: "error",
        }
        latest: dict[str, Any] = {}
        for t in study.get_trials(deepcopy=False):
            if KEY_ATTR in t.user_attrs and t.state in state_map:
                latest[t.user_attrs[KEY_ATTR]] = t  # a re-run of a key supersedes its failed attempt
        for key, t in latest.items():
            status = state_map[t.state]
            if DUPLICATE_ATTR in t.user_attrs and status == "error":  # no score to tell: stopped, not failed
                status = "stopped"
            out.append(TrialOutcome(key, status, str(t.user_attrs.get("error", ""))))
        return out

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
        """Run fixed (trial, folds) units (promotion, grids), ``concurrency`` processes at a time."""
        ctx = self.trial_context(ctx)
        with self._pool(max(1, min(concurrency, len(units)))) as pool:
            futures = [
                pool.submit(_evaluate_one, objective, ctx, k, v, folds, retries) for k, v, folds in units
            ]
            return [f.result() for f in futures]


ENGINES.add("optuna", OptunaEngine)
