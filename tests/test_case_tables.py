"""CV tables of image-level runs read back as written: class names and case IDs that pandas takes for missing
values (``None``, ``NA``, ``null``) or numbers (``007``) stay text in ``automed select`` and ``automed report``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from automed.select.image_level import compare_image_level
from automed.tasks.registry import task_for
from automed.workflow.report_image import read_image_run, write_image_level

ROWS = [
    ("null", 0, "None", "None", 0.8, 0.2),
    ("007", 0, "None", "NA", 0.4, 0.6),
    ("NA", 1, "NA", "NA", 0.3, 0.7),
    ("case_4", 1, "NA", "None", 0.6, 0.4),
]


def _workdir(root: Path, flip: bool = False) -> Path:
    (root / "cv").mkdir(parents=True)
    lines = ["case,fold,target,prediction,probability_NA,probability_None"]
    for case, fold, target, pred, p_none, p_na in ROWS:
        a, b = (p_none, p_na) if flip else (p_na, p_none)
        lines.append(f"{case},{fold},{target},{pred},{a},{b}")
    (root / "cv" / "metrics.csv").write_text("\n".join(lines) + "\n")
    (root / "model.json").write_text('{"task": "classification"}')
    return root


def test_select_keeps_class_names_pandas_reads_as_missing(tmp_path: Path) -> None:
    a, b = _workdir(tmp_path / "a"), _workdir(tmp_path / "b", flip=True)
    res = compare_image_level([a, b], task_for("classification", a))
    assert res["n_cases"] == 4
    chosen = res["chosen"]["summary"]
    assert set(chosen["per_class"]) == {"NA", "None"}
    assert chosen["auc_macro"] == pytest.approx(0.75)


def test_report_keeps_class_names_and_case_ids_as_text(tmp_path: Path) -> None:
    run = _workdir(tmp_path / "run")
    table, _ = read_image_run(run)
    assert list(table["case"]) == ["null", "007", "NA", "case_4"]
    assert list(table["target"]) == ["None", "None", "NA", "NA"]
    out = tmp_path / "rep"
    out.mkdir()
    write_image_level([table], {}, ["run"], "classification", out)
    assert "007" in (out / "cases.csv").read_text()


def test_report_of_a_metrics_output_shows_its_numbers(tmp_path: Path) -> None:
    # `automed metrics` writes per-case rows without probabilities: the numbers live in its summary.json
    run = tmp_path / "scores"
    run.mkdir()
    (run / "metrics.csv").write_text("case,target,prediction,correct\na,x,x,True\nb,y,x,False\n")
    summary = {
        "schema_version": 1,
        "problem": "classification",
        "n_cases": 2,
        "accuracy": 0.5,
        "auc_macro": 0.75,
    }
    (run / "summary.json").write_text(json.dumps(summary))
    table, _ = read_image_run(run)
    out = tmp_path / "rep"
    out.mkdir()
    write_image_level([table], {}, ["scores"], "classification", out)
    page = (out / "report.html").read_text()
    assert "auc_macro" in page and "0.75" in page
    assert "n_cases" not in page  # the cases column counts them once
