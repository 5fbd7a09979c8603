"""The verbs after training (export, select, report) ask the task plug-in what differs between per-voxel and
per-image outputs, so a task registered in ``automed.tasks.registry`` needs no branch of its own in them."""

from __future__ import annotations

from pathlib import Path

import pytest

from automed.errors import ArtifactError
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
