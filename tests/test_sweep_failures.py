"""A failed sweep trial is said once, clearly: Tune logged its traceback at every attempt and listed it again, Optuna
logged it with its traceback, and the summary printed a line per fold unit. Now the summary alone says it, one line
per trial (key, values, the error's last line, where its full traceback is: the trial's failed.json)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from automed import api
from automed.search.context import SweepContext
from automed.search.engine import TrialOutcome
from automed.search.space import SearchSpace
from automed.testing.synthetic import make_dataset
from automed.train.config import TrainConfig

SPACE = {"name": "t", "parameters": {"loss": {"type": "categorical", "choices": ["dice_ce", "dice_focal"]}}}


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fail")
    ds = make_dataset(root / "ds", n_cases=4, shape=(8, 12, 12), seed=3)
    api.plan_dataset(ds, root / "W", preset="cpu", run_preprocess=False, show_progress=False)
    return root / "W"


def _ctx(wd: Path, plan_dir: Path) -> SweepContext:
    shutil.copy(plan_dir / "plan.json", wd / "plan.json")
    space = SearchSpace.model_validate(SPACE).model_dump(mode="json")
    return SweepContext(
        str(wd), "ds", TrainConfig().model_dump(mode="json"), space, {}, 2, "sqlite:///x", "e", "r"
    )


def test_a_failed_trial_keeps_its_traceback_and_a_retry_that_succeeds_removes_it(
    tmp_path: Path, plan_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import automed.workflow.trial as trial

    attempts: list[int] = []

    def train(ctx: Any, key: str, values: Any, folds: Any, report: Any, *rest: Any) -> dict[str, Any]:
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("1 problem found:\n  - patch_size: the patch must have 3 axes divisible by 4")
        return {"key": key, "folds": {}}

    monkeypatch.setattr(trial, "_train", train)
    ctx = _ctx(tmp_path, plan_dir)
    with pytest.raises(ValueError):
        trial.run_trial(ctx, "a", {"loss": "dice_ce"}, [0])
    failed = json.loads((tmp_path / "trials" / "a" / "failed.json").read_text())
    assert failed["error"] == "ValueError"
    assert failed["message"] == "- patch_size: the patch must have 3 axes divisible by 4"
    assert (
        failed["traceback"].startswith("Traceback (most recent call last)")
        and "in train" in failed["traceback"]
    )
    trial.run_trial(ctx, "a", {"loss": "dice_ce"}, [0])  # the retry succeeds
    assert not (tmp_path / "trials" / "a" / "failed.json").exists()


def test_the_summary_says_each_failed_trial_once(tmp_path: Path) -> None:
    from automed.workflow.sweep_verdict import failure_lines

    td = tmp_path / "trials" / "g001"
    td.mkdir(parents=True)
    (td / "trial.json").write_text(json.dumps({"key": "g001", "values": {"patch_size": [15, 15, 15]}}))
    (td / "failed.json").write_text(
        json.dumps(
            {"error": "ConfigError", "message": "- patch_size: not divisible", "traceback": "Traceback..."}
        )
    )
    text = "1 problem found: - patch_size: not divisible"
    outcomes = [
        TrialOutcome("g000", "complete"),
        TrialOutcome("g001", "error", text),  # fold 0's unit
        TrialOutcome("g001", "error", text),  # fold 1's unit
        TrialOutcome("lost", "error", "The actor died unexpectedly\nbefore finishing this task."),
    ]
    assert failure_lines(tmp_path, outcomes) == [
        f"trial g001 failed (patch_size=[15, 15, 15]): ConfigError: - patch_size: not divisible; traceback: {td}"
        "/failed.json",
        "trial lost failed (no values): before finishing this task.; no traceback saved (the engine's logs)",
    ]


def failing_objective(ctx: SweepContext, key: str, values: Any, folds: Any, report: Any) -> dict[str, Any]:
    """Stands in for run_trial in the optuna engine's processes: every trial fails."""
    raise RuntimeError("the unmistakable trial error")


def test_the_optuna_engine_prints_nothing_of_a_failed_trial(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from automed.search.engine import SearchSpec
    from automed.search.optuna_engine import OptunaEngine

    space = SearchSpace.model_validate(SPACE)
    ctx = SweepContext(str(tmp_path), "ds", {}, space.model_dump(mode="json"), {}, 2, "sqlite:///x", "e", "r")
    spec = SearchSpec(n_trials=1, folds=[0], concurrency=1, retries=0)
    outcomes = OptunaEngine(None, {"cpu": 1.0, "gpu": 0.0}).search(
        failing_objective, ctx, space, [], spec, False
    )
    assert [(o.status, o.error) for o in outcomes] == [("error", "the unmistakable trial error")]
    out, err = capfd.readouterr()
    assert "unmistakable" not in out + err and "Traceback" not in out + err, err


def test_a_ray_trial_that_failed_before_it_reported_is_named_by_its_folder() -> None:
    """Tune gives no metrics for a trial that failed before its first report: its key comes from its folder's name,
    which Ray 2.60 spells with an 8-hex-digit id that was not matched (key '': one nameless summary line for every
    such trial)."""
    from automed.search.ray_results import outcomes as stage_outcomes

    class Result:
        def __init__(self, name: str) -> None:
            self.config: dict[str, Any] = {}
            self.metrics: dict[str, Any] = {}
            self.path, self.error = f"/sweep/ray/search/{name}", RuntimeError("patch does not fit")

    grid = [
        Result("_search_trainable_46f9ae6e_1_loss=dice_ce_2026-12-06_07-16-09"),  # Ray 2.60
        Result("_search_trainable_9e59f_00002_2_loss=dice_focal_2026-12-06_07-16-09"),  # earlier Rays
    ]
    outcomes = stage_outcomes(grid, Path("/nowhere"))
    assert [(o.key, o.status) for o in outcomes] == [("46f9ae6e", "error"), ("9e59f_00002", "error")]
