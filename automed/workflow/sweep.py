"""``automed sweep``: plan once, search configs over folds with an engine, promote the best, report.

Policy (multi-fidelity): **screen, then promote.** Every sampled trial trains and validates fold 0 only; ASHA
stops weak ones early on their per-epoch EMA pseudo-Dice (rungs at ``grace``, ``grace*2``, ... epochs). The
``--promote`` best screened trials other than the default, and always the planner's default trial, then train the
remaining folds, and the winner is picked by full cross-validation Dice, so "best vs default" compares like with like
(and the verdict says so when the default was the only trial cross-validated). ``--no-screen``
trains every trial on all folds (the baseline the benchmark compares against). ``--grid`` evaluates every config
of a grid on all folds.

Work dir: the planning artifacts (shared by every trial through links), ``sweep.json`` (options, MLflow ids, state),
``trials/<key>/`` (one per trial, see :mod:`automed.workflow.trial`), ``ray/`` (Tune state for ``--resume``),
``trials.csv``, ``best_config.yaml`` (pass it to ``automed train --config``), ``plots/``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd

import automed.search.optuna_engine
import automed.search.ray_engine  # noqa: F401  (registers the "ray" engine)
from automed.artifacts import (
    atomic_directory,
    claim_output,
    mark_output,
    write_bytes_atomic,
    write_json_atomic,
)
from automed.config import parse_duration
from automed.data.dataset import load_dataset
from automed.data.splits import read_splits
from automed.errors import ArtifactError, ConfigError
from automed.evaluate.summary import score
from automed.plan.preset import load_preset
from automed.plan.schema import Plan
from automed.registry import check_choice
from automed.search.context import SweepContext
from automed.search.engine import ENGINES, TrialOutcome
from automed.search.report import best_config_yaml, study_plots, trials_table
from automed.search.space import SearchSpace, default_point, load_space
from automed.search.trial_records import TRIAL, check_trials, read_trial
from automed.select.register import write_choice_bundle
from automed.select.selection import SELECTION_FILE, select
from automed.tracking import Tracker, check_tracking_uri
from automed.train.config import TrainConfig, load_train_config
from automed.workdir import locked
from automed.workdir_claim import claim_workdir, refuse_workdir_in_dataset
from automed.workflow.choice import log_record
from automed.workflow.prepare import (
    choose_configuration,
    dataset_source,
    plan_for_training,
    preprocess,
)
from automed.workflow.sweep_checks import refuse_ignored, refuse_unbounded
from automed.workflow.sweep_resume import resume_state
from automed.workflow.sweep_stages import (
    STATE_FILE,
    SweepOptions,
    SweepResult,
    SweepRun,
    check_gpus,
    grid_space,
    needed_variants,
    open_tracking,
    parse_resources,
    stage_grid,
    stage_promote,
    stage_search,
)
from automed.workflow.sweep_state import new_state
from automed.workflow.sweep_verdict import duplicates_note, failure_lines, sweep_verdict
from automed.workflow.trials_live import TrialsDisplay

log = logging.getLogger(__name__)


def _new_state(
    dataset: str | Path | None,
    wd: Path,
    opts: SweepOptions,
    base_config: TrainConfig | None,
    show_progress: bool,
) -> dict[str, Any]:
    """Check the options, plan and preprocess everything the space can sample; the new sweep's state."""
    if (wd / STATE_FILE).is_file():
        raise ArtifactError.single(
            wd,
            "a work dir holds one sweep",
            "it already has sweep.json",
            f"run `automed sweep --resume {wd}` or use a new -o",
        )
    if dataset is None:
        raise ConfigError.single(
            "DATASET", "a new sweep needs a dataset", "none", "pass the dataset folder or CSV"
        )
    if (opts.space is None) == (opts.grid is None):
        raise ConfigError.single(
            "--space/--grid",
            "a sweep needs exactly one of --space and --grid",
            f"space={opts.space}, grid={opts.grid}",
            "pass --space search_spaces/quick.yaml, or --grid STRATEGY.yaml",
        )
    space = load_space(opts.space) if opts.space else grid_space(str(opts.grid))
    ENGINES.get(opts.engine)  # an unknown engine fails before any work
    refuse_unbounded(opts, space, base_config)
    check_gpus(opts)
    ds = load_dataset(dataset)
    refuse_ignored(space, ds.task_type, str(opts.space or opts.grid))
    plan, preset = plan_for_training(
        ds, wd, opts.device, opts.preset, opts.workers, show_progress, opts.max_voxels, opts.folds
    )
    base = choose_configuration(base_config or TrainConfig(), plan, auto=True)
    names, variants = needed_variants(space, base, plan)
    preprocess(
        ds,
        wd,
        configurations=names,
        folds=opts.folds,
        workers=opts.workers,
        show_progress=show_progress,
        train_configs=variants,
    )
    state = new_state(dataset_source(ds), opts, space, base, load_preset(preset).inference.mirrors)
    write_json_atomic(wd / STATE_FILE, state)
    return state


