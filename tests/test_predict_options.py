"""``automed predict --folds`` and ``--step-size`` (nnU-Net's ``-f`` and ``-step_size``): parsed as the command line
takes lists, checked against the model before any weight loads, refused where the model has no such choice, and
recorded for ``--continue``. The end-to-end check (``--folds 0`` predicts as fold 0 alone) is in test_train_e2e."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from automed import api
from automed.cli import app
from automed.errors import ConfigError, DatasetError
from automed.infer.predict_options import checked_step, chosen_folds, parse_folds, run_overrides
from automed.tasks.classification import Classification
from automed.tasks.segmentation import Segmentation
from automed.workdir import ALL_DATA
from automed.workflow.predict_continue import run_settings


def test_folds_are_comma_separated_or_repeated_and_all_names_the_all_data_model() -> None:
    assert parse_folds(None) is None and parse_folds([]) is None
    assert parse_folds(["0,1"]) == [0, 1]
    assert parse_folds(["2", "0, 1", "1"]) == [0, 1, 2]  # repeated, spaced, a fold twice counts once
    assert parse_folds(["all"]) == [ALL_DATA]
    for bad in ("0 1", "-1", "fold_0", "0,,1"):
        with pytest.raises(ConfigError, match="fold numbers") as err:
            parse_folds([bad])
        assert repr(bad) in str(err.value) and "--folds 0,1" in str(err.value)


def test_a_fold_the_model_lacks_is_refused_naming_the_folds_it_has() -> None:
    assert chosen_folds(None, [0, 1, 2], [0, 1], "W") == [0, 1]  # not given: the model's own choice
    assert chosen_folds([2], [0, 1, 2], [0, 1], "W") == [2]  # any trained fold, not only the chosen ones
    with pytest.raises(ConfigError) as err:
        chosen_folds([0, 5], [0, 1, 2], [0, 1], "W")
    (p,) = err.value.problems
    assert p.file == "W" and "(0, 1, 2)" in p.rule and p.value == "--folds 0, 5 (no fold 5)"
    assert "0, 1 (the model's own choice)" in p.fix
    with pytest.raises(ConfigError, match=r"has \(all\); found --folds 0 \(no fold 0\)"):
        chosen_folds([0], [ALL_DATA], [ALL_DATA], "W")


@pytest.mark.parametrize("step", [0.0, -0.5, 1.5])
def test_a_step_outside_0_to_1_is_refused(step: float) -> None:
    with pytest.raises(ConfigError, match=r"0 < step <= 1; found") as err:
        checked_step(step, "W")
    assert "0.5" in str(err.value)


def test_steps_in_range_pass() -> None:
    assert checked_step(None, "W") is None
    assert checked_step(1.0, "W") == 1.0 and checked_step(0.25, "W") == 0.25


def test_each_task_refuses_a_step_before_it_loads_anything(tmp_path: Path) -> None:
    # tmp_path holds no model: the refusal must come first, not a missing model.json
    with pytest.raises(ConfigError, match="image-level model"):
        Classification().load_predictor(tmp_path, None, step=0.5)
    with pytest.raises(ConfigError, match="0 < step <= 1"):
        Segmentation().load_predictor(tmp_path, None, step=2.0)


def test_options_that_change_a_trainings_inference_are_named() -> None:
    assert run_overrides(None, None) == ""
    assert run_overrides([0], 0.25) == "--folds and --step-size"
    assert run_overrides(None, 0.25) == "--step-size"
    assert run_overrides([1], None) == "--folds"


def test_continue_records_folds_and_step_only_when_given(tmp_path: Path) -> None:
    own = run_settings(tmp_path, tmp_path, True, False, "nifti")
    assert "folds" not in own and "step" not in own  # records of earlier runs stay continuable
    chosen = run_settings(tmp_path, tmp_path, True, False, "nifti", folds=[0], step=0.25)
    assert chosen == {**own, "folds": [0], "step": 0.25}


def test_continue_records_which_pair_or_registered_version_wrote_the_predictions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A selection that chose a pair has no model.json or inference.json, and a models:/ alias moves: both were
    recorded the same whatever model predicted, so --continue mixed two models' label maps."""
    import mlflow.tracking

    import automed.tracking
    from automed.workflow.predict_continue import registered_version

    bundle = tmp_path / "S" / "model_bundle"
    (bundle / "m0").mkdir(parents=True)
    (bundle / "ensemble.json").write_text('{"members": []}')
    (bundle / "m0" / "fold_0.pt").write_bytes(b"weights 1")
    first = run_settings(tmp_path / "S", tmp_path / "S", True, False, "nifti")
    (bundle / "m0" / "fold_0.pt").write_bytes(b"weights 2")  # another pair selected into the same folder
    assert run_settings(tmp_path / "S", tmp_path / "S", True, False, "nifti") != first
    monkeypatch.setattr(mlflow.tracking, "MlflowClient", lambda tracking_uri, registry_uri: None)
    monkeypatch.setattr(
        automed.tracking, "still_answers", lambda *a, **kw: None
    )  # (no server at 127.0.0.1:9)
    monkeypatch.setattr(automed.tracking, "model_version", lambda c, name, ref: SimpleNamespace(version=7))
    version = registered_version("models:/m@champion", "http://127.0.0.1:9")
    assert version == "7"
    by_alias = run_settings("models:/m@champion", None, True, False, "nifti", version=version)
    assert by_alias != run_settings("models:/m@champion", None, True, False, "nifti", version="8")


