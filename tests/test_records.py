"""The work dir's plain JSON records (``train_config.json``, ``tracking.json``, ``progress.json``,
``cv/summary.json``) carry ``schema_version``: a newer automed's version is refused with the file, the value and the
fix; a record written by an earlier automed, without the key, still loads (work dirs on users' disks keep working)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from automed.artifacts import check_schema_version
from automed.errors import ArtifactError
from automed.records import read_cv_summary, read_progress, read_tracking, read_train_config
from automed.workdir import WorkDir

READERS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "train_config.json": read_train_config,
    "tracking.json": read_tracking,
    "progress.json": read_progress,
    "summary.json": read_cv_summary,
}


@pytest.mark.parametrize("name", READERS)
def test_a_newer_version_is_refused_naming_the_file_the_value_and_the_fix(tmp_path: Path, name: str) -> None:
    f = tmp_path / name
    f.write_text(json.dumps({"schema_version": 2, "history": [], "dataset": "D"}))
    with pytest.raises(ArtifactError) as e:
        READERS[name](f)
    text = str(e.value)
    assert str(f) in text and f"{name} schema_version must be 1" in text
    assert "2 (written by a newer automed)" in text and "use the automed version that wrote it" in text


@pytest.mark.parametrize("name", READERS)
def test_a_record_written_before_the_version_loads_as_version_1(tmp_path: Path, name: str) -> None:
    f = tmp_path / name
    f.write_text(json.dumps({"dataset": "D", "history": [{"epoch": 0}]}))
    assert READERS[name](f) == {"dataset": "D", "history": [{"epoch": 0}]}
    f.write_text(json.dumps({"schema_version": 1, "uri": "sqlite:///m.db"}))
    assert READERS[name](f)["uri"] == "sqlite:///m.db"


def test_a_record_that_is_no_json_object_or_a_bogus_version_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "tracking.json"
    f.write_text("[1, 2]")
    with pytest.raises(ArtifactError, match=r"must be a JSON object.*list"):
        read_tracking(f)
    for bogus in (0, "1", True, None):
        f.write_text(json.dumps({"schema_version": bogus}))
        with pytest.raises(ArtifactError, match="schema_version must be 1") as e:
            read_tracking(f)
        assert "newer automed" not in str(e.value)  # only a higher version is a newer automed's


def test_artifacts_that_always_carried_a_version_still_require_it(tmp_path: Path) -> None:
    """``missing`` is opt-in: fingerprint.json, plan.json (always versioned) still refuse a file without one."""
    f = tmp_path / "plan.json"
    with pytest.raises(ArtifactError, match=r"schema_version must be 1.*None"):
        check_schema_version(f, {}, 1, what="plan.json")
    check_schema_version(f, {}, 1, what="plan.json", missing=1)
    with pytest.raises(ArtifactError, match="schema_version must be 2"):
        check_schema_version(f, {}, 2, what="model.json", missing=1)


def test_a_folds_progress_carries_its_version_and_an_earlier_one_still_reads(tmp_path: Path) -> None:
    from automed.train.state import EpochLog, TrainState, finished_result, fold_finished

    state = TrainState(epoch=1, schedule_reason="fixed", optimizer="sgd", lr0=0.01, stopped_early=True)
    state.history.append(EpochLog(0, 1.0, 0.9, [0.5], 0.5, 0.5, 0.01, 2.0, 0.1, 10))
    state.write_progress(tmp_path, finished=True)
    (tmp_path / "checkpoint_final.pt").write_bytes(b"")
    written = json.loads((tmp_path / "progress.json").read_text())
    assert next(iter(written)) == "schema_version" and written["schema_version"] == 1
    assert fold_finished(tmp_path) and finished_result(tmp_path, 0).history == state.history
    # as an earlier automed wrote it (no version, the pre-rename history keys)
    old = {k: v for k, v in written.items() if k != "schema_version"}
    old["history"] = [
        {"mean_fg_dice" if k == "val_score" else k: v for k, v in h.items()} for h in old["history"]
    ]
    (tmp_path / "progress.json").write_text(json.dumps(old))
    assert fold_finished(tmp_path) and finished_result(tmp_path, 0).history == state.history
    (tmp_path / "progress.json").write_text(json.dumps({**old, "schema_version": 2}))
    with pytest.raises(ArtifactError, match="written by a newer automed"):
        fold_finished(tmp_path)


def test_the_cv_summary_carries_its_version_in_the_file_only(tmp_path: Path) -> None:
    """Segmentation and image-level tasks write it; the summary a training returns (and logs) has no version."""
    from automed.evaluate.metrics import label_metrics
    from automed.evaluate.summary import metrics_rows, write_summary
    from automed.tasks.regression import Regression

    full = np.zeros((4, 4, 4), bool)
    full[1:3, 1:3, 1:3] = True
    rows = metrics_rows("a", 0, {1: label_metrics(full, full, (1, 1, 1))}, {1: "x"})
    wd = WorkDir(tmp_path / "seg")
    seg = write_summary(rows, wd.cv_metrics, wd.cv_summary)
    wd2 = WorkDir(tmp_path / "reg")
    reg = Regression().write_summary(
        [{"case": c, "fold": 0, "target": t, "prediction": t + 0.5} for c, t in (("a", 1.0), ("b", 3.0))],
        wd2.cv_metrics,
        wd2.cv_summary,
    )
    for summary, w in ((seg, wd), (reg, wd2)):
        assert "schema_version" not in summary
        assert read_cv_summary(w.cv_summary) == {"schema_version": 1, **json.loads(json.dumps(summary))}


def test_registering_stamps_tracking_json_and_keeps_what_it_held(tmp_path: Path) -> None:
    from automed.select.register import _remember, registered_version

    track = WorkDir(tmp_path).tracking
    track.write_text(
        json.dumps({"uri": "sqlite:///m.db", "experiment": "e", "parent_run_id": "r1"})
    )  # earlier
    _remember(tmp_path, {"name": "m", "version": "3"})
    saved = json.loads(track.read_text())
    assert saved == {"schema_version": 1, "uri": "sqlite:///m.db", "experiment": "e", "parent_run_id": "r1",
                     "registered": {"name": "m", "version": "3"}}  # fmt: skip
    assert registered_version(tmp_path) == {"name": "m", "version": "3"}
    track.write_text(json.dumps({**saved, "schema_version": 2}))
    with pytest.raises(ArtifactError, match=r"tracking.json schema_version must be 1"):
        registered_version(tmp_path)


def test_a_resume_refuses_a_newer_train_config_or_tracking_before_anything_runs(tmp_path: Path) -> None:
    from automed.workflow.resume_checks import refuse_a_copy, refuse_ignored_on_resume

    wd = WorkDir(tmp_path)
    config = {"dataset": "DS", "config": {}, "options": {"folds": 5, "preset": "default"}}
    wd.train_config.write_text(json.dumps(config))  # as written before the version: resumes as it did
    refuse_ignored_on_resume(tmp_path, {"--preset": "default"})
    wd.train_config.write_text(json.dumps({"schema_version": 2, **config}))
    with pytest.raises(ArtifactError, match=r"train_config.json schema_version must be 1.*newer automed"):
        refuse_ignored_on_resume(tmp_path, {"--preset": "default"})
    refuse_a_copy(tmp_path, {"uri": "sqlite:///m.db", "workdir": str(tmp_path.resolve())})  # an earlier one
    with pytest.raises(ArtifactError, match=r"tracking.json schema_version must be 1"):
        refuse_a_copy(tmp_path, {"schema_version": 2, "workdir": str(tmp_path.resolve())})
    with pytest.raises(
        ArtifactError, match=r"tracking.json's registry must be the model registry .*; found 5"
    ):
        refuse_a_copy(
            tmp_path, {"registry": 5, "workdir": str(tmp_path.resolve())}
        )  # (an AttributeError later)


def test_the_training_state_stamps_tracking_json_and_keeps_what_it_held(tmp_path: Path) -> None:
    from automed.workflow.train_options import TrackingState

    path = WorkDir(tmp_path).tracking
    path.write_text(
        json.dumps({"registered": {"name": "m", "version": "1"}})
    )  # an earlier, unversioned record
    TrackingState(path, uri="sqlite:///x.db", experiment="e", parent_run_id="p").save()
    saved = json.loads(path.read_text())
    assert saved["schema_version"] == 1 and saved["registered"] == {"name": "m", "version": "1"}
    assert saved["parent_run_id"] == "p"
    path.write_text(json.dumps({**saved, "schema_version": 2}))
    with pytest.raises(ArtifactError, match=r"tracking.json schema_version must be 1"):
        TrackingState(path, uri="sqlite:///x.db", experiment="e").save()