def sweep_dataset(
    dataset: str | Path | None,
    workdir: str | Path,
    opts: SweepOptions,
    *,
    base_config: TrainConfig | None = None,
    resume: bool = False,
    show_progress: bool = True,
    keep_case_ids: bool = False,
    asked: set[str] | None = None,
) -> SweepResult:
    """Run (or ``resume``) a sweep; see the module docstring for the policy and the work dir layout. The work dir
    is locked while it runs (a second sweep into it is refused). ``asked``: the options the user gave (a resume
    refuses each that differs from the saved one; None: those that differ from the defaults)."""
    wd = Path(workdir).resolve()
    if not resume:
        refuse_workdir_in_dataset(dataset, wd)
        claim_workdir(wd, "automed sweep")
    with locked(wd, "automed sweep"):
        return _sweep(dataset, wd, opts, base_config, resume, show_progress, asked)


def _sweep(
    dataset: str | Path | None,
    wd: Path,
    opts: SweepOptions,
    base_config: TrainConfig | None,
    resume: bool,
    show_progress: bool,
    asked: set[str] | None = None,
) -> SweepResult:
    t0 = time.perf_counter()
    if resume:
        state, opts = resume_state(wd, opts, dataset, asked, base_config)
    else:
        state = _new_state(dataset, wd, opts, base_config, show_progress)
    # the split and the trials' configs (a resume's) are read before the sweep's MLflow run opens: a damaged one
    # is refused naming it, never split or sampled anew
    n_folds = int(read_splits(wd / "splits.json")["n_folds"])
    if resume:
        check_trials(wd)
    base = TrainConfig.model_validate(state["base_config"])
    space = SearchSpace.model_validate(state["space"])
    plan = Plan.load(wd / "plan.json")
    tracker = open_tracking(wd, state, opts, plan, space, base, state["dataset"])
    point = default_point(space, base, plan) if opts.grid is None else {}
    engine = ENGINES.get(opts.engine)(opts.ray_address, opts.trial_resources, None, show_progress)
    outcomes: list[TrialOutcome] = []
    try:
        engine.check_nodes([state["dataset"], str(wd / "plan.json"), str(wd / "preprocessed")], str(wd))
        ctx = SweepContext(
            sweep_dir=str(wd),
            dataset=state["dataset"],
            base_config=base.model_dump(mode="json"),
            space=space.model_dump(mode="json"),
            default_point=point,
            n_folds=n_folds,
            tracking_uri=tracker.uri,  # with its credentials (sweep.json keeps none)
            experiment=state["experiment"],
            sweep_run_id=state["sweep_run_id"],
            device=opts.device,
            workers=0 if opts.trial_resources.get("cpu", 1) <= 1 else 1,
            validation_tta=opts.validation_tta,
            validation_mirrors=str(state.get("mirrors", "all")),
            keep_case_ids=opts.keep_case_ids,
        )
        run = SweepRun(wd, state, opts, engine, ctx, engine.concurrency(), t0, resume)
        label = _score_label(plan, state["dataset"])
        with TrialsDisplay(wd, n_folds, "live" if show_progress else "off", score_label=label):
            if opts.grid is not None:
                outcomes = stage_grid(run, space, base, plan)
            else:
                outcomes = stage_search(run, space, base, plan, point, tracker)
                if opts.screen and n_folds > 1:
                    outcomes += stage_promote(run)
        state["stages"]["done"] = True
        state["concurrency"] = run.conc
        run.save()
    except BaseException as exc:
        engine.close()  # its workers stopped first: a trial starting as Ctrl-C came had left its runs RUNNING
        _end_runs(tracker, state, exc)
        raise
    finally:
        engine.close()
    try:  # the report and selection (their postprocessing runs long): stopped there, the run is ended too
        return _finish(wd, tracker, state, space, n_folds, outcomes)
    except BaseException as exc:
        _end_runs(tracker, state, exc)
        raise


