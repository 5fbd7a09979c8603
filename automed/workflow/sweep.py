"""``automed sweep``: plan once, search configs over folds with an engine, promote the best, report.

Policy (multi-fidelity): **screen, then promote.** Every sampled trial trains and validates fold 0 only; ASHA
stops weak ones early on their per-epoch EMA pseudo-Dice (rungs at ``grace``, ``grace*2``, ... epochs). The
``--promote`` best screened trials, and always the planner's default trial, then train the remaining folds, and the
winner is picked by full cross-validation Dice, so "best vs default" compares like with like. ``--no-screen``
trains every trial on all folds (the baseline the benchmark compares against). ``--grid`` evaluates every config
of a grid on all folds.

Work dir: the planning artifacts (shared by every trial through links), ``sweep.json`` (options, MLflow ids, state),
``trials/<key>/`` (one per trial, see :mod:`automed.sweep.objective`), ``ray/`` (Tune state for ``--resume``),
``trials.csv``, ``best_config.yaml`` (pass it to ``automed train --config``), ``plots/``.
"""

from __future__ import annotations

import json
import math
import socket
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import automed.sweep.optuna_engine
import automed.sweep.ray_engine  # noqa: F401  (registers the "ray" engine)
from automed._version import __version__
from automed.artifacts import write_json_atomic
from automed.data.dataset import load_dataset
from automed.errors import ArtifactError, ConfigError
from automed.plan.schema import Plan
from automed.sweep.engine import ENGINES, SearchSpec, TrialOutcome
from automed.sweep.objective import SweepContext
from automed.sweep.report import best_config_yaml, study_plots, trials_table
from automed.sweep.space import SearchSpace, default_point, load_space
from automed.train.config import TrainConfig

STATE_FILE = "sweep.json"
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
    trial_resources: dict[str, float] = field(default_factory=lambda: {"cpu": 1.0, "gpu": 0.0})
    seed: int = 0
    retries: int = 1
    tracking_uri: str | None = None
    preset: str | None = None
    device: str | None = None
    workers: int | None = None
    validation_tta: bool = False


@dataclass
class SweepResult:
    workdir: Path
    table: Any
    best: dict[str, Any] | None
    default: dict[str, Any] | None
    verdict: str
    outcomes: list[TrialOutcome]


def parse_resources(text: str) -> dict[str, float]:
    """``cpu=1,gpu=0.5`` -> ``{"cpu": 1.0, "gpu": 0.5}``."""
    out = {"cpu": 1.0, "gpu": 0.0}
    for part in filter(None, (p.strip() for p in text.split(","))):
        k, _, v = part.partition("=")
        try:
            value = float(v)
        except ValueError:
            value = -1.0
        if k not in out or value < 0 or (k == "cpu" and value <= 0):
            raise ConfigError.single(
                "--trial-resources",
                "resources are cpu=N (N > 0) and gpu=F (F >= 0, fractions allowed), comma-separated",
                part,
                "e.g. --trial-resources cpu=2,gpu=0.5",
            )
        out[k] = value
    return out


def _needed_variants(
    space: SearchSpace, base: TrainConfig, plan: Plan
) -> tuple[list[str], list[TrainConfig]]:
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


def _grid_space(strategy: str) -> SearchSpace:
    from automed.sweep.grid import grid_as_space

    return grid_as_space(Path(strategy))


def _tracking(
    wd: Path,
    state: dict[str, Any],
    opts: SweepOptions,
    plan: Plan,
    space: SearchSpace,
    base: TrainConfig,
    ds_source: str,
) -> Any:
    from automed.fingerprint.schema import Fingerprint
    from automed.tracking import Tracker, resolve_uri
    from automed.train.run import _git_commit

    uri = resolve_uri(opts.tracking_uri or state.get("uri"))
    tracker = Tracker(uri, plan.dataset_name)  # the driver creates the store and experiment before any trial
    if state.get("sweep_run_id") is None:
        fp = Fingerprint.load(wd / "fingerprint.json")
        run = tracker.start_run(
            f"sweep-{space.name}",
            tags={
                "automed.version": __version__,
                "git.commit": _git_commit(),
                "dataset.fingerprint": fp.hash,
                "host": socket.gethostname(),
                "sweep.engine": opts.engine,
            },
        )
        tracker.log_params(
            run,
            {
                "options": asdict(opts),
                "space": space.model_dump(mode="json"),
                "base": base.model_dump(mode="json"),
            },
        )
        tracker.log_dataset(run, plan.dataset_name, fp.hash, ds_source)
        for name in ("fingerprint.json", "plan.json", "splits.json"):
            tracker.log_artifact(run, wd / name)
        state.update(uri=uri, sweep_run_id=run, experiment=plan.dataset_name)
        write_json_atomic(wd / STATE_FILE, state)
    return tracker


