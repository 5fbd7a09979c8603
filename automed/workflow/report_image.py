"""``automed report`` for runs of image-level tasks (training work dirs, or ``automed metrics`` outputs of those
problems): per run the cross-validation numbers and the task's summary figures (classification: ROC/PR curves,
confusion matrix and calibration; regression: predicted vs true), training curves of every fold, the task's paired
tests between runs (exact McNemar on the cases one run gets right and the other wrong; Wilcoxon on absolute errors)
and the per-case table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automed.artifacts import read_json
from automed.errors import ArtifactError
from automed.evaluate.case_tables import read_case_table
from automed.evaluate.report import curves, reference_mismatches
from automed.records import PROGRESS, fits, read_progress, shown
from automed.tasks.registry import TASKS, task_for
from automed.train.meta import model_task
from automed.workdir import WorkDir
from automed.workflow.report_page import not_compared, page, png, table

SHOWN_METRICS = ("accuracy", "balanced_accuracy", "auc_macro", "f1_macro", "ece")


def _image_level(name: str) -> str | None:
    return name if name in TASKS and TASKS.get(name).image_level else None


def image_level_kind(path: Path) -> str | None:
    """The task of a run whose task predicts one row per image (``classification``, ``regression``), else
    ``None``: a training's (``model.json``) or an ``automed metrics`` output's problem (``summary.json``)."""
    wd = WorkDir(path)
    if path.is_dir() and wd.model.is_file():
        return _image_level(model_task(wd.model))
    summary = (path if path.is_dir() else path.parent) / "summary.json"
    if summary.is_file():
        return _image_level(str(read_metrics_summary(summary).get("problem")))
    return None


def read_metrics_summary(path: Path) -> dict[str, Any]:
    """An ``automed metrics`` output's ``summary.json`` (its problem and numbers); a damaged one is refused naming
    the file, the rule, the value and the fix (it had crashed the report with a bare JSONDecodeError or
    AttributeError)."""
    fix = f"run automed metrics again into {path.parent} (it writes summary.json anew), or leave that run out"
    data = read_json(path, what="summary.json", damaged_fix=fix)
    if not fits(dict[str, Any], data):
        raise ArtifactError.single(path, "summary.json must be a JSON object", shown(data), fix)
    if not fits(str | None, data.get("problem")):
        raise ArtifactError.single(path, "summary.json's problem must be text", shown(data["problem"]), fix)
    result: dict[str, Any] = data
    return result


def read_image_run(path: Path) -> tuple[pd.DataFrame, dict[str, list[dict[str, Any]]]]:
    wd = WorkDir(path)
    kind = image_level_kind(path) or ""
    if path.is_dir() and wd.cv_metrics.is_file():
        hist = {}
        for prog in sorted((path / "train").glob(f"*/fold_*/{PROGRESS}")):
            hist[f"{prog.parent.parent.name} {prog.parent.name}"] = read_progress(prog)["history"]
        return read_case_table(wd.cv_metrics, kind), hist
    if path.is_dir() and wd.model.is_file():  # a training without a CV table: an all-data (--folds all) model
        from automed.workflow.report_all_data import _linked_cv

        cv = _linked_cv(path)
        raise ArtifactError.single(
            path,
            "a classification or regression report compares cross-validations; an all-data model (--folds all) "
            "has none of its own",
            "no cv/metrics.csv",
            f"report the cross-validation it inherits instead: automed report {cv or 'CV_WORKDIR'} ...",
        )
    table = read_case_table(path / "metrics.csv" if path.is_dir() else path, kind)
    summary = (path if path.is_dir() else path.parent) / "summary.json"
    if summary.is_file():  # an `automed metrics` output: its numbers, as its rows carry no probabilities
        table.attrs["summary"] = read_metrics_summary(summary)
    return table, {}


def _rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {str(k): v for k, v in r.items() if not (isinstance(v, float) and np.isnan(v))}
        for r in df.to_dict("records")
    ]


def write_image_level(
    tables: list[pd.DataFrame],
    histories: dict[str, list[dict[str, Any]]],
    names: list[str],
    kind: str,
    folder: Path,
    extra: list[tuple[str, str]] | None = None,
) -> list[dict[str, Any]]:
    task = task_for(kind, "report")
    sections: list[tuple[str, str]] = []
    means = []
    for name, df in zip(names, tables, strict=True):
        rows = _rows(df)
        summary = task.summarize(rows) if task.summarizable(rows) else {}
        numbers = {k: v for k, v in summary.items() if isinstance(v, int | float)}
        if (
            not summary
        ):  # hard labels only: the numbers `automed metrics` computed (AUC from its probabilities)
            given = df.attrs.get("summary", {})
            numbers = {
                k: v
                for k, v in given.items()
                if isinstance(v, int | float) and not isinstance(v, bool) and k in SHOWN_METRICS
            }
        numbers.pop("n_cases", None)  # the "cases" column already counts them
        means.append({"run": name, "cases": len(rows), **numbers})
        if summary:
            figures = "".join(
                png(fig, folder / f"{name}_{file}") for file, fig in task.summary_figures(rows, summary)
            )
            sections.append((f"{name}: {task.summary_figures_title}", figures))
    scored = [
        n for n, df in zip(names, tables, strict=True) if "summary" in df.attrs
    ]  # automed metrics outputs
    title = "Cross-validation numbers per run"
    if scored:  # a test set scored by `automed metrics` is no cross-validation
        others = "; the others: cross-validation" if len(scored) < len(names) else ""
        title = f"Numbers per run ({', '.join(scored)}: the cases automed metrics scored{others})"
    sections.insert(0, (title, table(pd.DataFrame(means))))
    sections[1:1] = extra or []
    if histories:
        sections.append(("Training curves (every fold)", png(curves(histories), folder / "curves.png")))
    both = pd.concat([df.assign(run=n) for n, df in zip(names, tables, strict=True)], ignore_index=True)
    refuse_other_references(both, ["case"], "target")
    both = task.case_outcomes(both)
    tests = task.paired_tests(both) if len(names) > 1 else []
    if tests:
        pd.DataFrame(tests).to_csv(folder / "paired_tests.csv", index=False)
        sections.append(("Paired tests between runs (Holm-corrected)", table(pd.DataFrame(tests))))
    sections += not_compared(both)
    both.to_csv(folder / "cases.csv", index=False)
    sections.append(("Per case (first 300; all in cases.csv)", table(both.head(300))))
    (folder / "report.html").write_text(page(names, sections))
    return tests


def refuse_other_references(cases: pd.DataFrame, keys: list[str], column: str) -> None:
    """Runs whose cases of one ID were scored against other references (another target, another reference
    volume) are refused: their paired tests had compared different ground truths without a word."""
    if wrong := reference_mismatches(cases, keys, column):
        raise ArtifactError.single(
            "report",
            "the runs compared score each case against the same reference",
            f"{len(wrong)} case(s) with another {column} in another run, e.g. {'; '.join(wrong[:3])}",
            "compare runs scored against one set of references (the same test set or dataset)",
        )
