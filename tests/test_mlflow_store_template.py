"""The test harness's shortcut for new MLflow stores (``conftest._mlflow_tables_from_a_template``) gives a store
exactly what MLflow's own migrations give it: the same tables, indexes, revision and rows, and one that works."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import mlflow.store.db.utils as db_utils  # imported before the autouse fixture runs: it installs the shortcut


def _contents(db: Path) -> tuple[set[tuple[str, str, str]], dict[str, list[tuple[object, ...]]]]:
    """Each table's and index's definition (its lines sorted: MLflow's own migrations write a table's constraints
    in an order that varies from one process to the next) and each table's rows."""
    with closing(sqlite3.connect(db)) as c:
        schema = {
            (kind, name, "\n".join(sorted(line.strip().rstrip(",") for line in sql.splitlines())))
            for kind, name, sql in c.execute("SELECT type, name, COALESCE(sql, '') FROM sqlite_master")
        }
        tables = [name for kind, name, _ in schema if kind == "table"]
        rows = {t: sorted(c.execute(f'SELECT * FROM "{t}"'), key=repr) for t in tables}
    return schema, rows


def test_a_store_from_the_template_equals_a_migrated_one(tmp_path: Path) -> None:
    initialize = db_utils._initialize_tables
    assert getattr(initialize, "from_template", False), "the conftest shortcut is not installed"
    stores = {}
    for name, build in (("copied", initialize), ("migrated", initialize.migrate)):
        engine = db_utils.create_sqlalchemy_engine_with_retry(f"sqlite:///{tmp_path / name}.db")
        build(engine)
        assert db_utils._all_tables_exist(engine)
        engine.dispose()
        stores[name] = _contents(tmp_path / f"{name}.db")
    assert len(stores["migrated"][0]) > 50 and stores["migrated"][1]["alembic_version"]
    assert stores["copied"] == stores["migrated"]


def test_a_new_store_opened_through_mlflow_takes_runs_and_models(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("x", artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "dice", 0.5)
    client.create_registered_model("m")
    client.create_model_version("m", f"runs:/{run.info.run_id}/model", run.info.run_id)
    assert client.get_run(run.info.run_id).data.metrics == {"dice": 0.5}
    assert client.get_model_version("m", "1").run_id == run.info.run_id
