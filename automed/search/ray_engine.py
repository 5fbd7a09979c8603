"""The Ray Tune engine of ``automed sweep``: one machine or an existing Ray cluster.

Searching = a ``Tuner`` with ``OptunaSearch`` (seeded TPE or random, the planner's defaults enqueued first) and an
``ASHAScheduler`` on the per-epoch EMA pseudo-Dice. Evaluating fixed configs (promotion, grids) = a ``Tuner`` over
``tune.grid_search`` of trial keys. Tuner state lives in ``SWEEP/ray/<stage>`` so ``--resume`` restores it; trial
state lives in the trial's own folder (see :mod:`automed.workflow.trial`), so a restarted trial continues its
fold from its latest checkpoint. Token authentication: clusters made by ``ray start`` (Ray 2.60) require it where a
token exists; a driver given ``HOST:PORT`` then needs ``RAY_AUTH_MODE=token`` and the token in its environment
(``--ray-address auto`` finds it); see :mod:`automed.search.ray_connect`.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from automed.artifacts import write_json_atomic
from automed.errors import ConfigError, Problem
from automed.search.context import Objective, SweepContext
from automed.search.engine import ENGINES, Engine, SearchSpec, TrialOutcome, Unit
from automed.search.ray_connect import connect
from automed.search.ray_hooks import budget_outcomes, quiet_incomplete_trials, sweep_place
from automed.search.ray_results import outcomes as stage_outcomes
from automed.search.ray_session import private_temp
from automed.search.space import SearchSpace, choice_label, decode, suggest


class _DefineByRun:
    """Picklable define-by-run space for OptunaSearch (Tune saves the searcher with the experiment)."""

    def __init__(self, space: dict[str, Any]) -> None:
        self.space = space

    def __call__(self, trial: Any) -> None:
        suggest(SearchSpace.model_validate(self.space), trial)


def _search_trainable(
    config: dict[str, Any], objective: Objective, ctx: SweepContext, folds: list[int]
) -> None:
    from ray import tune

    key = tune.get_context().get_trial_id()
    space = SearchSpace.model_validate(ctx.space)
    values = decode(space, {k: v for k, v in config.items() if not k.startswith("__")})
    told: list[dict[str, float]] = []

    def report(m: dict[str, float]) -> None:
        told.append(m)
        tune.report(m)

    objective(ctx, key, values, folds, report)
    if not told:
        # a duplicate that took no score (its original still runs, or ended unvalidated): Tune ends a trial that
        # reported nothing with a result of its config alone and refuses it for lacking the metric ("Trial returned
        # a result which did not include the specified metric(s) `score`", seen resuming a killed sweep), which
        # ended the whole sweep; no score (NaN) at epoch 0, which neither ASHA nor the searcher takes
        tune.report({"epoch": 0.0, "score": math.nan})


def _fixed_trainable(config: dict[str, Any], objective: Objective, ctx: SweepContext) -> None:
    from ray import tune

    key, values, folds = config["__trial"]
    out = objective(ctx, key, values, folds, None)
    tune.report({"epoch": 0.0, "score": float(out.get("score", 0.0)), "validated": 1.0})


def _run_task(fn: Callable[[Any], Any], arg: Any) -> Any:
    """Run on one node: ``fn(arg)``."""
    return fn(arg)


def _probe(paths: list[str], writable: str) -> dict[str, Any]:
    """Run on one node: can it read the dataset, and write and lock files in the sweep dir?"""
    import fcntl
    import socket

    problems = []
    for p in paths:
        if not os.access(p, os.R_OK) or not Path(p).exists():
            problems.append(f"cannot read {p}")
    try:
        with tempfile.NamedTemporaryFile(dir=writable, prefix=".node-probe-") as fh:
            try:  # the work-dir locks and the trials' config claims (an NFS mount without lock support: ENOLCK)
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            except OSError as exc:
                problems.append(
                    f"cannot lock files in {writable} ({exc.strerror}): mount it with lock support"
                )
    except OSError as exc:
        problems.append(f"cannot write {writable} ({exc.strerror})")
    return {"host": socket.gethostname(), "problems": problems}


class RayEngine(Engine):
    name = "ray"

    def __init__(
        self,
        address: str | None,
        resources: dict[str, float],
        temp_dir: str | None = None,
        show_progress: bool = True,
    ) -> None:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's own tables would interleave with ours
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        # a failed trial is said once, in the sweep's summary (its traceback in its failed.json): not by Tune at each
        # attempt, nor again in its list of trials that did not complete
        os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
        quiet_incomplete_trials()
        import ray

        super().__init__(address, resources, temp_dir, show_progress)
        self.own_cluster = not (address or os.environ.get("RAY_ADDRESS"))
        self.own_temp: str | None = None
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if self.own_cluster:
            kwargs["num_cpus"] = os.cpu_count() or 1
            kwargs["_node_ip_address"] = "127.0.0.1"  # automed's own cluster listens on loopback only
            # trials at the priority of the command that started them, as a local training runs: Ray's default
            # (nice 15) left them a few percent of the CPU beside any other busy process, so a budgeted trial trained
            # a fraction of its iterations (a niceness the user asked Ray for, RAY_worker_niceness, is kept)
            if "RAY_worker_niceness" not in os.environ:
                kwargs["_system_config"] = {"worker_niceness": 0}
            # Ray's session files (logs naming paths, object spill) go to a private folder removed at close, not to
            # a /tmp/ray that outlives the run; short, as its Unix sockets' paths are limited to 107 bytes
            if not (temp_dir or ray.is_initialized()):
                self.own_temp = private_temp()
            # Ray opens its own folder to everyone (0777): inside ours, only this user reaches it
            kwargs["_temp_dir"] = temp_dir or (str(Path(self.own_temp, "r")) if self.own_temp else None)
        if not ray.is_initialized():
            try:
                if self.own_cluster:
                    ray.init(address=address, **kwargs)
                else:  # a refused connection is a ConfigError saying what to set
                    connect(address, **kwargs)
            except BaseException:
                if self.own_temp:
                    shutil.rmtree(self.own_temp, ignore_errors=True)
                raise

    def concurrency(self) -> int:
        import ray

        total = ray.cluster_resources()
        n = int(total.get("CPU", 1) // max(self.resources.get("cpu", 1), 1e-3))
        if self.resources.get("gpu", 0) > 0:
            n = min(n, int(total.get("GPU", 0) // self.resources["gpu"]))
        return max(1, n)

    def check_nodes(self, readable: list[str], writable: str) -> list[str]:
        """Probe every alive node; raise a ConfigError naming each node that cannot reach the shared paths."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        probe = ray.remote(num_cpus=0)(_probe)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        refs = [
            probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
                readable, writable
            )
            for n in nodes
        ]
        out = ray.get(refs, timeout=120)
        problems = [
            Problem(
                f"node {n['NodeManagerAddress']} ({o['host']})",
                "every Ray node must read the dataset and write the sweep dir (a shared file system)",
                "; ".join(o["problems"]),
                "mount the same paths on every node (NFS or similar), or pass paths that exist there",
            )
            for n, o in zip(nodes, out, strict=True)
            if o["problems"]
        ]
        if problems:
            raise ConfigError(problems, "the cluster cannot run this sweep")
        return [str(n["NodeManagerAddress"]) for n in nodes]

    def _tuner_path(self, ctx: SweepContext, stage: str) -> Path:
        return Path(ctx.sweep_dir) / "ray" / stage

    def _run_config(
        self, ctx: SweepContext, stage: str, retries: int, total: int, budgeted: bool = False
    ) -> Any:
        """``budgeted``: the stage has a time budget, read from ``ray/<stage>_budget.json`` (:meth:`_budget`), which
        its stopper marks the trials it stops by."""
        from ray import tune

        from automed.search.ray_tune_hooks import BudgetMarks, BudgetStopper, TrialProgress

        callbacks: list[Any] = [TrialProgress(stage, total, self.show_progress, ctx.sweep_dir)]
        stop = None
        if budgeted:  # not TuneConfig's time_budget_s: a restore keeps its first value, and it tells no one
            stop = BudgetStopper(ctx.sweep_dir, stage)
            callbacks.append(BudgetMarks(ctx.sweep_dir, stage))
        return tune.RunConfig(
            name=stage,
            storage_path=str(Path(ctx.sweep_dir) / "ray"),
            failure_config=tune.FailureConfig(max_failures=retries),
            verbose=0,
            stop=stop,
            callbacks=callbacks,
        )

    @staticmethod
    def _budget(ctx: SweepContext, stage: str, budget_s: float | None) -> None:
        """This driver's time budget for ``stage`` (None: none), read by its stopper, a restored one included."""
        ray_dir = Path(ctx.sweep_dir) / "ray"
        ray_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(ray_dir / f"{stage}_budget.json", {"budget_s": budget_s})

    def _fit(self, tuner_fn: Any, trainable: Any, ctx: SweepContext, stage: str, resume: bool) -> Any:
        """A new Tuner, or the stage's Tuner restored (``resume``); its hooks, however Tune restored them, read and
        write in this driver's sweep dir (a sweep dir moved or copied whole before the resume)."""
        from ray import tune

        # Ctrl-C must stop the sweep as it stops the Optuna engine's (KILLED, the stage not done, exit 130): Tune's own
        # handler ended the run quietly and returned, and the sweep marked the stage done and went on promoting
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        path = self._tuner_path(ctx, stage)
        if resume and tune.Tuner.can_restore(str(path)):
            tuner = tune.Tuner.restore(
                str(path), trainable=trainable, resume_unfinished=True, resume_errored=True
            )
        else:
            tuner = tuner_fn()
        with sweep_place(ctx.sweep_dir):
            return tuner.fit()

    def search(
        self,
        objective: Objective,
        ctx: SweepContext,
        space: SearchSpace,
        points: list[dict[str, Any]],
        spec: SearchSpec,
        resume: bool,
    ) -> list[TrialOutcome]:
        from ray import tune
        from ray.tune.schedulers import FIFOScheduler

        from automed.search.ray_tune_hooks import RecordingStops, TruthfulSearch

        ctx = self.trial_context(ctx)
        trainable = tune.with_resources(
            tune.with_parameters(_search_trainable, objective=objective, ctx=ctx, folds=spec.folds),
            self._ray_resources(),
        )
        sampler = self.sampler(spec)
        scheduler: Any = (
            RecordingStops(
                ctx.sweep_dir,
                time_attr="epoch",
                max_t=spec.max_epochs,
                grace_period=spec.grace_epochs,
                reduction_factor=spec.reduction_factor,
            )
            if spec.scheduler == "asha"
            else FIFOScheduler()
        )

        def make() -> Any:
            search = TruthfulSearch(
                ctx.sweep_dir,
                space=_DefineByRun(space.model_dump(mode="json")),
                metric="score",
                mode="max",
                points_to_evaluate=[{k: choice_label(v) for k, v in pt.items()} for pt in points] or None,
                sampler=sampler,
            )
            return tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    metric="score",
                    mode="max",
                    search_alg=search,
                    scheduler=scheduler,
                    num_samples=spec.n_trials,
                    max_concurrent_trials=spec.concurrency,
                ),
                run_config=self._run_config(ctx, "search", spec.retries, spec.n_trials, budgeted=True),
            )

        self._budget(ctx, "search", spec.time_budget_s)
        outcomes = stage_outcomes(
            self._fit(make, trainable, ctx, "search", resume), self._tuner_path(ctx, "search")
        )
        return budget_outcomes(ctx, outcomes, Path(ctx.sweep_dir) / "ray" / "search_budget_reached.json")

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
        """Run fixed (trial, folds) units (promotion, grids), ``concurrency`` at a time; none for no units (a Tune
        grid of no points had failed with "IndexError: pop from empty list")."""
        if not units:
            return []
        from ray import tune

        ctx = self.trial_context(ctx)
        trainable = tune.with_resources(
            tune.with_parameters(_fixed_trainable, objective=objective, ctx=ctx), self._ray_resources()
        )

        def make() -> Any:
            return tune.Tuner(
                trainable,
                param_space={"__trial": tune.grid_search([list(u) for u in units])},
                tune_config=tune.TuneConfig(metric="score", mode="max", max_concurrent_trials=concurrency),
                run_config=self._run_config(ctx, stage, retries, len(units)),
            )

        fit = self._fit(make, trainable, ctx, stage, resume)
        return stage_outcomes(fit, self._tuner_path(ctx, stage), fixed=True)

    def _ray_resources(self) -> dict[str, float]:
        return {"cpu": self.resources.get("cpu", 1), "gpu": self.resources.get("gpu", 0)}

    def run_tasks(
        self,
        fn: Callable[[Any], Any],
        args: list[Any],
        watch: Callable[[dict[int, Any]], None] | None = None,
        every_s: float = 2.0,
    ) -> list[Any]:
        """``fn(arg)`` for every ``arg`` as a Ray task with the engine's per-unit resources (``--trial-resources``),
        as many at once as the cluster holds: the results, in order (the first task's error raised once all have
        ended). ``fn`` must be importable on every node (a module-level function of automed).

        ``watch``: called every ``every_s`` seconds while tasks run, and once they all have ended, with the tasks
        ended so far (their index in ``args``: the result, or the exception the task raised)."""
        import ray

        task = ray.remote(
            num_cpus=self.resources.get("cpu", 1.0), num_gpus=self.resources.get("gpu", 0.0), max_retries=0
        )(_run_task)
        refs = [task.remote(fn, a) for a in args]
        if watch is not None:
            pending, ended = list(refs), dict[int, Any]()
            while pending:
                ready, pending = ray.wait(pending, num_returns=len(pending), timeout=every_s)
                for ref in ready:
                    try:
                        ended[refs.index(ref)] = ray.get(ref)
                    except Exception as exc:  # raised below, in order, once every task has ended
                        ended[refs.index(ref)] = exc
                watch(ended)
        return list(ray.get(refs))

    def close(self) -> None:
        import ray

        if self.own_cluster and ray.is_initialized():
            ray.shutdown()
        if self.own_cluster and self.own_temp:
            shutil.rmtree(self.own_temp, ignore_errors=True)


ENGINES.add("ray", RayEngine)
