"""``automed ui``: a value it cannot serve is refused before the MLflow server starts, and a server that fails makes
the command fail (it had printed MLflow's traceback and exited 0, or hung on a port that cannot exist)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from automed import cli
from automed.errors import ConfigError


@pytest.fixture()
def started(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The commands ``automed ui`` starts (none is run: each ends at once with the exit code in ``CODE``)."""
    calls: list[list[str]] = []

    class FakeServer:
        pid = 0

        def __init__(self, cmd: list[str], **kwargs: Any) -> None:
            calls.append(cmd)

        def wait(self) -> int:
            return CODE["server"]

    monkeypatch.setattr(subprocess, "Popen", FakeServer)
    monkeypatch.setattr(
        "automed.cli.tools._stop_group", lambda server: None
    )  # nothing started, nothing to stop
    return calls


CODE = {"server": 0}


def test_a_port_that_cannot_exist_is_refused_before_the_server_starts(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    started: list[list[str]],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "handle_sigterm", lambda: None)  # leave pytest's own SIGTERM handling alone
    monkeypatch.setattr(sys, "argv", ["automed", "ui", "--port", "99999"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "Invalid value for '--port'" in err and "found '99999'" in err and "65535" in err
    assert started == [] and not (tmp_path / "mlflow.db").exists()


def test_a_store_mlflow_cannot_serve_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: list[list[str]]
) -> None:
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli.app, ["ui", "--tracking-uri", "bogus://x"])
    assert isinstance(r.exception, ConfigError), r.output
    assert "--tracking-uri" in str(r.exception) and "bogus://x" in str(r.exception)
    assert "sqlite:///" in str(r.exception)  # the fix
    assert started == []


def test_a_server_that_fails_fails_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: list[list[str]]
) -> None:
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setitem(CODE, "server", 1)  # e.g. the port is taken
    r = CliRunner().invoke(cli.app, ["ui", "--tracking-uri", store, "--port", "5123"])
    assert r.exit_code == 1, r.output
    assert len(started) == 1 and "5123" in started[0] and store in started[0]
    monkeypatch.setitem(CODE, "server", 0)  # stopped with Ctrl-C after serving
    assert CliRunner().invoke(cli.app, ["ui", "--tracking-uri", store]).exit_code == 0


def test_no_store_in_the_folder_is_refused_not_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: list[list[str]]
) -> None:
    """MLflow's server creates an empty store where none is: `automed ui` run in the wrong folder left an mlflow.db
    there and showed no runs. It says where it looked and what to pass instead; a store named on purpose may be new
    (a server to track into)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    r = CliRunner().invoke(cli.app, ["ui"])
    assert isinstance(r.exception, ConfigError), r.output
    text = str(r.exception)
    assert str(tmp_path / "mlflow.db") in text and "--tracking-uri sqlite:///" in text, text
    assert started == [] and not (tmp_path / "mlflow.db").exists()
    new = tmp_path / "elsewhere.db"
    assert CliRunner().invoke(cli.app, ["ui", "--tracking-uri", f"sqlite:///{new}"]).exit_code == 0
    assert len(started) == 1 and f"sqlite:///{new}" in started[0]


def test_a_separate_registry_is_served_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: list[list[str]]
) -> None:
    """MLflow's server reads no MLFLOW_REGISTRY_URI: with the registry apart, the UI showed no registered model."""
    store, registry = f"sqlite:///{tmp_path / 'mlflow.db'}", f"sqlite:///{tmp_path / 'reg' / 'registry.db'}"
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", registry)
    assert CliRunner().invoke(cli.app, ["ui", "--tracking-uri", store, "--port", "5124"]).exit_code == 0
    cmd = started[-1]
    assert cmd[cmd.index("--registry-store-uri") + 1] == registry
    monkeypatch.delenv("MLFLOW_REGISTRY_URI")
    assert CliRunner().invoke(cli.app, ["ui", "--tracking-uri", store, "--port", "5124"]).exit_code == 0
    assert "--registry-store-uri" not in started[-1]
