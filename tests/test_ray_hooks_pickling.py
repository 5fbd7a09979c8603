"""The Ray engine's Tune hooks are pickled by reference. Tune saves them into the experiment state when a search first
starts and a ``--resume`` restores them from there: made inside functions, they were pickled by value, so a sweep
started by one automed and resumed by a newer one kept the old hooks' code. Ray itself stays unloaded until the Ray
engine runs a stage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def _hooks(sweep_dir: str) -> list[Any]:
    from ray.tune.search.optuna import OptunaSearch  # noqa: F401  (Tune's searcher loads optuna lazily)

    from automed.search.ray_engine import _DefineByRun
    from automed.search.ray_tune_hooks import (
        BudgetMarks,
        BudgetStopper,
        RecordingStops,
        TrialProgress,
        TruthfulSearch,
    )

    space = _DefineByRun({"name": "t", "parameters": {"lr": {"type": "float", "low": 0.001, "high": 0.01}}})
    return [
        RecordingStops(sweep_dir, time_attr="epoch", metric="score", mode="max", grace_period=1),
        TruthfulSearch(sweep_dir, space=space, metric="score", mode="max"),
        BudgetStopper(sweep_dir, "search"),
        BudgetMarks(sweep_dir, "search"),
        TrialProgress("search", 4, False, sweep_dir),
    ]


@pytest.mark.parametrize("index", range(5))
def test_a_pickled_hook_is_restored_as_the_modules_class(tmp_path: Path, index: int) -> None:
    import ray.cloudpickle as pickle

    hook = _hooks(str(tmp_path))[index]
    data = pickle.dumps(hook)  # as Tune writes tuner.pkl
    # by value, cloudpickle rebuilds the class from its pickled code (a skeleton class, its methods' code objects)
    assert b"_make_skeleton_class" not in data and b"_make_function" not in data
    assert type(hook).__name__.encode() in data and b"automed.search.ray_tune_hooks" in data
    restored = pickle.loads(data)
    assert type(restored) is type(hook)
    assert restored.sweep_dir == str(tmp_path)  # the state travels as plain attributes


def test_ray_stays_unloaded_until_the_ray_engine_runs_a_stage() -> None:
    code = (
        "import sys, automed.search.ray_engine, automed.search.ray_hooks, automed.search.optuna_engine\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
