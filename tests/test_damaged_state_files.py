"""automed's own state files that a cascade, training (screening, a resume), prediction, the redactor and
anonymize's key read back damaged (not JSON, another type, a key missing): one automed cannot recompute is refused
naming the file, the rule, the value and the fix; one the next run recomputes is read as missing, with a warning,
and written anew. Each had crashed with a bare JSONDecodeError, KeyError, TypeError or AttributeError (see also
``test_damaged_report_records.py``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from automed.errors import ArtifactError, ConfigError
from automed.plan.planner import make_plan
from automed.plan.preset import load_preset
from automed.plan.schema import Plan
from automed.preprocess.previous_stage import link_previous, write_previous_stage
from automed.testing.fingerprints import synthetic_fingerprint
from automed.tools.deid_keys import KEY_SCHEMA, load_key
from automed.train.config import TrainConfig
from automed.workdir import WorkDir
from automed.workflow.disclosure import redactor_for
from automed.workflow.existing_folds import check_same_previous
from automed.workflow.predict_continue import RECORD, check_record
from automed.workflow.predict_wsi import model_mpp
from automed.workflow.resume_checks import refuse_a_copy, refuse_ignored_on_resume
from automed.workflow.screen import run_screening
from automed.workflow.train_options import TrackingState, TrainOptions
from tests.conftest import NOT_JSON, cascade_pair, refused_naming

# --- a cascade's first stage, link, manifest and preprocessed case properties ---------------------------------


def _case_props(casc: Path, plan: Plan, props: object) -> Path:
    """Each case's preprocessed properties in the cascade's work dir; the folder."""
    pre = WorkDir(casc).preprocessed / plan.configurations["3d_cascade_fullres"].data_identifier
    pre.mkdir(parents=True)
    for cid in ("a", "b"):
        (pre / f"{cid}.json").write_text(props if isinstance(props, str) else json.dumps(props))
    return pre


def test_a_cascade_refuses_a_first_stage_whose_model_json_is_damaged(tmp_path: Path) -> None:
    low, casc, plan = cascade_pair(tmp_path)
    (low / "model.json").write_text(NOT_JSON)
    with pytest.raises(ArtifactError) as exc:
        link_previous(casc, low, plan, "3d_cascade_fullres")
    refused_naming(exc, low / "model.json", "model.json")


@pytest.mark.parametrize("kept", [NOT_JSON, "[]", '{"workdir": 3, "configuration": "3d_lowres"}'])
def test_a_damaged_cascade_link_is_recorded_anew(
    tmp_path: Path, kept: str, caplog: pytest.LogCaptureFixture
) -> None:
    low, casc, plan = cascade_pair(tmp_path)
    WorkDir(casc).previous_link.write_text(kept)
    with caplog.at_level(logging.WARNING):
        link = link_previous(casc, low, plan, "3d_cascade_fullres")
    assert link["workdir"] == str(low.resolve()) and link["relative"] == "../LOW"
    assert json.loads(WorkDir(casc).previous_link.read_text()) == link
    assert "previous_stage.json" in caplog.text and "recorded anew" in caplog.text


def test_a_damaged_manifest_has_the_first_stage_predictions_written_anew(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    low, casc, plan = cascade_pair(tmp_path)
    link_previous(casc, low, plan, "3d_cascade_fullres")
    _case_props(
        casc, plan, {"crop_box": [[0, 4]] * 3, "shape_after_resampling": [4, 4, 4], "separate_axis": None}
    )
    assert write_previous_stage(casc, plan, "3d_cascade_fullres", show_progress=False) == "written"
    manifest = WorkDir(casc).previous_stage / "manifest.json"
    manifest.write_text(NOT_JSON)
    with caplog.at_level(logging.WARNING):
        assert write_previous_stage(casc, plan, "3d_cascade_fullres", show_progress=False) == "written"
    assert str(manifest) in caplog.text and "written anew" in caplog.text
    assert write_previous_stage(casc, plan, "3d_cascade_fullres", show_progress=False) == "skipped"
    assert np.load(WorkDir(casc).previous_stage / "a.npy").shape == (4, 4, 4)


@pytest.mark.parametrize(
    ("props", "found"),
    [
        (NOT_JSON, "must be valid JSON"),
        ([1, 2], "must be a JSON object; found [1, 2] (list)"),
        ({"crop_box": [[0, 4]] * 3, "separate_axis": None}, "must hold shape_after_resampling"),
        ({"crop_box": "all", "shape_after_resampling": [4, 4, 4], "separate_axis": None}, "'all' (str)"),
    ],
)
def test_a_cascade_refuses_a_damaged_preprocessed_case(tmp_path: Path, props: object, found: str) -> None:
    low, casc, plan = cascade_pair(tmp_path)
    link_previous(casc, low, plan, "3d_cascade_fullres")
    pre = _case_props(casc, plan, props)
    with pytest.raises(ArtifactError) as exc:
        write_previous_stage(casc, plan, "3d_cascade_fullres", show_progress=False)
    refused_naming(exc, pre / "a.json", found, f"delete the preprocessed folder {pre}")
    assert not (WorkDir(casc).previous_stage / "manifest.json").exists()


def test_cascade_folds_over_a_damaged_earlier_link_are_refused(tmp_path: Path) -> None:
    wdir = WorkDir(tmp_path / "CASC")
    fold = wdir.fold("3d_cascade_fullres", 0)
    fold.mkdir(parents=True)
    (fold / "checkpoint_final.pt").write_bytes(b"")
    link = {"workdir": str(tmp_path / "LOW"), "configuration": "3d_lowres", "model": "abc"}
    config = TrainConfig(configuration="3d_cascade_fullres")
    for before, found in ((NOT_JSON.encode(), "must be valid JSON"), (b'{"model": "abc"}', "workdir (text)")):
        with pytest.raises(ArtifactError) as exc:
            check_same_previous(wdir, config, before, link)
        refused_naming(exc, wdir.previous_link, found, "needs a known first stage")
    check_same_previous(wdir, config, json.dumps(link).encode(), link)  # the same link: its folds are kept


@pytest.mark.parametrize(("record", "found"), [(NOT_JSON, "must be valid JSON"), ("[1]", "[1] (list)")])
def test_predict_continue_refuses_a_damaged_record(tmp_path: Path, record: str, found: str) -> None:
    (tmp_path / RECORD).write_text(record)
    with pytest.raises(ArtifactError) as exc:
        check_record(tmp_path, {"model": "m"}, earlier=True)
    refused_naming(exc, tmp_path / RECORD, found, "--overwrite")


@pytest.mark.parametrize(
    ("mining", "found"),
    [(NOT_JSON, "must be valid JSON"), ('{"slides": [{"mpp": 0.5}]}', "must each record its target_mpp")],
)
def test_slides_refuse_a_damaged_mining_record(tmp_path: Path, mining: str, found: str) -> None:
    wd = tmp_path / "W"
    wd.mkdir()
    (tmp_path / "patches.csv").write_text("image,label\n")
    fp = synthetic_fingerprint((1.0, 1.0, 1.0), (8, 8, 8), n_cases=2)
    fp.model_copy(update={"source": str(tmp_path / "patches.csv")}).save(WorkDir(wd).fingerprint)
    (tmp_path / "mining.json").write_text(json.dumps({"slides": [{"target_mpp": 0.5}, {"target_mpp": 0.5}]}))
    assert model_mpp(wd, None) == 0.5
    (tmp_path / "mining.json").write_text(mining)
    with pytest.raises(ArtifactError) as exc:
        model_mpp(wd, None)
    refused_naming(exc, tmp_path / "mining.json", found, "--mpp")


def test_slides_predict_at_the_resolution_the_model_was_trained_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The resolution was read from whatever mining.json lay beside the training CSV when predicting: patches mined
    again at 1.0 into the same folder made a 0.5 model predict slides at 1.0, without a word."""
    wd = tmp_path / "W"
    wd.mkdir()
    (tmp_path / "patches.csv").write_text("image,label\n")
    fp = synthetic_fingerprint((1.0, 1.0, 1.0), (8, 8, 8), n_cases=2)
    trained = fp.model_copy(update={"source": str(tmp_path / "patches.csv"), "slide_mpp": 0.5})
    assert trained.with_hash().hash == fp.with_hash().hash  # not hashed: older work dirs keep theirs
    trained.save(WorkDir(wd).fingerprint)
    (tmp_path / "mining.json").write_text(json.dumps({"slides": [{"target_mpp": 1.0}]}))
    with caplog.at_level("WARNING", logger="automed"):
        assert model_mpp(wd, None) == 0.5
    assert "mined again since the training, at 1 micrometres" in caplog.text
    (tmp_path / "mining.json").write_text(
        NOT_JSON
    )  # the record of the training holds: the damaged file is not read
    assert model_mpp(wd, None) == 0.5