def _end_runs(tracker: Tracker, state: dict[str, Any], exc: BaseException) -> None:
    """The sweep's MLflow run, and the trials and folds a killed worker left open, ended FAILED or KILLED."""
    status = "FAILED" if isinstance(exc, Exception) else "KILLED"
    tracker.end_open_runs_under(state["sweep_run_id"], status)
    tracker.end_run(state["sweep_run_id"], status)


def _score_label(plan: Plan, dataset: str) -> str:
    """What a trial's fold score is called: its task's score (AUC, R²), or Dice (validation Dice, not pseudo)."""
    from automed.tasks.registry import task_for

    task = task_for(plan.task_type, dataset)
    return task.epoch_label if task.image_level else "Dice"


def _finish(
    wd: Path,
    tracker: Tracker,
    state: dict[str, Any],
    space: SearchSpace,
    n_folds: int,
    outcomes: list[TrialOutcome],
) -> SweepResult:
    """trials.csv, best_config.yaml, the verdict against the planner default, plots, and the selection among the
    fully cross-validated trials and their pairs (postprocessing decided on the winner)."""
    from automed.tasks.registry import task_for

    task = task_for(Plan.load(wd / "plan.json").task_type, wd)
    score_name = task.score_name
    table = trials_table(wd, n_folds)
    write_bytes_atomic(wd / "trials.csv", table.to_csv(index=False).encode())
    run = state["sweep_run_id"]
    full = table[table["folds_done"] == n_folds] if not table.empty else table
    best = {str(k): v for k, v in full.iloc[0].to_dict().items()} if len(full) else None
    default_rows = table[table["default"]] if not table.empty else table
    default = {str(k): v for k, v in default_rows.iloc[0].to_dict().items()} if len(default_rows) else None
    verdict = sweep_verdict(table, best, default, n_folds, int(state["options"].get("promote", 2)))
    for note in ("default_partial", "search_capped", "grid_skipped", "promote_skipped"):
        if state["stages"].get(note):
            verdict += f"; {state['stages'][note]}"
    if note := duplicates_note(table):
        verdict += f"; {note}"
    metrics: dict[str, float | None] = {"n_trials": float(len(table))}
    if best is not None:
        cfg = read_trial(wd / "trials" / best["trial"] / TRIAL, config=True)["config"]
        best_config_yaml(
            cfg,
            wd / "best_config.yaml",
            f"automed sweep best config (trial {best['trial']}, CV score {best['cv_score']:.4f})\nuse: automed train DATASET -o WORKDIR --config best_config.yaml",
        )
        tracker.log_artifact(run, wd / "best_config.yaml")
        metrics[f"best_{score_name}"] = float(best["cv_score"])
        tracker.set_tags(run, {"best_trial": str(best["trial"])})
    if default is not None and default["folds_done"] == n_folds:
        metrics[f"default_{score_name}"] = float(default["cv_score"])
    tracker.log_metrics(run, metrics)
    tracker.set_tags(run, {"verdict": verdict})
    tracker.log_artifact(run, wd / "trials.csv")
    (wd / "plots").mkdir(exist_ok=True)
    plots = study_plots(space, table, wd / "plots") if not table.empty else {}
    for name, where in plots.items():
        if Path(where).is_file():
            tracker.log_artifact(run, Path(where), "plots")
        else:
            tracker.set_tags(run, {f"plot.{name}": where[:250]})
    full_dirs = [wd / "trials" / str(k) for k in full["trial"]] if len(full) else []
    # pairs and postprocessing are segmentation's (for image-level tasks best_config.yaml is the choice)
    if full_dirs and not task.image_level:
        sel = select(full_dirs, wd / "selection")
        # a chosen pair: predict/export/package take the selection folder
        write_choice_bundle(sel, wd / "selection", score(sel["cv_dice_final"]["foreground_mean"]))
        log_record(tracker, run, wd / "selection" / SELECTION_FILE, "selection")
        tracker.set_tags(run, {"selection.chosen": sel["chosen"]["candidate"]})
        tracker.log_metrics(run, {f"selection_{score_name}": sel["cv_dice_final"]["foreground_mean"]})
    state["verdict"] = verdict
    write_json_atomic(wd / STATE_FILE, state)
    tracker.end_run(run)
    return SweepResult(wd, table, best, default, verdict, outcomes, failure_lines(wd, outcomes))


