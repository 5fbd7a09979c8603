"""The stages of a sweep (grid; search with early stopping; promotion to every fold), the budget shares and the
MLflow bookkeeping they need. :mod:`automed.workflow.sweep` runs them in order."""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import automed.search.optuna_engine
import automed.search.ray_engine  # noqa: F401  (registers the "ray" engine)
from automed._version import __version__
from automed.artifacts import write_json_atomic
from automed.errors import ConfigError
from automed.fingerprint.schema import Fingerprint
from automed.plan.schema import Plan
from automed.privacy import public_uri, strip_credentials
from automed.search.context import SweepContext
from automed.search.engine import Engine, SearchSpec, TrialOutcome
from automed.search.grid import distinct_points
from automed.search.report import trials_table
from automed.search.space import SearchSpace, resolve
from automed.search.trial_records import RESULT, TRIAL, read_result, read_trial
from automed.tracking import Tracker, git_commit, resolve_uri
from automed.train.config import TrainConfig
from automed.workflow.disclosure import public_options, redactor_for
from automed.workflow.train_options import DEFAULT_RESOURCES
from automed.workflow.trial import run_trial

log = logging.getLogger(__name__)

STATE_FILE = "sweep.json"
# The sweep state's compatibility number, sweep.json's ``state_version`` (``automed_version`` stays fixed through
# development, so it cannot tell two states apart). Bump it when a saved sweep would be read otherwise than the code
# that wrote it meant: a SweepOptions field removed, renamed or given another meaning, a sweep.json key this code
# needs added, or a stage that records or re-enters otherwise (its ``stages`` keys). An option added with a default
# that keeps a saved sweep's behaviour needs no bump. A sweep.json without the key is version 1 (written before it
# was recorded). ``sweep_resume`` refuses another version.
STATE_VERSION = 1
FINAL_RESERVE_S = 30.0


@dataclass
class SweepOptions:
    space: str | None = None
    grid: str | None = None
    trials: int = 8
    budget_s: float | None = None
    folds: int = 5
    promote: int = 2
    screen: bool = True
    sampler: str = "tpe"
    scheduler: str = "asha"
    grace_epochs: int = 2
    engine: str = "ray"
    ray_address: str | None = None
    trial_resources: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    seed: int = 0
    retries: int = 1
    tracking_uri: str | None = None
    preset: str | None = None
    device: str | None = None
    workers: int | None = None
    validation_tta: bool = False
    keep_case_ids: bool = False  # case IDs as they are in MLflow (default: keyed pseudonyms, automed.privacy)
    max_voxels: int | None = None  # --max-voxels: the largest image verify lets through (None: its default)


@dataclass
class SweepResult:
    workdir: Path
    table: Any
    best: dict[str, Any] | None
    default: dict[str, Any] | None
    verdict: str
    outcomes: list[TrialOutcome]
    failures: list[str] = field(
        default_factory=list
    )  # one line per failed trial (sweep_verdict.failure_lines)


def parse_resources(text: str) -> dict[str, float]:
    """``cpu=1,gpu=0.5`` -> ``{"cpu": 1.0, "gpu": 0.5}``."""
    out = dict(DEFAULT_RESOURCES)
    seen: set[str] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        k, _, v = part.partition("=")
        try:
            value = float(v)
        except ValueError:
            value = -1.0
        bad = not math.isfinite(value) or value < 0 or (k == "cpu" and value <= 0) or k in seen
        seen.add(k)
        if k not in out or bad:
            raise ConfigError.single(
                "--trial-resources",
                "resources are cpu=N (N > 0) and gpu=F (F >= 0, fractions allowed), each once, comma-separated",
                part,
                "e.g. --trial-resources cpu=2,gpu=0.5",
            )
        out[k] = value
    return out


def check_gpus(opts: SweepOptions) -> None:
    """A GPU share per trial that this machine's GPUs cannot give is refused before any work when the sweep runs here
    (no ``--ray-address``, no ``RAY_ADDRESS``): Ray would wait for the GPU forever. A cluster's GPUs are its own. So
    is a ``--device`` this machine lacks (every trial had failed on it, one by one)."""
    if opts.ray_address or os.environ.get("RAY_ADDRESS"):
        return
    if opts.device is not None:
        from automed.train.device import usable_device

        usable_device(opts.device)
    gpu = opts.trial_resources.get("gpu", 0.0)
    if (
        gpu <= 0 or opts.engine == "optuna"
    ):  # the optuna engine's processes take no GPU share (only Ray waits)
        return
    import torch

    have = torch.cuda.device_count()
    if have < gpu:
        raise ConfigError.single(
            "--trial-resources",
            "a trial's GPU share must be one this machine has (Ray would wait for it forever)",
            f"gpu={gpu:g} asked, {have} GPU(s) on this machine",
            "drop gpu= (or lower it), or run on a machine with GPUs, or pass --ray-address of a cluster with "
            "GPUs",
        )


