"""The end of a sweep: the trials table, the best config as YAML, and Optuna's importance and parallel-coordinate
plots (from a study rebuilt from the trial results, so both engines get the same report)."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from automed.artifacts import write_json_atomic
from automed.errors import ArtifactError
from automed.records import read_progress
from automed.search.space import SearchSpace, choice_label, distributions
from automed.search.trial_records import RESULT, TRIAL, read_result, read_trial


def _fold_work(trial_dir: Path) -> tuple[int, float | None]:
    """Epochs trained over the trial's fold folders (finished or not) and their compute: finished folds'
    ``fold_result.json`` plus folds stopped part-way (``fold_partial.json``: a scheduler's early stop, a failure),
    which ``result.json`` counts only when it was written after them. None: no fold folder."""
    epochs, compute, seen = 0, 0.0, False
    for folder in trial_dir.glob("train/*/fold_*"):
        seen = True
        with contextlib.suppress(OSError, ValueError, KeyError, ArtifactError):  # a fold not started yet
            epochs += len(read_progress(folder / "progress.json")["history"])
        done, partial = folder / "fold_result.json", folder / "fold_partial.json"
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            compute += float(json.loads((done if done.is_file() else partial).read_text())["compute_s"])
    return epochs, compute if seen else None


FAILED = "failed.json"  # in a trial folder whose last attempt raised (the exception's type)
STOPPED = (
    "stopped.json"  # in a trial folder the engine stopped: by the scheduler (ASHA, pruning) or the budget
)


def mark_stopped(td: Path, by: str, epoch: float | None = None) -> None:
    """Record who stopped the trial in ``td``: ``scheduler`` (it looked poor) or ``budget`` (time ran out)."""
    write_json_atomic(td / STOPPED, {"by": by, **({"epoch": epoch} if epoch is not None else {})})


def stopped_by(td: Path) -> str:
    """``scheduler``, ``budget`` or "" (not stopped, or stopped before sweeps recorded who stopped a trial)."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return str(json.loads((td / STOPPED).read_text())["by"])
    return ""


def _status(done: int, n_folds: int, epochs: int, failed: bool = False, stopped: str = "") -> str:
    if done == n_folds:
        return "cv"
    if failed:
        return "failed"
    if done:
        return "screened"  # a score, however it ended (a time-out in a later fold is no bad trial)
    if stopped == "budget":
        return "timed out"
    # the scheduler's stop; unmarked (sweeps before the mark, or a killed driver's trial): as before
    return "stopped early" if epochs or stopped else "not run"


def trials_table(sweep_dir: Path, n_folds: int) -> pd.DataFrame:
    """One row per trial folder: key, sampled values, status (``cv``: every fold; ``screened``: some folds;
    ``failed``: its last attempt raised; ``stopped early``: stopped by the scheduler (ASHA, pruning) before a fold
    finished; ``timed out``: still training when the search's time budget ran out, before a fold finished (a trial
    with a score is ``screened`` however it ended); ``not run``; ``duplicate``: an earlier trial, ``duplicate_of``, has its config, so it trained nothing:
    its scores are that trial's, as it ended, and it counts no fold of its own), folds done, epochs, screening and CV
    score, compute."""
    rows = []
    for tfile in sorted((sweep_dir / "trials").glob(f"*/{TRIAL}")):
        t = read_trial(tfile)  # a damaged one is refused: it is the config the trial trained
        r = read_result(tfile.parent / RESULT) or {"folds": {}}  # none, or damaged (recomputed): no fold done
        folds = r.get("folds", {})
        epochs, compute = _fold_work(tfile.parent)
        failed = (tfile.parent / FAILED).is_file()
        stopped = stopped_by(tfile.parent)
        status = (
            "duplicate" if t.get("duplicate_of") else _status(len(folds), n_folds, epochs, failed, stopped)
        )
        row: dict[str, Any] = {
            "trial": t["key"],
            "default": bool(t.get("is_default")),
            "status": status,
            "duplicate_of": str(t.get("duplicate_of") or ""),
            "folds_done": len(folds),
            "epochs": epochs,
            "fold0_score": folds.get("0", {}).get("score", math.nan),
            "cv_score": r.get("score", math.nan) if len(folds) == n_folds else math.nan,
            "compute_s": round(compute if compute is not None else float(r.get("compute_s", 0.0)), 1),
            "trial_s": round(float(r.get("trial_s", 0.0)), 1),
            "host": r.get("host", ""),
            "node": r.get("node", ""),
        }
        row.update({f"p.{k}": v for k, v in t["values"].items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty:
        # a duplicate's scores are its original's final ones (a duplicate never waits for them)
        dup = df["status"] == "duplicate"
        scores = df.set_index("trial")[["fold0_score", "cv_score"]]
        for col in ("fold0_score", "cv_score"):
            df.loc[dup, col] = df.loc[dup, "duplicate_of"].map(scores[col]).astype(float)
        df = df.sort_values(["cv_score", "fold0_score"], ascending=False, na_position="last").reset_index(
            drop=True
        )
    return df


def best_config_yaml(config: dict[str, Any], path: Path, header: str) -> None:
    text = "# " + "\n# ".join(header.splitlines()) + "\n" + yaml.safe_dump(config, sort_keys=False)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def study_plots(space: SearchSpace, df: pd.DataFrame, out: Path) -> dict[str, str]:
    """Importance and parallel-coordinate plots of the screening scores. Returns ``{name: file or reason}``."""
    import matplotlib

    matplotlib.use("Agg")
    import warnings

    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Some regimes for parameter")  # PED-ANOVA on few trials
    dists = distributions(space)
    study = optuna.create_study(direction="maximize")
    for _, row in df[df["status"] != "duplicate"].iterrows():  # a duplicate's score is its original's
        score = row["fold0_score"]
        if not isinstance(score, float) or math.isnan(score):
            continue
        params = {
            k[2:]: choice_label(row[k]) for k in df.columns if k.startswith("p.") and not _missing(row[k])
        }
        params = {
            k: (int(v) if isinstance(dists[k], optuna.distributions.IntDistribution) else v)
            for k, v in params.items()
        }
        study.add_trial(
            optuna.trial.create_trial(
                params=params, distributions={k: dists[k] for k in params}, value=float(score)
            )
        )
    made: dict[str, str] = {}
    n = len(study.trials)
    for name, fn in (
        ("param_importances", ovm.plot_param_importances),
        ("parallel_coordinate", ovm.plot_parallel_coordinate),
    ):
        if n < 2:
            made[name] = f"skipped: {n} scored trial(s), 2 needed"
            continue
        try:
            fn(study)
        except (
            ValueError,
            RuntimeError,
            ZeroDivisionError,
        ) as exc:  # e.g. every trial sampled the same values
            made[name] = f"skipped: {exc}"
            continue
        fig = plt.gcf()
        path = out / f"{name}.png"
        fig.set_size_inches(8, 5)
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)
        made[name] = str(path)
    return made


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))