def sweep(
    dataset: str | Path | None,
    workdir: str | Path,
    *,
    space: str | Path | None = None,
    grid: str | Path | None = None,
    config: str | Path | None = None,
    trials: int | None = None,
    budget: str | float | None = None,
    folds: int | None = None,
    promote: int | None = None,
    screen: bool | None = None,
    sampler: str | None = None,
    scheduler: str | None = None,
    engine: str | None = None,
    ray_address: str | None = None,
    trial_resources: str | None = None,
    seed: int | None = None,
    tracking_uri: str | None = None,
    preset: str | None = None,
    device: str | None = None,
    workers: int | None = None,
    resume: bool = False,
    show_progress: bool = True,
    keep_case_ids: bool = False,
    max_voxels: int | None = None,
) -> SweepResult:
    """Search training configs over folds (screen on fold 0 with ASHA, promote the best to full CV). An option left
    None takes :class:`SweepOptions`' default (8 trials, 5 folds, 2 promoted, TPE, ASHA, Ray, ``cpu=1,gpu=0``, seed
    0); on ``resume`` every option given must equal the saved one."""
    # a resume uses the store its work dir saved; a sweep registers nothing (no registry to check)
    check_tracking_uri(tracking_uri, resume=resume, registry=False)
    check_choice(sampler or "tpe", ["tpe", "random"], what="the sampler", where="--sampler")
    check_choice(scheduler or "asha", ["asha", "none"], what="the scheduler", where="--scheduler")
    given: dict[str, Any] = {
        "space": str(space) if space else None,
        "grid": str(grid) if grid else None,
        "trials": trials,
        "folds": folds,
        "promote": promote,
        "screen": screen,
        "sampler": sampler,
        "scheduler": scheduler,
        "engine": engine,
        "trial_resources": parse_resources(trial_resources) if trial_resources is not None else None,
        "seed": seed,
        "preset": preset,
        "keep_case_ids": keep_case_ids or None,
        "max_voxels": max_voxels,
    }
    asked = {k: v for k, v in given.items() if v is not None}
    opts = SweepOptions(
        **asked,
        budget_s=parse_duration(budget),
        ray_address=ray_address,
        tracking_uri=tracking_uri,
        device=device,
        workers=workers,
    )
    base = load_train_config(config) if config else None
    return sweep_dataset(
        dataset, workdir, opts, base_config=base, resume=resume, show_progress=show_progress, asked=set(asked)
    )


def grid(
    base: str | Path, strategy: str | Path, output: str | Path, *, overwrite: bool = False
) -> pd.DataFrame:
    """Write one training config YAML per distinct combination of a grid strategy (and ``grid.csv``).

    ``output`` is claimed first (never the folder of the base config or the strategy; an existing folder only when
    it is an earlier grid, or with ``overwrite`` another output of automed) and replaced whole: no config of an earlier, larger grid stays
    beside the new ``grid.csv``, and a kill leaves the earlier grid as it was."""
    from automed.search.grid import write_grid

    out = claim_output(Path(output), "grid", protected=[Path(base), Path(strategy)], overwrite=overwrite)
    with atomic_directory(out) as tmp:
        df = write_grid(Path(base), Path(strategy), tmp)
        mark_output(tmp, "grid")
    return df
