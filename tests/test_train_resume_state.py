"""``automed train --resume``/``--extend`` read the work dir's ``train_config.json`` through one check
(``resume_checks.read_saved_training``), before anything runs: a record without its dataset, config or options, one
of them of another type, an option of another type or a config this automed does not read is refused naming the
file, the key, the value found and the fix. Before, the resume crashed with a bare KeyError, AttributeError or
TypeError, or pydantic's ValidationError."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from automed.errors import ArtifactError
from automed.records import TRACKING_VERSION, TRAIN_CONFIG_VERSION, stamped
from automed.train.config import TrainConfig
from automed.workdir import WorkDir
from automed.workflow.resume_checks import refuse_ignored_on_resume
from automed.workflow.train_options import TrainOptions
from automed.workflow.train_start import restore_training

FIX = "put back the train_config.json automed wrote (a backup), or resume with the automed that wrote it"
PAST_THE_RECORD = "moved or deleted"  # what a resume judges next: this training's dataset is not there


def written(tmp_path: Path) -> dict[str, Any]:
    """A train_config.json as ``automed train`` writes it (train_start.start_training)."""
    opts = TrainOptions(folds=2, budget_s=600.0, preset="default", fold_resources={"cpu": 1.0, "gpu": 0.0})
    return stamped(
        {
            "dataset": str(tmp_path / "data"),
            "typed": {"folds": 2},
            "config": TrainConfig(epochs=3).model_dump(mode="json"),
            "options": {**asdict(opts), "tracking_uri": None},
        },
        TRAIN_CONFIG_VERSION,
    )


def _workdir(tmp_path: Path, record: Any) -> Path:
    wd = tmp_path / "W"
    wd.mkdir()
    WorkDir(wd).train_config.write_text(json.dumps(record))
    return wd


def _resumes(wd: Path) -> list[Any]:
    """The problems each resume reader refuses ``wd`` with (the same), having changed nothing in ``wd``."""
    before = WorkDir(wd).train_config.read_bytes()
    found = []
    for resume in (
        lambda: refuse_ignored_on_resume(wd, {"--epochs": 3}),
        lambda: restore_training(wd, TrainOptions()),
    ):
        with pytest.raises(ArtifactError, match=re.escape(f"cannot resume the training in {wd}")) as e:
            resume()
        found.append(e.value.problems)
    assert found[0] == found[1]
    assert WorkDir(wd).train_config.read_bytes() == before and [p.name for p in wd.iterdir()] == [
        "train_config.json"
    ]
    for p in found[0]:
        assert p.file == str(WorkDir(wd).train_config) and p.fix.startswith(FIX)
    return list(found[0])


def test_a_train_config_as_automed_writes_it_is_read(tmp_path: Path) -> None:
    record = written(tmp_path)
    record["options"]["previous_relative"] = (
        "../first"  # a key beside the options (a cascade's): kept as it is
    )
    wd = _workdir(tmp_path, record)
    refuse_ignored_on_resume(wd, {"--epochs": 3})
    with pytest.raises(ArtifactError, match=PAST_THE_RECORD):
        restore_training(wd, TrainOptions())


@pytest.mark.parametrize("key", ["dataset", "config", "options"])
def test_each_key_a_resume_reads_is_required(tmp_path: Path, key: str) -> None:
    record = written(tmp_path)
    del record[key]
    (p,) = _resumes(_workdir(tmp_path, record))
    assert p.rule.startswith(f"train_config.json must hold {key} (") and p.rule.endswith(
        "): a resume reads it"
    )
    assert p.value == "none"


@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [
        ("dataset", 3, "train_config.json's dataset must be the dataset's place, text"),
        ("config", [], "train_config.json's config must be the training config, an object"),
        ("options", "folds=2", "train_config.json's options must be the training's options, an object"),
    ],
)
def test_a_key_of_another_type_is_refused(tmp_path: Path, key: str, value: Any, rule: str) -> None:
    (p,) = _resumes(_workdir(tmp_path, {**written(tmp_path), key: value}))
    assert (p.rule, p.value) == (rule, f"{value!r} ({type(value).__name__})")


@pytest.mark.parametrize(
    ("option", "value", "kind"),
    [
        ("folds", "2", "int"),
        ("only_folds", 0, "list[int] | None"),
        ("budget_s", "10m", "float | None"),
        ("register", "yes", "bool"),
        ("fold_resources", {"cpu": "1"}, "dict[str, float] | None"),
        ("screen", [], "dict[str, typing.Any] | None"),
    ],
)
def test_an_option_of_another_type_is_refused(tmp_path: Path, option: str, value: Any, kind: str) -> None:
    record = written(tmp_path)
    record["options"][option] = value
    (p,) = _resumes(_workdir(tmp_path, record))
    assert (p.rule, p.value) == (
        f"train_config.json's option {option} must be {kind}",
        f"{value!r} ({type(value).__name__})",
    )


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"epochs": "many"}, "train_config.json's config must be one this automed reads: 'epochs': "),
        ({"epoch": 3}, "train_config.json's config must be one this automed reads: unknown key 'epoch'"),
    ],
)
def test_a_config_this_automed_does_not_read_is_refused(
    tmp_path: Path, change: dict[str, Any], rule: str
) -> None:
    record = written(tmp_path)
    record["config"] = {**record["config"], **change}
    (p,) = _resumes(_workdir(tmp_path, record))
    assert p.rule.startswith(rule)


def test_the_command_line_says_what_is_damaged(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from automed.cli import app

    record = written(tmp_path)
    del record["config"]
    wd = _workdir(tmp_path, record)
    r = CliRunner().invoke(app, ["train", "--resume", str(wd)])
    assert r.exit_code != 0
    text = str(r.exception) if isinstance(r.exception, ArtifactError) else r.output
    assert "train_config.json must hold config (the training config, an object)" in text
    assert "KeyError" not in text


@pytest.mark.parametrize(
    ("text", "rule", "value"),
    [
        (
            "{",
            "previous_stage.json must be valid JSON",
            "Expecting property name enclosed in double quotes at line 1",
        ),
        ("[]", "previous_stage.json must hold a JSON object", "[] (list)"),
        (json.dumps({"relative": "../LOW"}), "previous_stage.json must hold workdir", "none"),
        (json.dumps({"workdir": 3}), "previous_stage.json must hold workdir", "3 (int)"),
        (
            json.dumps({"workdir": "/x/LOW", "relative": 1}),
            "previous_stage.json's relative must be text",
            "1 (int)",
        ),
    ],
)
def test_a_damaged_cascade_link_is_refused(tmp_path: Path, text: str, rule: str, value: str) -> None:
    """A resumed cascade reads its link to the first stage (check_first_stage; previous_place for a record written
    before relative places): it crashed with a bare JSONDecodeError, KeyError or TypeError."""
    from automed.preprocess.previous_stage import check_first_stage
    from automed.workflow.resume_checks import previous_place

    wd = tmp_path / "C"
    wd.mkdir()
    WorkDir(wd).previous_link.write_text(text)
    for read in (lambda: check_first_stage(wd), lambda: previous_place(wd, {"previous_workdir": "/x/LOW"})):
        with pytest.raises(ArtifactError) as e:
            read()
        (p,) = e.value.problems
        assert (p.file, p.value) == (str(WorkDir(wd).previous_link), value) and p.rule.startswith(rule)


def test_a_cascade_link_as_automed_writes_it_is_read(tmp_path: Path) -> None:
    from automed.preprocess.previous_stage import check_first_stage
    from automed.workflow.resume_checks import previous_place

    wd, low = tmp_path / "C", tmp_path / "LOW"
    wd.mkdir()
    low.mkdir()
    link = {
        "workdir": str(low),
        "relative": "../LOW",
        "configuration": "3d_lowres",
        "model": "0123456789abcdef",
    }
    WorkDir(wd).previous_link.write_text(json.dumps(link))
    assert previous_place(wd, {"previous_workdir": str(low)}) == low.resolve()
    with pytest.raises(
        ArtifactError, match=re.escape("no model.json (moved or deleted?)")
    ):  # read: judged next
        check_first_stage(wd)


def test_a_damaged_fold_progress_is_named_when_a_budgeted_resume_reads_its_share(tmp_path: Path) -> None:
    """restore_training reads the budget a started fold was given: a damaged progress.json crashed it with a bare
    JSONDecodeError or AttributeError, and a true budget was read as 1 s."""
    from automed.workflow.train_start import recorded_share

    progress = WorkDir(tmp_path).fold("3d_fullres", 1) / "progress.json"
    progress.parent.mkdir(parents=True)
    for text, rule in (
        ("{", "progress.json must be valid JSON"),
        ("[]", "progress.json must be a JSON object"),
    ):
        progress.write_text(text)
        with pytest.raises(ArtifactError, match=re.escape(rule)) as e:
            recorded_share(tmp_path, "3d_fullres", [0, 1], screened=False)
        assert e.value.problems[0].file == str(progress)
    progress.write_text(json.dumps({"budget_s": True, "history": []}))
    assert recorded_share(tmp_path, "3d_fullres", [0, 1], screened=False) is None


@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [
        ("uri", 5, "tracking.json's uri must be the MLflow store (text)"),
        ("experiment", None, "tracking.json's experiment must be the MLflow experiment (text)"),
        ("workdir", 3, "tracking.json's workdir must be the work dir it logged from (text)"),
        ("parent_run_id", ["r"], "tracking.json's parent_run_id must be the training's MLflow run id (text)"),
        ("fold_runs", "r", "tracking.json's fold_runs must be each fold's MLflow run id, an object of text"),
        (
            "fold_runs",
            {"0": 1},
            "tracking.json's fold_runs must be each fold's MLflow run id, an object of text",
        ),
    ],
)
def test_a_tracking_record_of_another_type_is_refused(
    tmp_path: Path, key: str, value: Any, rule: str
) -> None:
    """A resume reopens the runs tracking.json names: a workdir of another type crashed with a bare TypeError, the
    others reached MLflow (a list as a run id, a text as the folds' runs)."""
    from automed.workflow.resume_checks import refuse_a_copy

    saved = stamped(
        {"uri": "sqlite:///m.db", "experiment": "E", "parent_run_id": "p", "fold_runs": {"0": "f0"}},
        TRACKING_VERSION,
    )
    refuse_a_copy(tmp_path, {**saved, "workdir": str(tmp_path.resolve())})  # as written: its own runs
    with pytest.raises(ArtifactError, match=re.escape(f"cannot resume the training in {tmp_path}")) as e:
        refuse_a_copy(tmp_path, {**saved, "workdir": str(tmp_path.resolve()), key: value})
    (p,) = e.value.problems
    assert (p.file, p.rule, p.value) == (
        str(WorkDir(tmp_path).tracking),
        rule,
        f"{value!r} ({type(value).__name__})",
    )
    assert "put back the tracking.json automed wrote" in p.fix


def test_an_extend_never_leaves_folds_at_epochs_of_two_extensions(tmp_path: Path) -> None:
    """Another N typed after a killed --extend extended a finished fold twice (2 + 2 + 3 epochs beside 2 + 3), and an
    --extend over a training killed before its end only resumed its unfinished fold: both were registered."""
    from automed.errors import ConfigError
    from automed.workflow.train_extension import refuse_mixed_extension

    config = TrainConfig()
    wd = WorkDir(tmp_path)
    progress = {f: wd.fold(config.configuration, f) / "progress.json" for f in (0, 1)}
    for p in progress.values():
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps(stamped({"history": [], "finished": True}, 1)))
    wd.train_config.write_text(json.dumps(stamped({"dataset": "d"}, TRAIN_CONFIG_VERSION)))
    refuse_mixed_extension(tmp_path, config, 2)  # every fold finished, nothing pending: extended
    refuse_mixed_extension(tmp_path, config, 0)
    record = {"dataset": "d", "extension": {"epochs": 2, "targets": {"0": 4, "1": 4}}}
    wd.train_config.write_text(json.dumps(stamped(record, TRAIN_CONFIG_VERSION)))
    progress[1].write_text(json.dumps(stamped({"history": [], "finished": False}, 1)))
    refuse_mixed_extension(tmp_path, config, 2)  # the same --extend again: completed
    with pytest.raises(
        ConfigError, match=r"--extend 3 after an unfinished --extend 2.*--extend 2\), then extend"
    ):
        refuse_mixed_extension(tmp_path, config, 3)
    wd.train_config.write_text(json.dumps(stamped({"dataset": "d"}, TRAIN_CONFIG_VERSION)))
    with pytest.raises(
        ConfigError, match=r"whose folds have all finished; found fold_1 unfinished.*--resume"
    ):
        refuse_mixed_extension(tmp_path, config, 2)