@pytest.mark.parametrize(
    ("fingerprint", "found"),
    [
        (NOT_JSON, "must be valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"cases": [{"spacing": [1, 1, 1]}]}', "must each name its case_id"),
        ('{"cases": [], "source": 3}', "source must be text"),
    ],
)
def test_the_redactor_refuses_a_damaged_fingerprint(tmp_path: Path, fingerprint: str, found: str) -> None:
    WorkDir(tmp_path).fingerprint.write_text(fingerprint)
    with pytest.raises(ArtifactError) as exc:
        redactor_for([tmp_path])
    refused_naming(exc, WorkDir(tmp_path).fingerprint, found)


class _Quiet:
    """A tracker and a task that only answer what a screening asks (each fold-0 score: its first row's dice)."""

    score_name = "cv_dice"

    def summarize(self, rows: list[dict[str, float]]) -> dict[str, float]:
        return {"dice": rows[0]["dice"]}

    def score(self, summary: dict[str, float]) -> float:
        return summary["dice"]

    def __getattr__(self, name: str) -> object:  # log_metrics, set_tags, log_params, log_artifact
        return lambda *args, **kwargs: None


@pytest.mark.parametrize("screen", [NOT_JSON, '{"winner": "4d", "summary": "s"}', '{"winner": "2d"}'])
def test_a_damaged_screening_record_is_screened_again_from_its_finished_folds(
    tmp_path: Path, screen: str, caplog: pytest.LogCaptureFixture
) -> None:
    plan = make_plan(synthetic_fingerprint((1.0, 1.0, 1.0), (64,) * 3), load_preset("default"))
    names = ["2d", "3d_fullres"]
    for name, dice in zip(names, (0.4, 0.7), strict=True):
        fold = WorkDir(tmp_path).fold(name, 0)
        fold.mkdir(parents=True)
        (fold / "checkpoint_final.pt").write_bytes(b"")
        (fold / "progress.json").write_text(json.dumps({"schema_version": 1, "finished": True}))
        (fold / "validation_metrics.json").write_text(json.dumps([{"case_id": "a", "dice": dice}]))
        (fold / "validation_inference.json").write_text(json.dumps({"tta": True, "mirrors": "all"}))
    splits = {"n_folds": 2, "folds": [{"train": ["b"], "val": ["a"]}, {"train": ["a"], "val": ["b"]}]}
    WorkDir(tmp_path).splits.write_text(json.dumps(splits))
    WorkDir(tmp_path).screen.write_text(screen)
    opts = TrainOptions(screen={"configurations": names, "share_s": 1.0, "reason": "a budget"})
    runs = {f"screen/{n}": f"run-{n}" for n in names}
    track = TrackingState(tmp_path / "tracking.json", "file:/nowhere", "e", "parent", runs)
    quiet = cast(Any, _Quiet())
    with caplog.at_level(logging.WARNING):
        chosen, summary = run_screening(
            tmp_path, plan, TrainConfig(configuration="2d"), opts, quiet, quiet, track, cast(Any, None)
        )
    assert chosen.configuration == "3d_fullres" and "3d_fullres is kept" in summary
    assert str(WorkDir(tmp_path).screen) in caplog.text and "screened again" in caplog.text
    assert json.loads(WorkDir(tmp_path).screen.read_text())["winner"] == "3d_fullres"


# --- anonymize's key file ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pseudonyms", "found"), [([1], "[1] (list)"), ("P1", "'P1' (str)"), ({"P1": 3}, "(dict)")]
)
def test_a_key_file_with_damaged_pseudonyms_is_refused(
    tmp_path: Path, pseudonyms: object, found: str
) -> None:
    key = {"schema_version": KEY_SCHEMA, "secret": "ab" * 32, "pseudonyms": {"P1": "patient-7"}}
    (tmp_path / "study.key").write_text(json.dumps(key))
    assert load_key(tmp_path / "study.key").pseudonyms == {"P1": "patient-7"}
    (tmp_path / "study.key").write_text(json.dumps({**key, "pseudonyms": pseudonyms}))
    with pytest.raises(ConfigError) as exc:
        load_key(tmp_path / "study.key")
    text = str(exc.value)
    assert str(tmp_path / "study.key") in text and "pseudonyms map each pseudonym" in text and found in text
    assert "Fix: pass the key file of the earlier run" in text


