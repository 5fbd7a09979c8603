"""``automed train --ray-address``: a cluster node that cannot read the dataset or write the work dir, and a
``--trial-resources`` no node can hold, are refused before the plan and the preprocessing (found once they were
done, when the folds were due, the first failed the run and the second hung it). The engine is replaced: no
cluster is started."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from automed.errors import ConfigError, Problem

ray = pytest.importorskip("ray")


def test_a_node_that_cannot_write_the_work_dir_is_refused_before_the_plan(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from automed import api
    from automed.testing.synthetic import make_dataset

    probed: list[tuple[list[str], str]] = []

    class Engine:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def check_nodes(self, readable: list[str], writable: str) -> list[str]:
            probed.append((readable, writable))
            raise ConfigError(  # as RayEngine.check_nodes says it
                [Problem("node 10.0.0.8 (gpu2)", "every Ray node must read the dataset and write the sweep dir "
                         "(a shared file system)", f"cannot write {writable} (Permission denied)", "mount it")],
                "the cluster cannot run this sweep",
            )  # fmt: skip

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr("automed.search.ray_engine.RayEngine", Engine)
    monkeypatch.setattr("automed.search.ray_connect.check_reachable", lambda address: None)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 2.0}}])
    ds = make_dataset(tmp_path / "data", n_cases=4, shape=(8, 16, 16), seed=3)
    wd = tmp_path / "W"
    with pytest.raises(ConfigError) as err:
        api.train(ds, wd, epochs=1, folds=2, ray_address="head:6379", show_progress=False,
                  tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")  # fmt: skip
    assert probed == [([str(ds.resolve())], str(wd.resolve()))]
    assert str(err.value).startswith("the cluster cannot run this training:\n")
    assert "write the work dir" in err.value.problems[0].rule and "gpu2" in err.value.problems[0].file
    assert not (wd / "plan.json").exists() and not (tmp_path / "mlflow.db").exists()  # nothing planned or run


class _Engine:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def check_nodes(self, readable: list[str], writable: str) -> list[str]:
        return ["127.0.0.1"]


def test_trial_resources_no_single_node_holds_are_refused_before_the_plan(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """cpu=2 on two nodes of 1 CPU: the cluster's 2 CPUs in all looked enough, and the fold task waited for ever."""
    from automed import api
    from automed.testing.synthetic import make_dataset

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr("automed.search.ray_engine.RayEngine", _Engine)
    monkeypatch.setattr("automed.search.ray_connect.check_reachable", lambda address: None)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    nodes = [{"Alive": True, "Resources": {"CPU": 1.0}}, {"Alive": True, "Resources": {"CPU": 1.0}},
             {"Alive": False, "Resources": {"CPU": 8.0}}]  # fmt: skip
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    ds = make_dataset(tmp_path / "data", n_cases=4, shape=(8, 16, 16), seed=3)
    wd = tmp_path / "W"
    with pytest.raises(ConfigError) as err:
        api.train(ds, wd, epochs=1, folds=2, ray_address="head:6379", trial_resources="cpu=2",
                  show_progress=False, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")  # fmt: skip
    (problem,) = err.value.problems
    assert problem.file == "--trial-resources" and problem.value == "cpu=2,gpu=0; its nodes have cpu=1,gpu=0"
    assert "--trial-resources cpu=1,gpu=0" in problem.fix
    assert not (wd / "plan.json").exists()


def test_resources_one_node_holds_pass() -> None:
    from automed.workflow.fold_runs import check_fits

    nodes = [
        {"Alive": True, "Resources": {"CPU": 1.0}},
        {"Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}},
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ray, "nodes", lambda: nodes)
        check_fits({"cpu": 4.0, "gpu": 1.0})
        with pytest.raises(ConfigError, match="cpu=1,gpu=2; its nodes have cpu=4,gpu=1, cpu=1,gpu=0"):
            check_fits({"cpu": 1.0, "gpu": 2.0})
