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
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from pathlib import Path
from typing import Any

from automed.artifacts import write_json_atomic
from automed.errors import ArtifactError
from automed.plan.schema import Plan
from automed.search.context import Report, SweepContext, trial_dir
from automed.search.space import SearchSpace, resolve
from automed.train.config import TrainConfig
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
    tfile = td / "trial.json"
    td.parent.mkdir(parents=True, exist_ok=True)
    with flocked(Path(ctx.sweep_dir) / CLAIMS):
        if tfile.is_file():  # a restarted trial (or another fold of it) keeps what it was
            saved = json.loads(tfile.read_text())
            if saved["config"] != dumped:
                raise ArtifactError.single(
                    tfile,
                    "a restarted trial must have the config it started with",
                    f"sampled values {values}",
                    "start the sweep in a new work dir",
                )
            original = saved.get("duplicate_of")
        else:
            original = _same_config(td.parent, dumped)
            default = bool(ctx.default_point) and original is None
            default = default and dumped == resolve(space, base, plan, ctx.default_point).model_dump(
                mode="json"
            )
            td.mkdir(exist_ok=True)
            write_json_atomic(
                tfile,
                {
                    "key": key,
                    "values": values,
                    "is_default": default,
                    "config": dumped,
                    "digest": config.digest(),
                    **({"duplicate_of": original} if original else {}),
                },
            )
        if original is None:
            running.enter_context(flocked(td / RUNNING, fcntl.LOCK_SH))
    return td, config, original


def _same_config(trials: Path, config: dict[str, Any]) -> str | None:
    """The trial (not itself a duplicate) that claimed ``config`` first, if any."""
    for tfile in sorted(trials.glob("*/trial.json")):
        with contextlib.suppress(OSError, ValueError):
            t = json.loads(tfile.read_text())
            if not t.get("duplicate_of") and t.get("config") == config:
                return str(t["key"])
    return None


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
            rfile = otd / "result.json"
            result = json.loads(rfile.read_text()) if rfile.is_file() else {}
    except BlockingIOError:  # the original runs (or runs another fold)
        return {**out, "pending": True}
    done = result.get("folds", {})
    if folds and all(str(f) in done for f in folds) and "score" in result:
        out["score"] = float(done[str(folds[0])]["score"] if len(folds) == 1 else result["score"])
        if report is not None:
            report({"epoch": 0.0, "score": out["score"], "validated": 1.0})
    return out
