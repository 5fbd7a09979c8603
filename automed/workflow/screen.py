"""Configuration screening within one budget (``automed train --budget`` without ``--configuration``, when the
preset's rule allows it: :func:`automed.workflow.shape.plan_screening`).

Fold 0 of every screened configuration trains for an equal share of the budget in the work dir
(``train/<configuration>/fold_0``, each its own MLflow child run tagged ``screen``); the best fold-0 validation
score wins and is promoted: its fold 0 is kept and its other folds train with the time left. ``screen.json``
records the scores and the choice (written once; a resumed training reuses it and every finished screening fold; a
damaged one is screened again, with a warning, from those folds);
the parent MLflow run gets ``screen_<configuration>`` metrics, the ``screen.winner`` tag and the file.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from automed.artifacts import write_json_atomic
from automed.data.splits import read_splits
from automed.plan.schema import Plan
from automed.records import fits, read_recomputable, shown
from automed.tasks.base import Task
from automed.tracking import Tracker, safe_key
from automed.train.config import TrainConfig
from automed.workdir import WorkDir
from automed.workflow.fold import validated_rows
from automed.workflow.fold_runs import FINAL_RESERVE_S, Placement, run_fold_jobs, training_job
from automed.workflow.live import Mode
from automed.workflow.train_options import TrackingState, TrainOptions

SCHEMA_VERSION = 1


def _screen_fold(
    wd: Path,
    plan: Plan,
    config: TrainConfig,
    opts: TrainOptions,
    tracker: Tracker,
    track: TrackingState,
    fold0: dict[str, list[str]],
    share_s: float,
    progress: Mode,
) -> tuple[list[dict[str, Any]], str]:
    """Fold 0 of one configuration (its rows; reused when finished before) and its MLflow run id."""
    folder = WorkDir(wd).fold(config.configuration, 0)
    key = f"screen/{config.configuration}"
    run_id = track.fold_runs.get(key)
    if run_id is None:
        run_id = tracker.start_run(
            f"{config.configuration}-fold0",
            parent=track.parent_run_id,
            tags={"fold": "0", "configuration": config.configuration, "screen": "true"},
        )
        tracker.log_params(run_id, {"fold": 0, "config": config.model_dump(mode="json")})
        track.fold_runs[key] = run_id
        track.save()
    reused = validated_rows(folder, opts.validation_tta, opts.validation_mirrors)
    if reused is not None:
        return reused, run_id
    resume = (folder / "checkpoint_latest.pt").is_file()
    job = training_job(
        wd, plan, config, opts, tracker, track, 0, fold0, run_id, resume=resume, progress=progress
    )
    where = Placement(1, opts.ray_address, opts.resources())
    # the fold gets its share: run_fold_jobs keeps the end-of-run reserve from what a deadline leaves, and the
    # share was already counted without it
    (out,) = run_fold_jobs([job], where, wd, time.perf_counter() + share_s + FINAL_RESERVE_S, None)
    return out.rows, run_id


def _finished(path: Path, plan: Plan) -> dict[str, Any] | None:
    """An earlier screening's ``screen.json``; None when there is none, or (with a warning naming the file, the
    rule and the value) when it is damaged: the screening then runs again, reusing every finished screening fold,
    and writes it anew (it had crashed with a bare JSONDecodeError or KeyError)."""
    result: dict[str, Any] | None = read_recomputable(
        path,
        lambda d: _screen_problem(d, plan),
        "read as no screening done (the configurations are screened again, their finished fold 0 reused, and "
        "screen.json written anew)",
    )
    return result


def _screen_problem(done: Any, plan: Plan) -> tuple[str, str] | None:
    """The rule a screen.json's content breaks and the value that breaks it; None: none."""
    if not isinstance(done, dict):
        return "screen.json must be a JSON object", shown(done)
    winner = done.get("winner")
    if not (fits(str, winner) and winner in plan.configurations):
        return "screen.json's winner must be one of the plan's configurations", shown(winner)
    if not fits(str, done.get("summary")):
        return "screen.json's summary must be text", shown(done.get("summary"))
    return None


def run_screening(
    wd: Path,
    plan: Plan,
    config: TrainConfig,
    opts: TrainOptions,
    task: Task,
    tracker: Tracker,
    track: TrackingState,
    progress: Mode,
) -> tuple[TrainConfig, str]:
    """Screen ``opts.screen``'s configurations on fold 0 and return ``config`` with the winner, and a line saying
    what won and why. Reuses ``screen.json`` when the screening finished before."""
    wdir = WorkDir(wd)
    done = _finished(wdir.screen, plan)
    if done is not None:
        chosen = config.model_copy(update={"configuration": done["winner"]})
        if "0" not in track.fold_runs:  # killed after screen.json was written: the MLflow record is completed
            _record(wdir, plan, chosen, tracker, track, done.get("scores") or {}, done["summary"])
        return chosen, done["summary"]
    assert opts.screen is not None
    fold0 = read_splits(wdir.splits)["folds"][0]
    scores: dict[str, float] = {}
    runs: dict[str, str] = {}
    for name in opts.screen["configurations"]:
        cand = config.model_copy(update={"configuration": name})
        rows, runs[name] = _screen_fold(
            wd, plan, cand, opts, tracker, track, fold0, float(opts.screen["share_s"]), progress
        )
        scores[name] = task.score(task.summarize(rows))
    winner = max(scores, key=lambda n: -math.inf if math.isnan(scores[n]) else scores[n])
    listed = ", ".join(f"{n} {v:.4f}" for n, v in scores.items())
    summary = (
        f"screened on fold-0 validation {task.score_name.removeprefix('cv_')}: {listed}; {winner} is kept"
    )
    write_json_atomic(
        wdir.screen,
        {
            "schema_version": SCHEMA_VERSION,
            "reason": opts.screen["reason"],
            "share_s": opts.screen["share_s"],
            "criterion": f"fold-0 validation {task.score_name.removeprefix('cv_')}, higher is better",
            "scores": scores,
            "winner": winner,
            "summary": summary,
        },
    )
    chosen = config.model_copy(update={"configuration": winner})
    _record(wdir, plan, chosen, tracker, track, scores, summary)
    return chosen, summary


def _record(
    wdir: WorkDir, plan: Plan, chosen: TrainConfig, tracker: Tracker, track: TrackingState,
    scores: dict[str, Any], summary: str,
) -> None:  # fmt: skip
    """The screening in MLflow (the parent run's scores, winner, config and plan; the winner's fold-0 run promoted)
    and the winner's fold 0 as the cross-validation's; again after a kill past ``screen.json`` (it had been only in
    the pass that wrote the file: the parent run named no config, no run was promoted)."""
    parent, winner = track.parent_run_id, chosen.configuration
    numbers = {n: v for n, v in scores.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    tracker.log_metrics(parent, {f"screen_{safe_key(n)}": v for n, v in numbers.items()})
    tracker.set_tags(parent, {"screen.winner": winner, "screen.summary": summary})
    tracker.log_params(
        parent,
        {
            "config": chosen.model_dump(mode="json"),
            "plan": plan.configurations[winner].model_dump(mode="json"),
        },
    )
    tracker.log_artifact(parent, wdir.screen)
    run = track.fold_runs.get(f"screen/{winner}")
    if run is not None:
        tracker.set_tags(run, {"screen.promoted": "true"})
        track.fold_runs["0"] = run  # the winner's fold 0 is fold 0 of the cross-validation
    track.save()
