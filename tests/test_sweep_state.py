"""``automed sweep --resume`` reads ``sweep.json`` through one check (``sweep_state.read_state``): a damaged one (not
JSON, not an object, a key missing or of another type, another layout, options or a space it does not read) is
refused before any work, naming the file, the rule, the value found and the fix. Before, the resume crashed with a
bare JSONDecodeError, KeyError, AttributeError or TypeError, or (a space or base config it does not read) pydantic's
ValidationError."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from automed._version import __version__
from automed.errors import ArtifactError, ConfigError
from automed.search.schema import SearchSpace
from automed.train.config import TrainConfig
from automed.workflow.sweep_resume import resume_state
from automed.workflow.sweep_stages import STATE_FILE, STATE_VERSION, SweepOptions
from automed.workflow.sweep_state import new_state

PAST_THE_STATE = (
    "reads the dataset it was started on"  # what resume judges next: this sweep's dataset is not there
)
SPACE = SearchSpace.model_validate(
    {
        "name": "tiny",
        "fixed": {"epochs": 2, "iterations_per_epoch": 2},
        "parameters": {"loss": {"type": "categorical", "choices": ["dice_ce", "dice_focal"]}},
    }
)


def saved_parts() -> dict[str, Any]:
    """The keys every sweep.json holds besides its dataset and options, as a new sweep writes them."""
    state = new_state("ds", SweepOptions(), SPACE, TrainConfig(), "all")
    return {k: state[k] for k in ("space", "base_config", "stages")}


def written(tmp_path: Path) -> dict[str, Any]:
    """A sweep.json as automed writes it (new_state), with what a sweep's run adds: its MLflow ids, stages, budget,
    timings, concurrency and verdict."""
    opts = SweepOptions(
        space=str(tmp_path / "space.yaml"), trials=2, folds=2, tracking_uri="http://mlflow.example:5000"
    )
    state = new_state(str(tmp_path / "data"), opts, SPACE, TrainConfig(), "even")
    state.update(
        uri="http://mlflow.example:5000",
        sweep_run_id="7d13093a795a",
        experiment="Synthetic",
        fold_budget_s=60.5,
    )
    state.update(timing={"search_s": 1.5}, concurrency=1, verdict="no trial finished every fold")
    state["stages"] = {"search": True, "search_capped": "the budget capped the search", "done": True}
    return state


def _sweep(tmp_path: Path, state: Any = None, text: str | bytes | None = None) -> Path:
    wd = tmp_path / "S"
    wd.mkdir()
    data = text if text is not None else json.dumps(written(tmp_path) if state is None else state)
    (wd / STATE_FILE).write_bytes(data if isinstance(data, bytes) else data.encode())
    return wd


def _refused(wd: Path, error: type[Exception] = ArtifactError) -> list[Any]:
    """The problems a resume of ``wd`` is refused with, having changed nothing in ``wd``."""
    before = (wd / STATE_FILE).read_bytes()
    with pytest.raises(error, match=re.escape(f"cannot resume the sweep in {wd}")) as e:
        resume_state(wd, SweepOptions())
    assert (wd / STATE_FILE).read_bytes() == before and [p.name for p in wd.iterdir()] == [STATE_FILE]
    problems = list(e.value.problems)  # type: ignore[attr-defined]
    for p in problems:
        assert p.file == str(wd / STATE_FILE)
        if error is ArtifactError:
            assert "start a new sweep with -o NEW_WORKDIR" in p.fix and str(wd / "trials") in p.fix
            assert "resume with the automed that wrote it" in p.fix
    return problems


def test_a_sweep_json_as_automed_writes_it_is_read(tmp_path: Path) -> None:
    wd = _sweep(tmp_path)
    with pytest.raises(ArtifactError, match=PAST_THE_STATE):
        resume_state(wd, SweepOptions())


@pytest.mark.parametrize("cut", [0, 1, 200])
def test_a_truncated_sweep_json_is_refused(tmp_path: Path, cut: int) -> None:
    wd = _sweep(tmp_path, text=json.dumps(written(tmp_path))[:cut])
    (p,) = _refused(wd)
    assert p.rule == "a sweep's sweep.json must be JSON (truncated or edited?)"
    assert re.fullmatch(r".+ at line 1", p.value)


def test_a_sweep_json_that_is_not_text_is_refused(tmp_path: Path) -> None:
    wd = _sweep(tmp_path, text=b'{"dataset": "\xff"}')
    (p,) = _refused(wd)
    assert "must be JSON" in p.rule and "decode" in p.value


@pytest.mark.parametrize(
    ("state", "found"), [([], "list []"), ("S", "str 'S'"), (None, "NoneType None"), (3, "int 3")]
)
def test_a_sweep_json_that_is_not_an_object_is_refused(tmp_path: Path, state: Any, found: str) -> None:
    wd = _sweep(tmp_path, text=json.dumps(state))
    (p,) = _refused(wd)
    assert (p.rule, p.value) == ("a sweep's sweep.json must hold a JSON object", found)


@pytest.mark.parametrize("key", ["dataset", "options", "space", "base_config", "stages"])
def test_each_key_every_sweep_json_holds_is_required(tmp_path: Path, key: str) -> None:
    state = written(tmp_path)
    del state[key]
    (p,) = _refused(_sweep(tmp_path, state))
    assert p.rule.startswith(f"sweep.json must hold {key} (") and p.rule.endswith("): a resume reads it")
    assert p.value == "none"


@pytest.mark.parametrize("key", ["uri", "experiment"])
def test_a_sweep_with_an_mlflow_run_needs_its_store_and_experiment(tmp_path: Path, key: str) -> None:
    state = written(tmp_path)
    del state[key]
    (p,) = _refused(_sweep(tmp_path, state))
    assert p.rule.startswith(f"sweep.json must hold {key} (")
    assert p.rule.endswith("the sweep's MLflow run (sweep_run_id) is found by it")


def test_the_keys_written_as_a_sweep_runs_may_be_absent(tmp_path: Path) -> None:
    """Killed before its MLflow run was made, before its stages ran; or started by an automed before mirrors."""
    state = written(tmp_path)
    for key in (
        "uri",
        "sweep_run_id",
        "experiment",
        "fold_budget_s",
        "timing",
        "concurrency",
        "verdict",
        "mirrors",
    ):
        del state[key]
    state["stages"] = {}
    with pytest.raises(ArtifactError, match=PAST_THE_STATE):
        resume_state(_sweep(tmp_path, state), SweepOptions())


@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [
        ("dataset", 3, "sweep.json's dataset must be the dataset's place, text"),
        ("dataset", None, "sweep.json's dataset must be the dataset's place, text"),
        ("options", ["trials", 2], "sweep.json's options must be the sweep's options, an object"),
        ("space", "tiny", "sweep.json's space must be the search space, an object"),
        ("base_config", None, "sweep.json's base_config must be the base training config, an object"),
        ("stages", [], "sweep.json's stages must be the stages run, an object of true or a note (text) each"),
        ("stages", {"search": 1}, "sweep.json's stages must be the stages run"),
        ("automed_version", 1, "sweep.json's automed_version must be the automed that started it, text"),
        ("mirrors", "odd", "sweep.json's mirrors must be the mirror set of TTA, 'all' or 'even'"),
        ("uri", 5, "sweep.json's uri must be the MLflow store, text or null"),
        ("sweep_run_id", ["r"], "sweep.json's sweep_run_id must be the sweep's MLflow run id, text or null"),
        ("experiment", None, "sweep.json's experiment must be the MLflow experiment, text"),
        ("fold_budget_s", "60", "sweep.json's fold_budget_s must be a fold's seconds, a number or null"),
        ("timing", [1.5], "sweep.json's timing must be each stage's seconds, an object of numbers"),
        ("concurrency", "1", "sweep.json's concurrency must be the trials run at once, a whole number"),
        ("verdict", None, "sweep.json's verdict must be the verdict, text"),
    ],
)
def test_a_key_of_another_type_is_refused(tmp_path: Path, key: str, value: Any, rule: str) -> None:
    state = {**written(tmp_path), key: value}
    (p,) = _refused(_sweep(tmp_path, state))
    assert p.rule.startswith(rule)
    assert p.value == f"{value!r} ({type(value).__name__})"


def test_every_damaged_key_is_named_at_once(tmp_path: Path) -> None:
    state = {**written(tmp_path), "dataset": 3, "stages": None}
    del state["space"]
    problems = _refused(_sweep(tmp_path, state))
    assert [p.rule.split(" must ")[0] for p in problems] == [
        "sweep.json's dataset",
        "sweep.json",
        "sweep.json's stages",
    ]


@pytest.mark.parametrize("found", [2, 0, "1", True, None, 1.0])
def test_another_layout_is_refused(tmp_path: Path, found: Any) -> None:
    state = {**written(tmp_path), "schema_version": found}
    (p,) = _refused(_sweep(tmp_path, state))
    assert p.rule == "sweep.json's schema_version must be 1, the layout this automed reads"
    assert p.value == f"{found!r}, started by automed {__version__}; this is automed {__version__}"


def test_a_sweep_json_without_its_layout_version_is_the_first(tmp_path: Path) -> None:
    state = written(tmp_path)
    del state["schema_version"]
    with pytest.raises(ArtifactError, match=PAST_THE_STATE):
        resume_state(_sweep(tmp_path, state), SweepOptions())


def test_another_sweep_state_is_named_before_its_keys_are_judged(tmp_path: Path) -> None:
    """A state of another version may hold other keys: its version is what the user is told."""
    state = {**written(tmp_path), "state_version": STATE_VERSION + 1}
    del state["space"], state["stages"]
    (p,) = _refused(_sweep(tmp_path, state), ConfigError)
    assert p.value.startswith(f"sweep state version {STATE_VERSION + 1}, started by automed {__version__}")


@pytest.mark.parametrize(
    ("option", "value", "rule"),
    [
        ("trials", "8", "sweep.json's option trials must be int"),
        ("trials", True, "sweep.json's option trials must be int"),
        ("budget_s", "1h", "sweep.json's option budget_s must be float | None"),
        ("screen", 1, "sweep.json's option screen must be bool"),
        ("trial_resources", {"cpu": "1"}, "sweep.json's option trial_resources must be dict[str, float]"),
        ("space", 3, "sweep.json's option space must be str | None"),
    ],
)
def test_an_option_of_another_type_is_refused(tmp_path: Path, option: str, value: Any, rule: str) -> None:
    """They had reached the run: a text count of trials compared with a number, a text budget in its arithmetic."""
    state = written(tmp_path)
    state["options"][option] = value
    (p,) = _refused(_sweep(tmp_path, state))
    assert (p.rule, p.value) == (rule, f"{value!r} ({type(value).__name__})")


def test_an_option_given_as_a_whole_number_where_a_number_is_read(tmp_path: Path) -> None:
    state = written(tmp_path)
    state["options"].update(budget_s=3600, trial_resources={"cpu": 2, "gpu": 0})
    with pytest.raises(ArtifactError, match=PAST_THE_STATE):
        resume_state(_sweep(tmp_path, state), SweepOptions())


@pytest.mark.parametrize(
    ("key", "change", "rule", "value"),
    [
        (
            "space",
            {"parameters": None},
            "sweep.json's space must be one this automed reads: 'parameters': ",
            "None",
        ),
        (
            "space",
            {"typo": 1},
            "sweep.json's space must be one this automed reads: unknown key 'typo'",
            "'typo'",
        ),
        (
            "base_config",
            {"epochs": "many"},
            "sweep.json's base_config must be one this automed reads: 'epochs': ",
            "'many'",
        ),
    ],
)
def test_a_space_or_base_config_this_automed_does_not_read_is_refused(
    tmp_path: Path, key: str, change: dict[str, Any], rule: str, value: str
) -> None:
    """The resume went on to pydantic's ValidationError, after the dataset and MLflow store were checked."""
    state = written(tmp_path)
    state[key] = {**state[key], **change}
    (p,) = _refused(_sweep(tmp_path, state))
    assert p.rule.startswith(rule) and p.value == value


def test_the_command_line_says_what_is_damaged(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from automed.cli import app

    state = written(tmp_path)
    del state["options"]
    wd = _sweep(tmp_path, state)
    r = CliRunner().invoke(app, ["sweep", "--resume", str(wd)])
    assert r.exit_code != 0
    text = str(r.exception) if isinstance(r.exception, ArtifactError) else r.output
    assert f"{wd / STATE_FILE}: sweep.json must hold options (the sweep's options, an object)" in text
    assert "KeyError" not in text
