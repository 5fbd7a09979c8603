"""What ``automed report`` accepts besides training work dirs and ``automed metrics`` outputs:

- a **selection** folder (``selection.json`` of ``automed select`` or a sweep's ``selection/``): its candidate
  trainings are reported side by side, and the page gets the selection's table (candidates, the chosen one);
- an **MLflow run** (``runs:/<run_id>`` in the store of ``--tracking-uri``, by default automed's): the
  training run's ``cv/metrics.csv`` artifact (case IDs as the pseudonyms it was logged with) and its fold runs'
  metric histories as training curves, laid out like a work dir in a temporary folder the caller removes.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automed.artifacts import read_json, write_json_atomic
from automed.errors import ArtifactError
from automed.records import PROGRESS, PROGRESS_VERSION, fits, shown, stamped
from automed.select.selection import SELECTION_FILE

log = logging.getLogger("automed")
RUN_PREFIX = "runs:/"


def _tasks() -> list[Any]:
    from automed.tasks.registry import TASKS

    return [TASKS.get(n) for n in TASKS.names()]


@dataclass
class Inputs:
    paths: list[Path]
    selections: list[dict[str, Any]] = field(default_factory=list)  # selection.json contents, for the page
    names: dict[Path, str] = field(default_factory=dict)  # display names of materialized MLflow runs


def resolve(runs: list[str | Path], scratch: Path, tracking_uri: str | None = None) -> Inputs:
    """Local paths for every RUN (selections expanded into their candidates, MLflow runs materialized under
    ``scratch``)."""
    out = Inputs([])
    for r in runs:
        text = str(r)
        if text.startswith(RUN_PREFIX):
            run_id = text[len(RUN_PREFIX) :].strip("/").split("/")[0]
            path = _materialize(run_id, scratch / run_id, tracking_uri)
            out.paths.append(path)
            out.names[path] = f"run-{run_id[:8]}"
            continue
        p = Path(r)
        if not p.exists():  # before any other rule: a mistyped path was told it was "no segmentation run"
            raise ArtifactError.single(
                p, "every run given to a report must exist", "missing",
                "check the path: a training work dir, an `automed metrics` output, a selection folder or runs:/RUN_ID",
            )  # fmt: skip
        sel = p / SELECTION_FILE if p.is_dir() else p
        if sel.name == SELECTION_FILE and sel.is_file():
            data = _selection(sel)
            members = list(dict.fromkeys(m for c in data.get("candidates", []) for m in c.get("members", [])))
            missing = [m for m in members if not Path(m).is_dir()]
            if not members or missing:
                raise ArtifactError.single(sel, "a selection's candidate trainings must still exist",
                                           f"missing: {missing[:3]}" if missing else "no candidates",
                                           "report the training work dirs themselves")  # fmt: skip
            out.paths += [Path(m) for m in members]
            out.selections.append({**data, "folder": sel.parent.name})  # named on the page
            continue
        out.paths.append(p)
    out.paths = _once(out.paths)
    return out


def _once(paths: list[Path]) -> list[Path]:
    """Each run once: given twice, or given beside a selection folder that holds it, it had been compared with
    itself (``W vs W-2``, p = 1), and those tests counted in the Holm correction of the real ones."""
    seen: dict[str, Path] = {}
    for p in paths:
        key = os.path.realpath(p)
        if key in seen:
            log.warning(
                "%s is %s given before: compared once", p, "the run" if Path(p) == seen[key] else seen[key]
            )
            continue
        seen[key] = p
    return list(seen.values())


def _selection(path: Path) -> dict[str, Any]:
    """A selection folder's ``selection.json`` as a report reads it: an object whose ``candidates`` (where
    written) each list their ``members``, the trainings compared (text). A damaged one is refused naming the file,
    the rule, the value and the fix (it had crashed the report with a bare JSONDecodeError or AttributeError)."""
    fix = "run automed select again into this folder (-o), or report the training work dirs themselves"
    data = read_json(path, what=SELECTION_FILE, damaged_fix=fix)
    if not fits(dict[str, Any], data):
        raise ArtifactError.single(path, f"{SELECTION_FILE} must be a JSON object", shown(data), fix)
    candidates = data.get("candidates", [])
    if not (
        fits(list[dict[str, Any]], candidates)
        and all(fits(list[str], c.get("members", [])) for c in candidates)
    ):
        rule = f"{SELECTION_FILE}'s candidates must each list their members, the trainings compared (text)"
        raise ArtifactError.single(path, rule, shown(candidates), fix)
    unnamed = [c for c in candidates if not isinstance(c.get("candidate"), str)]
    if unnamed:  # the page's table names each row and marks the chosen one by this name
        rule = f"{SELECTION_FILE}'s candidates must each have their name (candidate: text)"
        raise ArtifactError.single(path, rule, shown(unnamed[0]), fix)
    chosen = data.get("chosen")
    if candidates and not (fits(dict[str, Any], chosen) and isinstance(chosen.get("candidate"), str)):
        rule = (
            f"{SELECTION_FILE} must name its chosen candidate (chosen: an object with its candidate's name)"
        )
        raise ArtifactError.single(path, rule, shown(chosen), fix)
    result: dict[str, Any] = data
    return result


def _materialize(run_id: str, dest: Path, tracking_uri: str | None) -> Path:
    """The training run ``run_id`` as a work-dir-like folder: ``cv/metrics.csv``, one ``progress.json`` per fold
    run (its per-epoch metrics) and, for image-level runs, ``summary.json`` naming the problem."""
    from mlflow.exceptions import MlflowException

    from automed.tasks.registry import TASKS
    from automed.tracking import bounded_client, resolve_uri

    client = bounded_client(resolve_uri(tracking_uri))  # a server gone: the clear error in seconds
    rule = "an MLflow run given to a report is an automed training run with its cv/ artifacts"
    try:
        run = client.get_run(run_id)
    except (MlflowException, OSError) as exc:  # not in this store
        raise ArtifactError.single(f"{RUN_PREFIX}{run_id}", rule, str(exc).splitlines()[0][:200],
                                   "pass --tracking-uri of the store that holds it, or a training work dir") from exc  # fmt: skip
    try:
        dest.mkdir(parents=True, exist_ok=True)
        client.download_artifacts(run_id, "cv", str(dest))
    except (MlflowException, OSError) as exc:  # in the store, but no CV of its own
        tags = run.data.tags
        what = "a sweep trial's run" if "trial" in tags else "a fold's run" if "fold" in tags else "a run"
        raise ArtifactError.single(
            f"{RUN_PREFIX}{run_id}", rule, f"{what} without cv/ (not a concluded training's parent run)",
            "give the training's parent run (a sweep's trials: their work dirs, or the sweep's selection folder)",
        ) from exc  # fmt: skip
    if not (dest / "cv" / "metrics.csv").is_file():
        raise ArtifactError.single(f"{RUN_PREFIX}{run_id}", "the run has cv/metrics.csv", "absent (not a "
                                   "finished training run)", "give the training's parent run")  # fmt: skip
    task = _task_of(run.data.metrics, dest / "cv" / "metrics.csv")
    if TASKS.get(task).image_level:
        # the problem named as `automed metrics` names it, so that the report reads the table as its task's
        write_json_atomic(dest / "summary.json", {"schema_version": 1, "problem": task})
    parent = f"tags.`mlflow.parentRunId` = '{run_id}'"
    for child in client.search_runs([run.info.experiment_id], filter_string=parent, max_results=1000):
        fold = child.data.tags.get("fold")
        if fold is None:
            continue
        config = child.data.tags.get("configuration", "run")
        history = _history(client, child.info.run_id, child.data.metrics)
        if history:
            write_json_atomic(
                dest / "train" / config / f"fold_{fold}" / PROGRESS,
                stamped({"history": history}, PROGRESS_VERSION),
            )
    return dest


def _task_of(metrics: dict[str, float], cv_csv: Path) -> str:
    """Which task the run trained: its CV score's metric name, else (an undefined score is never logged) the CV
    table's columns - Dice per label, class probabilities, or values."""
    import pandas as pd

    logged = next((t.name for t in _tasks() if t.score_name and t.score_name in metrics), None)
    if logged is not None:
        return str(logged)
    columns = set(pd.read_csv(cv_csv, nrows=1).columns)
    if "dice" in columns:
        return "segmentation"
    return "classification" if any(c.startswith("probability_") for c in columns) else "regression"


def _history(client: Any, run_id: str, logged: dict[str, float]) -> list[dict[str, Any]]:
    """Per-epoch rows (``epoch``, ``train_loss``, ``val_loss``, ``val_score``, ``learning_rate``) from a fold
    run's metric histories (step = epoch)."""
    keys = {"train_loss": "train_loss", "val_loss": "val_loss", "learning_rate": "learning_rate"}
    keys.update({t.epoch_metric: "val_score" for t in _tasks() if t.epoch_metric in logged})
    rows: dict[int, dict[str, Any]] = {}
    for metric, name in keys.items():
        if metric not in logged:
            continue
        for m in client.get_metric_history(run_id, metric):
            rows.setdefault(int(m.step), {"epoch": int(m.step)})[name] = float(m.value)
    return [rows[k] for k in sorted(rows)]