def _fold_budget(
    opts: SweepOptions, n_first: int, n_second: int, folds_first: int, concurrency: int, left: float
) -> float | None:
    if opts.budget_s is None:
        return None
    fold_trainings = n_first * folds_first + n_second
    waves = max(1.0, fold_trainings / concurrency)
    return max(20.0, 0.85 * left / waves)


def _units(
    wd: Path, trials: list[tuple[str, dict[str, Any]]], folds: list[int]
) -> list[tuple[str, dict[str, Any], list[int]]]:
    """(trial, fold) units still to run: folds of one trial run at once when slots are free, so a stage does not
    wait on one trial's folds in sequence while other slots idle."""
    units = []
    for key, values in trials:
        rfile = wd / "trials" / key / "result.json"
        done = set(json.loads(rfile.read_text())["folds"]) if rfile.is_file() else set()
        units += [(key, values, [f]) for f in folds if str(f) not in done]
    return units


def _min_budget(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _mark_stopped(tracker: Any, sweep_run: str, outcomes: list[TrialOutcome]) -> None:
    """Trials the scheduler stopped end as FINISHED with a tag (Ray kills them mid-fold, which reads KILLED); failed
    ones as FAILED. A trial stopped before it logged anything has no run and gets none."""
    for o in outcomes:
        run = None if o.status == "complete" or not o.key else tracker.find_run(o.key, sweep_run)
        if run is None:
            continue
        status = "FINISHED" if o.status == "stopped" else "FAILED"
        rid = str(run.info.run_id)
        tracker.set_tags(rid, {"screen.outcome": o.status, **({"error": o.error[:500]} if o.error else {})})
        for fold_run in tracker.client.search_runs(
            [tracker.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{rid}'"
        ):
            if fold_run.info.status != "FINISHED":
                tracker.set_tags(fold_run.info.run_id, {"screen.outcome": o.status})
                tracker.end_run(fold_run.info.run_id, status)
        tracker.end_run(rid, status)


def sweep_dataset(
    dataset: str | Path | None,
    workdir: str | Path,
    opts: SweepOptions,
    *,
    base_config: TrainConfig | None = None,
    resume: bool = False,
    show_progress: bool = True,
) -> SweepResult:
    """Run (or ``resume``) a sweep; see the module docstring for the policy and the work dir layout."""
    from automed import api
    from automed.train.run import _choose_configuration, plan_for_training

    t0 = time.perf_counter()
    wd = Path(workdir).resolve()
    sfile = wd / STATE_FILE
    if resume:
        if not sfile.is_file():
            raise ArtifactError.single(
                sfile,
                "--resume needs a sweep work dir",
                "no sweep.json",
                "start with `automed sweep DATASET -o WORKDIR`",
            )
        state = json.loads(sfile.read_text())
        saved = SweepOptions(**state["options"])
        opts = replace(
            saved,
            budget_s=opts.budget_s,
            ray_address=opts.ray_address or saved.ray_address,
            tracking_uri=opts.tracking_uri or saved.tracking_uri,
        )
        dataset = state["dataset"]
        base = TrainConfig.model_validate(state["base_config"])
        space = SearchSpace.model_validate(state["space"])
        ds = load_dataset(dataset)
        plan = Plan.load(wd / "plan.json")
    else:
        if sfile.is_file():
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
        space = load_space(opts.space) if opts.space else _grid_space(str(opts.grid))
        ENGINES.get(opts.engine)  # an unknown engine fails before any work
        ds = load_dataset(dataset)
        plan, _ = plan_for_training(ds, wd, opts.device, opts.preset, opts.workers, show_progress)
        base = _choose_configuration(base_config or TrainConfig(), plan, auto=True)
        if (
            opts.grid is None
            and opts.budget_s is None
            and not any(space.target(n) in ("epochs",) for n in space.parameters)
            and "epochs" not in space.fixed
            and (base_config is None or base_config.epochs == TrainConfig().epochs)
        ):
            raise ConfigError.single(
                "--budget",
                "a sweep needs a time budget or a fixed number of epochs per trial",
                "neither given (the default is 1000 epochs per fold)",
                "pass --budget 2h, or set `fixed: {epochs: N}` in the search space",
            )
        names, variants = _needed_variants(space, base, plan)
        api.preprocess(
            ds,
            wd,
            configurations=names,
            folds=opts.folds,
            workers=opts.workers,
            show_progress=show_progress,
            train_configs=variants,
        )
        state = {
            "schema_version": 1,
            "dataset": str(ds.source if ds.layout == "csv" else ds.source.parent),
            "options": asdict(opts),
            "space": space.model_dump(mode="json"),
            "base_config": base.model_dump(mode="json"),
            "stages": {},
        }
        write_json_atomic(sfile, state)
        plan = Plan.load(wd / "plan.json")

    tracker = _tracking(wd, state, opts, plan, space, base, state["dataset"])
    splits = json.loads((wd / "splits.json").read_text())
    n_folds = int(splits["n_folds"])
    all_folds = list(range(n_folds))
    point = default_point(space, base, plan) if opts.grid is None else {}
    engine = ENGINES.get(opts.engine)(opts.ray_address, opts.trial_resources, None, show_progress)
    outcomes: list[TrialOutcome] = []
    try:
        engine.check_nodes([state["dataset"], str(wd / "plan.json"), str(wd / "preprocessed")], str(wd))
        conc = engine.concurrency()
        ctx = SweepContext(
            sweep_dir=str(wd),
            dataset=state["dataset"],
            base_config=base.model_dump(mode="json"),
            space=space.model_dump(mode="json"),
            default_point=point,
            n_folds=n_folds,
            tracking_uri=state["uri"],
            experiment=state["experiment"],
            sweep_run_id=state["sweep_run_id"],
            device=opts.device,
            workers=0 if opts.trial_resources.get("cpu", 1) <= 1 else 1,
            validation_tta=opts.validation_tta,
        )
        left = (opts.budget_s - (time.perf_counter() - t0) - FINAL_RESERVE_S) if opts.budget_s else math.inf
        if opts.grid is not None:
            from automed.sweep.grid import grid_points

            points = grid_points(space, base, plan)
            if state.get("fold_budget_s") is None or (opts.budget_s is not None and not resume):
                state["fold_budget_s"] = _fold_budget(opts, len(points), 0, n_folds, conc, left)
            ctx = replace(ctx, fold_budget_s=state["fold_budget_s"])
            ts = time.perf_counter()
            outcomes = engine.evaluate(
                ctx, _units(wd, points, all_folds), conc, opts.retries, resume, stage="grid"
            )
            state.setdefault("timing", {})["grid_s"] = time.perf_counter() - ts
        else:
            screen_folds = [0] if opts.screen else all_folds
            n_promote = (opts.promote + 1) * (n_folds - 1) if opts.screen else 0
            if state.get("fold_budget_s") is None or (opts.budget_s is not None and not resume):
                state["fold_budget_s"] = _fold_budget(
                    opts, opts.trials, n_promote, len(screen_folds), conc, left
                )
            ctx = replace(ctx, fold_budget_s=state["fold_budget_s"])
            share = opts.trials * len(screen_folds) / max(1, opts.trials * len(screen_folds) + n_promote)
            spec = SearchSpec(
                n_trials=opts.trials,
                folds=screen_folds,
                concurrency=conc,
                sampler=opts.sampler,  # type: ignore[arg-type]
                scheduler=opts.scheduler,  # type: ignore[arg-type]
                seed=opts.seed,
                grace_epochs=opts.grace_epochs,
                time_budget_s=left * share if opts.budget_s else None,
                retries=opts.retries,
            )
            if not state["stages"].get("search"):
                ts = time.perf_counter()
                outcomes = engine.search(ctx, space, [point] if point else [], spec, resume)
                state.setdefault("timing", {})["search_s"] = time.perf_counter() - ts
                _mark_stopped(tracker, state["sweep_run_id"], outcomes)
                state["stages"]["search"] = True
                write_json_atomic(sfile, state)
            if opts.screen and n_folds > 1:
                table = trials_table(wd, n_folds)
                screened = table[table["folds_done"] >= 1].sort_values("fold0_dice", ascending=False)
                # the planner default is always promoted (resuming its fold 0 if ASHA stopped it), so the verdict
                # compares the best trial with it at full CV
                keys = list(screened["trial"][: opts.promote]) + list(table[table["default"]]["trial"])
                chosen = []
                for key in dict.fromkeys(keys):
                    chosen.append(
                        (key, json.loads((wd / "trials" / key / "trial.json").read_text())["values"])
                    )
                left = (
                    (opts.budget_s - (time.perf_counter() - t0) - FINAL_RESERVE_S)
                    if opts.budget_s
                    else math.inf
                )
                share_s = _fold_budget(opts, 0, len(chosen) * (n_folds - 1), 1, conc, left)
                # promoted folds train as long as screened ones did (comparable CV), less only if time is short
                ctx = replace(ctx, fold_budget_s=_min_budget(share_s, state.get("fold_budget_s")))
                ts = time.perf_counter()
                outcomes += engine.evaluate(
                    ctx,
                    _units(wd, chosen, all_folds),
                    conc,
                    opts.retries,
                    resume and bool(state["stages"].get("promote_started")),
                )
                state["stages"]["promote_started"] = True
                state.setdefault("timing", {})["promote_s"] = time.perf_counter() - ts
        state["stages"]["done"] = True
        state["concurrency"] = conc
        write_json_atomic(sfile, state)
    except BaseException as exc:
        tracker.end_run(state["sweep_run_id"], "FAILED" if isinstance(exc, Exception) else "KILLED")
        raise
    finally:
        engine.close()
    return _finish(wd, tracker, state, space, base, plan, n_folds, outcomes)


def _finish(
    wd: Path,
    tracker: Any,
    state: dict[str, Any],
    space: SearchSpace,
    base: TrainConfig,
    plan: Plan,
    n_folds: int,
    outcomes: list[TrialOutcome],
) -> SweepResult:
    table = trials_table(wd, n_folds)
    table.to_csv(wd / "trials.csv", index=False)
    run = state["sweep_run_id"]
    full = table[table["folds_done"] == n_folds] if not table.empty else table
    best = {str(k): v for k, v in full.iloc[0].to_dict().items()} if len(full) else None
    default_rows = table[table["default"]] if not table.empty else table
    default = {str(k): v for k, v in default_rows.iloc[0].to_dict().items()} if len(default_rows) else None
    if best is None:
        verdict = "no trial finished every fold: no best config"
    elif default is None:
        verdict = f"best trial {best['trial']}: CV Dice {best['cv_dice']:.4f} (no planner-default trial in this sweep)"
    elif default["folds_done"] < n_folds:
        verdict = f"best trial {best['trial']}: CV Dice {best['cv_dice']:.4f} (the planner default did not finish every fold)"
    elif best["trial"] == default["trial"] or best["cv_dice"] <= default["cv_dice"]:
        verdict = (
            f"no trial beat the planner default (default CV Dice {default['cv_dice']:.4f}, best other {best['cv_dice']:.4f})"
            if best["trial"] != default["trial"]
            else f"the planner default is the best trial (CV Dice {default['cv_dice']:.4f})"
        )
    else:
        verdict = f"best trial {best['trial']} beats the planner default: CV Dice {best['cv_dice']:.4f} vs {default['cv_dice']:.4f} (+{best['cv_dice'] - default['cv_dice']:.4f})"
    metrics: dict[str, float] = {"n_trials": float(len(table))}
    if best is not None:
        cfg = json.loads((wd / "trials" / best["trial"] / "trial.json").read_text())["config"]
        best_config_yaml(
            cfg,
            wd / "best_config.yaml",
            f"automed sweep best config (trial {best['trial']}, CV Dice {best['cv_dice']:.4f})\nuse: automed train DATASET -o WORKDIR --config best_config.yaml",
        )
        tracker.log_artifact(run, wd / "best_config.yaml")
        metrics["best_cv_dice_fg_mean"] = float(best["cv_dice"])
        tracker.set_tags(run, {"best_trial": str(best["trial"])})
    if default is not None and default["folds_done"] == n_folds:
        metrics["default_cv_dice_fg_mean"] = float(default["cv_dice"])
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
    if full_dirs:  # selection among the fully cross-validated trials and their pairs, with postprocessing
        from automed.select.register import write_choice_bundle
        from automed.select.selection import SELECTION_FILE, select

        sel = select(full_dirs, wd / "selection")
        write_choice_bundle(sel, wd / "selection")  # a chosen pair: predict/export/package take the folder
        tracker.log_artifact(run, wd / "selection" / SELECTION_FILE, "selection")
        tracker.set_tags(run, {"selection.chosen": sel["chosen"]["candidate"]})
        tracker.log_metrics(run, {"selection_cv_dice_fg_mean": sel["cv_dice_final"]["foreground_mean"]})
    state["verdict"] = verdict
    write_json_atomic(wd / STATE_FILE, state)
    tracker.end_run(run)
    return SweepResult(wd, table, best, default, verdict, outcomes)