# --- a resumed training's checks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("plan", [NOT_JSON, "[]", '{"task_type": 3}'])
def test_a_resume_over_a_plan_that_tells_no_task_takes_none(tmp_path: Path, plan: str) -> None:
    config = TrainConfig(configuration="3d_fullres").model_dump(mode="json")
    record = {"dataset": str(tmp_path / "ds"), "config": config, "options": {"folds": 5, "task": None}}
    (tmp_path / "train_config.json").write_text(json.dumps(record))
    (tmp_path / "plan.json").write_text(plan)
    refuse_ignored_on_resume(tmp_path, {"--task": "auto"})  # the task the data gives: no change
    with pytest.raises(ConfigError, match="keeps its own task"):
        refuse_ignored_on_resume(tmp_path, {"--task": "regression"})


@pytest.mark.parametrize("theirs", [NOT_JSON, '["run-1"]'])
def test_a_resume_whose_original_has_a_damaged_tracking_record_shares_no_runs(
    tmp_path: Path, theirs: str
) -> None:
    origin, copy = tmp_path / "W", tmp_path / "COPY"
    origin.mkdir(), copy.mkdir()
    saved = {"workdir": str(origin), "parent_run_id": "run-1"}
    (origin / "tracking.json").write_text(json.dumps(saved))
    with pytest.raises(ArtifactError, match="a copy of"):
        refuse_a_copy(copy, saved)
    (origin / "tracking.json").write_text(theirs)
    refuse_a_copy(copy, saved)  # the original's runs are not known: the copy continues its own


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("", "EmptyDataError"),
        ("\x00\x01garbage\n1,2\n", "no case, label, dice"),
        ("case,label\nA,1\n", "no dice"),
    ],
)
def test_a_damaged_per_case_table_is_refused_naming_it(tmp_path: Path, text: str, found: str) -> None:
    """An empty cv/metrics.csv crashed report with a bare EmptyDataError; one of other columns dropped its run's
    rows from the page without a word."""
    from automed.evaluate.report import read_case_table

    (tmp_path / "metrics.csv").write_text(text)
    with pytest.raises(ArtifactError) as exc:
        read_case_table(tmp_path / "metrics.csv")
    refused_naming(exc, tmp_path / "metrics.csv", found, "automed train --resume")


def test_a_cut_probability_file_is_refused_naming_it(tmp_path: Path) -> None:
    """select crashed with a bare BadZipFile after its scoring had started (a validation .npz cut short)."""
    from automed.select.selection import _mean

    whole = tmp_path / "case_000.npz"
    np.savez_compressed(whole, probabilities=np.zeros((2, 4, 4, 4), np.float32))
    cut = tmp_path / "case_001.npz"
    cut.write_bytes(whole.read_bytes()[:100])
    assert _mean([whole, whole]).shape == (2, 4, 4, 4)
    with pytest.raises(ArtifactError) as exc:
        _mean([whole, cut])
    refused_naming(exc, cut, "BadZipFile", "re-validate the fold")
