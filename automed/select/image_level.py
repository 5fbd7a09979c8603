"""Selection among image-level trainings (classification, regression) on their cross-validation tables.

Candidates are every training and every pair of trainings; a pair's CV prediction of a case averages the members'
(class probabilities, or values), exactly as the registered pair predicts. Each candidate is scored by the task (macro
AUC, or R²) on the same cases; the best wins, a single training when a pair is not better (fewer networks to run).
There is no postprocessing to decide for a table of predictions.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from automed.errors import ArtifactError
from automed.evaluate.case_tables import PREFIX, read_case_table
from automed.parallel import Stages
from automed.select.names import candidate_names
from automed.tasks.base import Selected
from automed.workdir import WorkDir, with_relative_members

if TYPE_CHECKING:
    from automed.tasks.base import Task

EPS = 1e-9


def _table(workdir: Path, kind: str) -> pd.DataFrame:
    path = WorkDir(workdir).cv_metrics
    if not path.is_file():
        raise ArtifactError.single(
            path, "a training's CV table must exist", "missing", f"train {workdir} first"
        )
    return read_case_table(path, kind).set_index("case").sort_index()


def combine(tables: list[pd.DataFrame]) -> list[dict[str, Any]]:
    """The members' CV rows averaged per case (probabilities -> the arg-max class; values -> their mean)."""
    first = tables[0]
    probs = [c for c in first.columns if c.startswith(PREFIX)]
    out = first[["fold", "target"]].copy()
    if probs:
        mean = np.mean([t[probs].to_numpy(dtype=np.float64) for t in tables], axis=0)
        out[probs] = mean
        out["prediction"] = [probs[k].removeprefix(PREFIX) for k in mean.argmax(1)]
    else:
        out["prediction"] = np.mean([t["prediction"].to_numpy(dtype=np.float64) for t in tables], axis=0)
    return [{"case": cid, **row} for cid, row in out.iterrows()]


def _same_target(a: Any, b: Any) -> bool:
    """One target: the same class name, or regression values equal to their printed precision."""
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    return bool(np.isclose(float(a), float(b), rtol=1e-9, atol=0.0))


def _shown(v: Any) -> str:
    return repr(v) if isinstance(v, str) else f"{float(v):g}"


def _refuse_other_datasets(tables: dict[Path, pd.DataFrame], name: dict[Path, str]) -> None:
    """Trainings compared on their shared cases must predict the same classes and hold one target per shared case:
    a pair averages its members' probabilities column by column and is scored on the first member's targets, so
    another labeling of the same images (or another dataset numbering its cases alike) would be compared, paired
    and chosen as if it were the same question."""
    (first, a), *rest = tables.items()
    classes = sorted(c.removeprefix(PREFIX) for c in a.columns if c.startswith(PREFIX))
    for wd, t in rest:
        other = sorted(c.removeprefix(PREFIX) for c in t.columns if c.startswith(PREFIX))
        if other != classes:
            raise ArtifactError.single(
                WorkDir(wd).cv_metrics,
                "trainings compared in one selection predict the same classes",
                f"{name[first]}: {', '.join(classes) or 'a value'}; {name[wd]}: {', '.join(other) or 'a value'}",
                "select trainings of one dataset together (train again on the same CSV or folders)",
            )
        differ = [c for c in a.index if not _same_target(a.at[c, "target"], t.at[c, "target"])]
        if differ:
            shown = "; ".join(
                f"{c}: {_shown(a.at[c, 'target'])} in {name[first]}, {_shown(t.at[c, 'target'])} in {name[wd]}"
                for c in differ[:3]
            )
            raise ArtifactError.single(
                WorkDir(wd).cv_metrics,
                "trainings compared on CV hold one target in every training for each case they share (one dataset)",
                f"{len(differ)} of {len(a.index)} shared case(s) with another target ({shown})",
                "select trainings of one version of the dataset together: train the others again on it",
            )


def compare_image_level(workdirs: list[Path], task: Task, progress: Stages | None = None) -> dict[str, Any]:
    """Every training and pair scored on the cases all of them validated; the choice and the evidence. Trainings
    of other classes, or with another target for a shared case, are refused (:func:`_refuse_other_datasets`);
    ``progress`` shows the candidates as they are scored."""
    tables = {wd: _table(wd, task.name) for wd in workdirs}
    cases = sorted(set.intersection(*(set(t.index) for t in tables.values())))
    if not cases:
        raise ArtifactError.single(
            workdirs[0],
            "trainings compared on CV must share validated cases",
            "none in common",
            "train them on the same dataset",
        )
    tables = {wd: t.loc[cases] for wd, t in tables.items()}
    name = dict(zip(workdirs, candidate_names(workdirs), strict=True))
    _refuse_other_datasets(tables, name)
    combos = [(wd,) for wd in workdirs] + list(itertools.combinations(workdirs, 2))
    candidates: list[dict[str, Any]] = []
    with (progress or Stages(show=False)).stage(
        f"scoring candidates on {len(cases)} CV cases", len(combos)
    ) as done:
        for combo in combos:
            summary = task.summarize(combine([tables[wd] for wd in combo]))
            candidates.append(
                {
                    "candidate": " + ".join(name[wd] for wd in combo),
                    "members": [str(wd) for wd in combo],
                    "score": task.score(summary),
                    "summary": summary,
                }
            )
            done()
    best = max(candidates, key=lambda c: c["score"] - EPS * len(c["members"]))
    return {
        "schema_version": 1,
        "task": task.name,
        "criterion": f"CV {task.score_name.removeprefix('cv_')} on the {len(cases)} cases every training validated "
        "(a pair averages its members' predictions); a pair only when it scores higher than every single training",
        "n_cases": len(cases),
        "candidates": [{k: v for k, v in c.items() if k != "summary"} for c in candidates],
        "chosen": {"candidate": best["candidate"], "members": best["members"], "summary": best["summary"]},
        "cv_score_final": best["score"],
        "postprocessing": [],
        "decisions": [],
    }


def select_image_level(
    workdirs: list[Path], out: Path, task: Task, progress: Stages | None = None
) -> Selected:
    """The choice among image-level trainings, its CV score and the select run's metrics. A single training is the
    model as it is (nothing to postprocess, no ``inference.json``)."""
    res = compare_image_level(workdirs, task, progress)
    res["chosen"] = with_relative_members(res["chosen"], out)
    final = float(res["cv_score_final"])
    metrics: dict[str, float | None] = {f"{task.score_name}_chosen": final}
    for i, row in enumerate(res["candidates"]):
        metrics[f"candidate_{i}_{task.score_name}"] = row["score"]
    return Selected(res, final, metrics)
