"""``automed train --ray-address``: a cluster node that cannot read the dataset or write the work dir is refused
before the plan and the preprocessing (it was found once they were done, when the folds were due). The engine is
replaced: no cluster is started."""

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
    ds = make_dataset(tmp_path / "data", n_cases=4, shape=(8, 16, 16), seed=3)
    wd = tmp_path / "W"
    with pytest.raises(ConfigError) as err:
        api.train(ds, wd, epochs=1, folds=2, ray_address="head:6379", show_progress=False,
                  tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")  # fmt: skip
    assert probed == [([str(ds.resolve())], str(wd.resolve()))]
    assert str(err.value).startswith("the cluster cannot run this training:\n")
    assert "write the work dir" in err.value.problems[0].rule and "gpu2" in err.value.problems[0].file
    assert not (wd / "plan.json").exists() and not (tmp_path / "mlflow.db").exists()  # nothing planned or run