def needed_variants(space: SearchSpace, base: TrainConfig, plan: Plan) -> tuple[list[str], list[TrainConfig]]:
    """Configurations the space can sample (all must be planned) and the normalization variants to preprocess."""
    configs = {base.configuration}
    norms: set[str | None] = {base.normalization}
    for name, p in space.parameters.items():
        target = space.target(name)
        if target == "configuration":
            configs |= {str(c) for c in p.options()}
        elif target == "normalization":
            norms |= {str(c) for c in p.options()}
    if "configuration" in space.fixed:
        configs = {str(space.fixed["configuration"])}
    missing = sorted(c for c in configs if c not in plan.configurations)
    if missing:
        raise ConfigError.single(
            "configuration",
            f"every configuration a sweep can sample must be planned (planned: {sorted(plan.configurations)})",
            missing,
            "drop them from the search space, or plan them (`--preset default` plans 2d and 3d_fullres)",
        )
    variants = [
        base.model_copy(update={"configuration": c, "normalization": n})
        for c in sorted(configs)
        for n in norms
    ]
    return sorted(configs), variants


def grid_space(strategy: str) -> SearchSpace:
    from automed.search.grid import grid_as_space

    return grid_as_space(Path(strategy))


def open_tracking(
    wd: Path,
    state: dict[str, Any],
    opts: SweepOptions,
    plan: Plan,
    space: SearchSpace,
    base: TrainConfig,
    ds_source: str,
) -> Any:
    uri = resolve_uri(opts.tracking_uri or state.get("uri"))
    # the driver creates the store and experiment before any trial
    tracker = Tracker(uri, plan.dataset_name, redactor_for([wd], keep_case_ids=opts.keep_case_ids))
    if state.get("sweep_run_id") is None:
        fp = Fingerprint.load(wd / "fingerprint.json")
        run = tracker.start_run(
            f"sweep-{space.name}",
            tags={
                "automed.version": __version__,
                "git.commit": git_commit(),
                "dataset.fingerprint": fp.hash,
                "host": socket.gethostname(),
                "sweep.engine": opts.engine,
            },
        )
        tracker.log_params(
            run,
            {
                "options": {**public_options(asdict(opts)), "tracking_uri": public_uri(uri)},
                "space": space.model_dump(mode="json"),
                "base": base.model_dump(mode="json"),
            },
        )
        tracker.log_dataset(run, plan.dataset_name, fp.hash, ds_source)
        for name in ("fingerprint.json", "plan.json", "splits.json"):
            tracker.log_artifact(run, wd / name)
        state.update(uri=strip_credentials(uri), sweep_run_id=run, experiment=plan.dataset_name)
        write_json_atomic(wd / STATE_FILE, state)
    return tracker


TRIAL_START_S = 15.0  # a trial's start before its fold trains (process, data, network)
MIN_FOLD_S = 20.0  # the least a budgeted fold training is started with


def _fold_budget(
    opts: SweepOptions, n_first: int, n_second: int, folds_first: int, concurrency: int, left: float
) -> float | None:
    if opts.budget_s is None:
        return None
    return max(MIN_FOLD_S, _share(n_first * folds_first + n_second, concurrency, left))


def _search_time(stage_s: float, fold_s: float | None) -> float:
    """The screening stage's time: its share, but never less than its first wave of trials needs to finish their
    fold (the fold's budget, which holds its validation, and the start of a trial): with a small budget the share
    fell below the 20 s fold floor and every trial was stopped before it scored."""
    return max(stage_s, 1.1 * float(fold_s or 0.0) + TRIAL_START_S)


def _share(fold_trainings: int, concurrency: int, left: float) -> float:
    return 0.85 * left / max(1.0, fold_trainings / concurrency)


def _skipped(run: SweepRun, stage: str, units: list[tuple[str, dict[str, Any], list[int]]]) -> bool:
    """Whether a budgeted stage's ``units`` would start too late (each would get less than MIN_FOLD_S of the
    time left): then none starts, and the sweep's state and verdict say what was not run."""
    key = f"{stage}_skipped"
    if units and run.opts.budget_s is not None and _share(len(units), run.conc, run.left()) < MIN_FOLD_S:
        what = "promotion" if stage == "promote" else "the grid"
        trials = len({u[0] for u in units})
        run.state["stages"][key] = (
            f"the budget was spent before {what}: {len(units)} fold trainings of {trials} trial(s) not run "
            "(`automed sweep --resume WORKDIR --budget ...` runs them)"
        )
        run.save()
        return True
    run.state["stages"].pop(key, None)
    return False


