"""A command killed while MLflow built a new SQLite store's tables (its migrations: a second or more) left a
half-built database, and every later command on that store failed with a bare ``sqlite3.OperationalError: table ...
already exists`` (seen after a SIGKILL within seconds of a first ``automed train``). A new store is now built beside
its place and moved there when complete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from automed.tracking import Tracker


class Killed(BaseException):
    """The process dying mid-migration (not an Exception: nothing catches it on the way out)."""


def test_a_store_build_killed_midway_leaves_no_half_built_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.store.db.utils as utils
    import sqlalchemy

    real = utils._initialize_tables

    def killed(engine: Any) -> None:  # the first migrations ran, then the process died
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY)"))
        raise Killed

    db = tmp_path / "store" / "mlflow.db"
    uri = f"sqlite:///{db}"
    monkeypatch.setattr(utils, "_initialize_tables", killed)
    with pytest.raises(Killed):
        Tracker(uri, "exp")
    assert not db.exists()  # nothing half-built where the store goes
    monkeypatch.setattr(utils, "_initialize_tables", real)
    tracker = Tracker(uri, "exp")  # the next command builds it whole (the killed build's file replaced)
    assert db.is_file() and tracker.client.get_experiment_by_name("exp") is not None
    assert not list(db.parent.glob(".mlflow.db.new-*"))  # the killed build's file removed
    again = Tracker(uri, "exp")  # an existing store is opened as it is
    assert again.experiment_id == tracker.experiment_id
