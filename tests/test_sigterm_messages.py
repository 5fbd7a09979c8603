"""What a terminated command prints: SIGTERM sent to the whole process group (``timeout``, SLURM, ``docker stop``)
also kills the DataLoader workers, whose death reaches the CLI as a RuntimeError (or an automed error) during the
clean-up; that is the termination, not an unexpected error to re-run with --debug."""

from __future__ import annotations

from typing import Any

import pytest

from automed import cli
from automed.cli import _common
from automed.errors import ConfigError, Problem


def _terminated_then(exc: Exception) -> Any:
    def app(*args: Any, **kwargs: Any) -> None:
        _common.state["terminated"] = True
        raise exc

    return app


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("DataLoader worker (pid 1) is killed by signal: Terminated."),
        ConfigError([Problem("x", "a rule", "a value", "a fix")]),
    ],
)
def test_a_terminated_command_says_terminated_not_unexpected_error(
    exc: Exception, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "app", _terminated_then(exc))
    monkeypatch.setattr("sys.argv", ["automed", "train"])
    monkeypatch.setitem(_common.state, "debug", False)
    monkeypatch.setitem(_common.state, "terminated", False)
    with pytest.raises(SystemExit) as stop:
        cli._run()
    printed = capsys.readouterr().err
    assert stop.value.code == _common.SIGTERM_EXIT
    assert "terminated (SIGTERM)" in printed
    assert "unexpected error" not in printed and "error:" not in printed


def test_an_error_without_sigterm_is_still_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def app(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "app", app)
    monkeypatch.setattr("sys.argv", ["automed", "train"])
    monkeypatch.setitem(_common.state, "debug", False)
    monkeypatch.setitem(_common.state, "terminated", False)
    with pytest.raises(SystemExit) as stop:
        cli._run()
    assert stop.value.code == 1
    assert "unexpected error: RuntimeError: boom" in capsys.readouterr().err