def _units(
    wd: Path, trials: list[tuple[str, dict[str, Any]]], folds: list[int]
) -> list[tuple[str, dict[str, Any], list[int]]]:
    """(trial, fold) units still to run: folds of one trial run at once when slots are free, so a stage does not
    wait on one trial's folds in sequence while other slots idle."""
    units = []
    for key, values in trials:
        result = read_result(wd / "trials" / key / RESULT)  # damaged: none, with a warning (it is recomputed)
        done = set(result["folds"]) if result is not None else set()
        units += [(key, values, [f]) for f in folds if str(f) not in done]
    return units


def _min_budget(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _mark_stopped(tracker: Any, sweep_run: str, outcomes: list[TrialOutcome]) -> None:
    """Trials the scheduler stopped or the budget timed out end as FINISHED with a tag (``screen.outcome``: stopped,
    timed out; Ray kills them mid-fold, which reads KILLED); failed ones as FAILED. A trial stopped before it logged
    anything has no run and gets none."""
    for o in outcomes:
        run = None if o.status == "complete" or not o.key else tracker.find_run(o.key, sweep_run)
        if run is None:
            continue
        status = "FINISHED" if o.status in ("stopped", "timed out") else "FAILED"
        rid = str(run.info.run_id)
        # the error is free text (paths, file names, a KeyError's case ID): redacted word by word
        error = {"error": tracker.redactor.message(o.error)[:500]} if o.error else {}
        tracker.set_tags(rid, {"screen.outcome": o.status, **error})
        for fold_run in tracker.client.search_runs(
            [tracker.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{rid}'"
        ):
            if fold_run.info.status != "FINISHED":
                tracker.set_tags(fold_run.info.run_id, {"screen.outcome": o.status})
                tracker.end_run(fold_run.info.run_id, status)
        tracker.end_run(rid, status)


@dataclass
class SweepRun:
    """One sweep in progress: its work dir, state, options, engine, context and clock."""

    wd: Path
    state: dict[str, Any]
    opts: SweepOptions
    engine: Engine
    ctx: SweepContext
    conc: int
    t0: float
    resume: bool

    def left(self) -> float:
        if not self.opts.budget_s:
            return math.inf
        return self.opts.budget_s - (time.perf_counter() - self.t0) - FINAL_RESERVE_S

    def save(self) -> None:
        write_json_atomic(self.wd / STATE_FILE, self.state)

    def timed(self, name: str, t: float) -> None:
        self.state.setdefault("timing", {})[f"{name}_s"] = time.perf_counter() - t


def stage_grid(run: SweepRun, space: SearchSpace, base: TrainConfig, plan: Plan) -> list[TrialOutcome]:
    from automed.search.grid import grid_points

    points = grid_points(space, base, plan)
    units = _units(run.wd, points, list(range(run.ctx.n_folds)))
    if _skipped(run, "grid", units):
        return []
    # the time left over the folds still to run; a resume keeps the folds comparable (the first run's share),
    # shorter only if the new budget cannot give them that much
    share = _fold_budget(run.opts, 0, len(units), 1, run.conc, run.left())
    first = run.state.get("fold_budget_s") if run.resume else None
    run.state["fold_budget_s"] = _min_budget(first, share)
    ctx = replace(run.ctx, fold_budget_s=run.state["fold_budget_s"])
    ts = time.perf_counter()
    out = run.engine.evaluate(run_trial, ctx, units, run.conc, run.opts.retries, run.resume, stage="grid")
    run.timed("grid", ts)
    return out


def search_points(
    run: SweepRun, space: SearchSpace, base: TrainConfig, plan: Plan, point: dict[str, Any]
) -> tuple[list[dict[str, Any]], int]:
    """The points enqueued before sampling and the number of trials. A finite space (categorical, bool and int
    parameters) with no more distinct configs than ``--trials`` is evaluated whole, each config once, the default's
    first (a sampler would draw some again and miss others); fewer trials than ``--trials`` are logged and noted for
    the verdict. Otherwise the default point, then ``--trials`` sampled."""
    found = distinct_points(space, base, plan, more_than=run.opts.trials)
    _note_partial_default(run, space, point, enqueued=found is None)
    if found is None:
        run.state["stages"].pop("search_capped", None)
        return ([point] if point else []), run.opts.trials
    default = resolve(space, base, plan, point).digest() if point else None
    # a default point the space's own points lack: enqueued as it is when complete (an int off the step grid, say);
    # a partial one (a value the choices lack) is left out, as a sampler would complete it into another point
    complete = all(n in point for n, p in space.parameters.items() if p.active(point))
    points = [v for d, v in found if d == default] or ([point] if point and complete else [])
    points = (points + [v for d, v in found if d != default])[: run.opts.trials]
    if len(points) < run.opts.trials:
        note = (
            f"the search space has {len(found)} distinct config(s): {len(points)} trial(s) evaluate each once "
            f"(not --trials {run.opts.trials})"
        )
        log.warning("%s", note)
        run.state["stages"]["search_capped"] = note
    return points, len(points)


def _note_partial_default(run: SweepRun, space: SearchSpace, point: dict[str, Any], enqueued: bool) -> None:
    """Say (log and verdict) which parameters the planner's default point leaves to the sampler: the base config's
    value is none the space holds (not among the choices, or unset such as an automatic learning rate). The first
    trial then samples them (or, in a finite space, is not enqueued), so no trial is the planner default."""
    missing = [n for n, p in space.parameters.items() if p.active(point) and n not in point]
    if not missing:
        run.state["stages"].pop("default_partial", None)
        return
    fixed = f"fixes {', '.join(sorted(point))} and " if point else ""
    first = "its first trial samples them" if enqueued and point else "it is not evaluated"
    note = (
        f"the planner's default point {fixed}leaves {', '.join(missing)} to the sampler (their default values are "
        f"none the space holds; give them a `default:`): {first}, so no trial is the planner default"
    )
    log.warning("%s", note)
    run.state["stages"]["default_partial"] = note


def stage_search(
    run: SweepRun, space: SearchSpace, base: TrainConfig, plan: Plan, point: dict[str, Any], tracker: Tracker
) -> list[TrialOutcome]:
    """Screen sampled trials (fold 0, or every fold with --no-screen) with early stopping."""
    opts, n_folds = run.opts, run.ctx.n_folds
    points, n_trials = search_points(run, space, base, plan, point)
    screen_folds = [0] if opts.screen else list(range(n_folds))
    n_promote = (opts.promote + 1) * (n_folds - 1) if opts.screen else 0
    if run.state.get("fold_budget_s") is None or (opts.budget_s is not None and not run.resume):
        run.state["fold_budget_s"] = _fold_budget(
            opts, n_trials, n_promote, len(screen_folds), run.conc, run.left()
        )
    run.ctx = replace(run.ctx, fold_budget_s=run.state["fold_budget_s"])
    if run.state["stages"].get("search"):
        return []
    share = n_trials * len(screen_folds) / max(1, n_trials * len(screen_folds) + n_promote)
    spec = SearchSpec(
        n_trials=n_trials,
        folds=screen_folds,
        concurrency=run.conc,
        sampler=opts.sampler,  # type: ignore[arg-type]
        scheduler=opts.scheduler,  # type: ignore[arg-type]
        seed=opts.seed,
        grace_epochs=opts.grace_epochs,
        time_budget_s=_search_time(run.left() * share, run.state["fold_budget_s"]) if opts.budget_s else None,
        retries=opts.retries,
    )
    ts = time.perf_counter()
    out = run.engine.search(run_trial, run.ctx, space, points, spec, run.resume)
    run.timed("search", ts)
    _mark_stopped(tracker, run.state["sweep_run_id"], out)
    run.state["stages"]["search"] = True
    run.save()
    return out


def stage_promote(run: SweepRun) -> list[TrialOutcome]:
    """The ``--promote`` best screened trials other than the planner default, and the default, train the remaining
    folds, so the verdict compares the best trial with the default at full CV (the default never takes a slot)."""
    n_folds = run.ctx.n_folds
    table = trials_table(run.wd, n_folds)
    if table.empty:
        return []
    screened = table[(table["folds_done"] >= 1) & ~table["default"]].sort_values(
        "fold0_score", ascending=False
    )
    screened = screened[screened["status"] != "failed"]  # a failed trial fails again: never promoted
    default = table[table["default"] & (table["status"] != "failed")]
    keys = list(screened["trial"][: run.opts.promote]) + list(default["trial"])
    chosen = [(key, read_trial(run.wd / "trials" / key / TRIAL)["values"]) for key in dict.fromkeys(keys)]
    units = _units(run.wd, chosen, list(range(n_folds)))
    if _skipped(run, "promote", units):  # a unit would get the 20 s floor and run past the budget
        return []
    share_s = _fold_budget(run.opts, 0, len(units), 1, run.conc, run.left())
    # promoted folds train as long as screened ones did (comparable CV), less only if time is short
    ctx = replace(run.ctx, fold_budget_s=_min_budget(share_s, run.state.get("fold_budget_s")))
    ts = time.perf_counter()
    resume = run.resume and bool(run.state["stages"].get("promote_started"))
    # saved before the engine starts: set only once it returned, it never reached sweep.json when the driver was
    # killed during promotion, and the resume started a fresh Tuner beside the first one's (a unit the kill cut
    # short ran again as a new Tune trial, the units finished before were left out of the outcomes)
    run.state["stages"]["promote_started"] = True
    run.save()
    out = run.engine.evaluate(run_trial, ctx, units, run.conc, run.opts.retries, resume)
    run.timed("promote", ts)
    return out