def test_the_command_line_passes_folds_and_step(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def fake_predict(*args: Any, **kwargs: Any) -> list[Path]:
        seen.update(kwargs)
        return []

    monkeypatch.setattr("automed.api.predict", fake_predict)
    base = ["-q", "predict", "W", "-i", str(tmp_path), "-o", str(tmp_path / "o")]
    r = CliRunner().invoke(app, [*base, "--folds", "0", "--folds", "2,3", "--step-size", "0.25"])
    assert r.exit_code == 0, r.output
    assert seen["folds"] == [0, 2, 3] and seen["step"] == 0.25
    r = CliRunner().invoke(app, base)
    assert r.exit_code == 0, r.output
    assert seen["folds"] is None and seen["step"] is None


def test_folds_written_as_nnunet_writes_them_are_taken(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`--folds 0 1` (nnU-Net's `-f 0 1`) was typer's "Got unexpected extra argument(s) (1)"."""
    import sys

    from automed.cli import _folds_as_nnunet_writes_them, main

    seen: dict[str, Any] = {}
    monkeypatch.setattr("automed.api.predict", lambda *a, **kw: seen.update(kw) or [])
    argv = [
        "automed",
        "-q",
        "predict",
        "W",
        "--folds",
        "0",
        "1",
        "-i",
        str(tmp_path),
        "-o",
        str(tmp_path / "o"),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    main()
    assert seen["folds"] == [0, 1]
    train = ["train", "D", "--folds", "5", "-o", "w"]
    assert _folds_as_nnunet_writes_them(train) == train  # train's --folds takes one value: left alone
    after = ["predict", "W", "--folds", "2", "--", "3"]
    assert _folds_as_nnunet_writes_them(after) == after


def test_a_registered_cascade_bundle_refuses_folds_its_first_stage_would_have_to_follow(
    tmp_path: Path,
) -> None:
    """(A pair's bundle takes --folds and --step-size for each member: test_select_pair.)"""
    from automed.workflow.predict_bundle import bundle_predictor

    cascade = tmp_path / "cascade"
    (cascade / "previous").mkdir(parents=True)
    with pytest.raises(ConfigError, match="a cascade") as err:
        bundle_predictor(cascade, None, "models:/automed-X@champion", folds=[0], step=None)
    assert "predict with the training's work dir" in str(err.value)


def test_an_export_refusal_of_a_registered_model_names_its_uri_not_the_download(tmp_path: Path) -> None:
    """``automed export models:/...`` hands the task the downloaded bundle (its fold numbers are read there); a
    refusal naming that temporary folder (an image-level pair) names the URI as it was given."""
    from automed.errors import ArtifactError, Problem
    from automed.workflow.export import _named_by

    bundle = tmp_path / "automed-model-x" / "model_bundle"
    other = Problem("case.nii.gz", "rule", "value", "fix")
    with pytest.raises(ArtifactError) as err, _named_by(bundle, "models:/automed-X@champion"):
        raise ArtifactError([Problem(str(bundle), "an export holds one training", "a pair", "fix"), other])
    assert [p.file for p in err.value.problems] == ["models:/automed-X@champion", "case.nii.gz"]
    assert str(bundle) not in str(err.value)
    with pytest.raises(ConfigError, match=r"case\.nii\.gz"), _named_by(None, "W"):
        raise ConfigError([other])  # a work dir's refusals are left as they are


def test_a_missing_input_is_refused_before_any_model_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model was loaded (a registered one downloaded) before a mistyped -i was found missing."""
    import automed.workflow.predict as predict_module

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was read before the input was checked")

    monkeypatch.setattr(predict_module, "fetch_registered", no_model)
    monkeypatch.setattr(predict_module, "load_predictor", no_model)
    with pytest.raises(DatasetError, match="the input must exist") as err:
        predict_module.predict(
            "models:/automed-X@champion", tmp_path / "typo", tmp_path / "out", tracking_uri="sqlite:///x.db"
        )
    assert err.value.problems[0].file == str(tmp_path / "typo") and not (tmp_path / "out").exists()


def test_runtime_onnx_for_an_image_level_model_points_at_its_bundle(tmp_path: Path) -> None:
    """``automed predict work_cls --runtime onnx`` after ``automed export work_cls`` read "found no export (run
    `automed export WORKDIR`)": an image-level export is never linked, it runs through its bundle's predict.py."""
    from automed.errors import ArtifactError
    from automed.workflow.predict import load_predictor

    work = tmp_path / "work_cls"
    (work / "export").mkdir(parents=True)
    (work / "model.json").write_text('{"task": "classification"}')
    (work / "export" / "preprocess.json").write_text("{}")
    with pytest.raises(ArtifactError) as err:
        load_predictor(work, None, runtime="onnx")
    (p,) = err.value.problems
    assert (
        "classification model's export runs through its bundle" in p.rule
        and "run `automed export" not in p.fix
    )
    assert f"python {work / 'export' / 'predict.py'} -i IN -o OUT --runtime onnx" in p.fix


@pytest.mark.parametrize(("text", "rule"), [('{"task":', "readable JSON"), ("[1]", "a JSON object")])
def test_a_damaged_model_json_with_runtime_is_named_not_a_traceback(
    tmp_path: Path, text: str, rule: str
) -> None:
    """``predict W --runtime onnx`` read model.json bare to see the task: a damaged one crashed with an
    'unexpected error: JSONDecodeError' where the same command without --runtime gave a clear error."""
    from automed.errors import ArtifactError

    work, images = tmp_path / "w", tmp_path / "in"
    work.mkdir()
    images.mkdir()
    (work / "model.json").write_text(text)
    (images / "c0.nii.gz").write_bytes(b"")
    with pytest.raises(ArtifactError, match=rf"model\.json must be {rule}"):
        api.predict(work, images, tmp_path / "out", runtime="onnx")
