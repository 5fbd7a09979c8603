"""A Ray cluster address that nothing answers at (``--ray-address``, ``RAY_ADDRESS``) is refused at once, naming it,
before a training plans or preprocesses anything: ``ray.init`` retried it for ever."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from automed.errors import ConfigError

pytest.importorskip("ray")


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_an_address_nothing_answers_at_is_refused_at_once_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from automed.search.ray_connect import connect

    address = f"127.0.0.1:{_closed_port()}"
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        connect(address)
    assert time.perf_counter() - t0 < 5.0
    (problem,) = err.value.problems
    assert str(err.value).startswith(f"cannot connect to the Ray cluster at {address}:\n")
    assert problem.file == "--ray-address" and problem.value.startswith(
        f"{address}: nothing answers at {address}"
    )
    assert "HOST:PORT" in problem.rule and "`ray status` on the head node" in problem.fix
    assert "a --resume: pass --ray-address local" in problem.fix  # leaving it out reuses the saved address
    monkeypatch.setenv("RAY_ADDRESS", "head-without-port")
    with pytest.raises(ConfigError) as err:
        connect(None)
    (problem,) = err.value.problems
    assert problem.file == "RAY_ADDRESS" and problem.value == "head-without-port: not HOST:PORT"
    monkeypatch.setenv("RAY_ADDRESS", "local")  # Ray's own word for a new cluster here: nothing to reach
    from automed.search.ray_connect import check_reachable

    check_reachable(None)


def test_a_training_on_a_wrong_address_is_refused_before_any_work(tmp_path: Path) -> None:
    from automed import api
    from automed.testing.synthetic import make_dataset

    ds = make_dataset(tmp_path / "data", n_cases=4, shape=(8, 16, 16), seed=3)
    wd, address = tmp_path / "W", f"127.0.0.1:{_closed_port()}"
    with pytest.raises(ConfigError) as err:
        api.train(ds, wd, epochs=1, folds=2, ray_address=address, show_progress=False,
                  tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")  # fmt: skip
    assert err.value.problems[0].file == "--ray-address" and address in err.value.problems[0].value
    assert (
        not wd.exists() and not (tmp_path / "mlflow.db").exists()
    )  # no plan, no preprocessing, no MLflow run
