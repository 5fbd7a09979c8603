"""A fold's Ray task lost with its node (``NodeDiedError``) ends ``automed train --ray-address`` with an error that
says the finished folds are kept and ``--resume`` trains the rest; a fold's own error stays itself. The engine is
replaced: no cluster is started."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from automed.errors import ConfigError, ProblemsError
from automed.workflow.fold import FoldJob

ray = pytest.importorskip("ray")


def _job(wd: Path, fold: int) -> FoldJob:
    return FoldJob(workdir=str(wd), dataset="/d", config={}, fold=fold, train_ids=["a"], val_ids=["b"],
                   budget_s=None, device=None, resume=False, extend=0, run_id="r", uri="sqlite:///m.db",
                   experiment="e", workers=0, validation_tta=False)  # fmt: skip


def _engine(raised: Exception) -> type:
    class Engine:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def check_nodes(self, readable: list[str], writable: str) -> list[str]:
            return ["127.0.0.1"]

        def concurrency(self) -> int:
            return 2

        def run_tasks(self, fn: Any, args: list[Any], watch: Any = None) -> list[Any]:
            raise raised

    return Engine


def test_a_fold_lost_with_its_node_says_resume(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ray.exceptions import NodeDiedError

    from automed.workflow.fold_runs import run_jobs_on_ray

    died = NodeDiedError(
        "Task failed because the node it was running on is dead or unavailable. Node IP: 10.0.0.8"
    )
    monkeypatch.setattr("automed.search.ray_engine.RayEngine", _engine(died))
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 2.0}}])
    with pytest.raises(ProblemsError) as err:
        run_jobs_on_ray([_job(tmp_path, 0), _job(tmp_path, 1)], "head:6379", {"cpu": 1.0}, None, ["/d", "/w"])
    (problem,) = err.value.problems
    assert str(err.value).startswith("a fold's Ray task was lost:\n") and err.value.__cause__ is died
    assert problem.file == "folds [0, 1] on the Ray cluster" and problem.value.startswith(
        "NodeDiedError: Task"
    )
    assert f"`automed train --resume {tmp_path}`" in problem.fix and "finished folds are kept" in problem.fix


def test_a_folds_own_error_is_not_called_lost(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from automed.workflow.fold_runs import run_jobs_on_ray

    own = ConfigError.single("cfg.yaml", "a rule", "a value", "a fix")
    monkeypatch.setattr("automed.search.ray_engine.RayEngine", _engine(own))
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 2.0}}])
    with pytest.raises(ConfigError) as err:
        run_jobs_on_ray([_job(tmp_path, 0)], "head:6379", {"cpu": 1.0}, None, ["/d", "/w"])
    assert err.value is own
