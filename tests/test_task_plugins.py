"""The verbs after training (export, select, report) ask the task plug-in what differs between per-voxel and
per-image outputs, so a task registered in ``automed.tasks.registry`` needs no branch of its own in them."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pandas as pd
import pytest
from scipy import stats

from automed.errors import ArtifactError
from automed.parallel import Stages
from automed.tasks.base import Selected
from automed.tasks.registry import TASKS


def test_each_task_says_whether_predict_runs_its_export() -> None:
    assert TASKS.get("segmentation").links_export
    assert not TASKS.get("classification").links_export  # image-level exports run through their predict.py
    assert not TASKS.get("regression").links_export


def test_an_image_level_pair_is_refused_by_its_task_naming_the_model(tmp_path: Path) -> None:
    from automed.infer.image_level import ImageEnsemble

    pair = object.__new__(ImageEnsemble)  # the task refuses it before reading any of it
    with pytest.raises(
        ArtifactError, match="an export holds one classification or regression training"
    ) as err:
        TASKS.get("regression").export(
            pair,
            tmp_path / "sel",
            tmp_path / "out",
            ["onnx"],
            None,
            ov_precision="f32",
            repeats=1,
            step=print,
        )
    assert str(tmp_path / "sel") in str(err.value)
    assert "export each member's work dir" in str(err.value)


def test_the_bundle_model_is_the_class_its_exporter_names(tmp_path: Path) -> None:
    """The check of a written bundle loads the runtime class the exporter wrote it for, from the bundle's own copy
    of the runtime (no guess from the task's name)."""
    from automed.export.bundle import shipped_model

    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / "__init__.py").write_text("")
    (runtime / "backends.py").write_text("def choose_runtime(asked, files):\n    return 'onnx'\n")
    (runtime / "table_model.py").write_text(
        "class TableModel:\n"
        "    def __init__(self, folder, meta, runtime, threads=None):\n"
        "        self.meta, self.threads = meta, threads\n"
    )
    (tmp_path / "preprocess.json").write_text('{"task": "segmentation", "files": {"onnx": []}}')
    with shipped_model(tmp_path, "table_model.TableModel", threads=2) as (name, model):
        assert name == "onnx"
        assert type(model).__name__ == "TableModel" and model.threads == 2


class _Ordinal:
    """A fourth task as a plug-in would add it: ``automed select`` must take its choice as it is."""

    image_level = True  # one prediction per image (the Task protocol's attribute)

    def __init__(self) -> None:
        self.asked: dict[str, Any] = {}

    def select(self, workdirs: list[Path], out: Path, **options: Any) -> Selected:
        self.asked = {"workdirs": workdirs, "out": out, **options}
        chosen = {"candidate": "A", "members": [str(workdirs[0])]}
        return Selected({"chosen": chosen, "postprocessing": []}, 0.7, {"cv_kappa_chosen": 0.7})


def test_select_takes_the_tasks_choice_and_records_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import automed.workflow.select as wf

    work = tmp_path / "A"
    work.mkdir()
    (work / "model.json").write_text("{}")
    task, logged = _Ordinal(), {}

    class Tracker:
        def log_metrics(self, run: str, metrics: dict[str, float | None]) -> None:
            logged[run] = metrics

    monkeypatch.setattr(wf, "read_meta", lambda path: SimpleNamespace(task="ordinal"))
    monkeypatch.setattr(wf, "task_for", lambda name, source: task if name == "ordinal" else None)
    monkeypatch.setattr(
        wf, "open_select_run", lambda workdirs, chosen, uri, red: (Tracker(), f"run-{chosen}")
    )
    monkeypatch.setattr(wf, "record_choice", lambda res, out, score, tracker, run: {**res, "score": score})
    res = wf.select([work], tmp_path / "S", latency_target=2.0, max_cases=3)
    shown = task.asked.pop("progress")  # the stages it shows as they go
    assert isinstance(shown, Stages) and shown.show
    assert task.asked == {
        "workdirs": [work],
        "out": tmp_path / "S",
        "inference": True,
        "latency_target": 2.0,
        "max_cases": 3,
        "device": None,
    }
    assert logged == {"run-A": {"cv_kappa_chosen": 0.7}}
    assert res["score"] == 0.7 and "registered" not in res  # not settled: nothing registered again


def test_a_settled_training_is_registered_again_after_its_choice_is_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import automed.workflow.select as wf

    out, seen = tmp_path / "S", {}

    def reregister(member: Path, score: float, redactor: Any) -> dict[str, Any]:
        seen["on_disk"] = json.loads((out / "selection.json").read_text())
        seen["args"] = (member, score)
        return {"version": 4}

    monkeypatch.setattr(wf, "registered_version", lambda member: 3)
    monkeypatch.setattr(wf, "reregister", reregister)
    chosen = {"candidate": "A", "members": [str(tmp_path / "A")]}
    sel = Selected({"chosen": chosen}, 0.8, {}, settled=True)
    wf._register_settled(sel, out, cast(Any, None))
    assert seen["on_disk"]["registered"] == {"state": "pending: the registry had not answered yet"}
    assert seen["args"] == (tmp_path / "A", 0.8)
    assert sel.record["registered"] == {"version": 4}


def test_classification_runs_are_compared_by_mcnemar_on_the_cases_one_gets_right(tmp_path: Path) -> None:
    task = TASKS.get("classification")
    cases = [f"c{i}" for i in range(12)]
    target = ["a", "b"] * 6
    wrong_b = {"c0", "c1", "c2", "c3", "c4", "c5", "c6"}  # b errs on 7 cases, a on 1 of them and on c11
    flip = {"a": "b", "b": "a"}

    def run(name: str, wrong: set[str]) -> pd.DataFrame:
        predicted = [flip[t] if c in wrong else t for c, t in zip(cases, target, strict=True)]
        return pd.DataFrame({"run": name, "case": cases, "target": target, "prediction": predicted})

    table = pd.concat([run("A", {"c0", "c11"}), run("B", wrong_b)])
    both = task.case_outcomes(table)
    assert both["correct"].tolist() == [float(c not in {"c0", "c11"}) for c in cases] + [
        float(c not in wrong_b) for c in cases
    ]
    (test,) = task.paired_tests(both)
    assert (test["test"], test["only_a_right"], test["only_b_right"], test["better"]) == (
        "McNemar (exact)",
        6,
        1,
        "A",
    )
    assert test["p_value"] == pytest.approx(stats.binomtest(1, 7, 0.5).pvalue)
    assert task.summary_figures_title == "ROC / PR, confusion, calibration"
    assert not task.summarizable([{"case": "c0", "target": "a", "prediction": "a"}])  # hard labels only


def test_a_report_reads_a_run_as_image_level_when_its_task_says_so(tmp_path: Path) -> None:
    from automed.workflow.report_image import image_level_kind

    for problem, kind in (("regression", "regression"), ("classification", "classification"),
                          ("segmentation", None), ("synthesis", None)):  # fmt: skip
        run = tmp_path / problem
        run.mkdir()
        (run / "summary.json").write_text(json.dumps({"schema_version": 1, "problem": problem}))
        assert image_level_kind(run) == kind
    work = tmp_path / "work"
    work.mkdir()
    (work / "model.json").write_text(json.dumps({"task": "regression"}))
    assert image_level_kind(work) == "regression"
