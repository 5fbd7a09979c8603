"""The command line's own checks of typed values: a ``--budget`` beyond the documented maximum is refused by every
verb that takes one (before any work), and a number typer refuses is echoed with the option that refused it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from automed import cli
from automed.cli._common import BUDGET_HELP, checked_budget
from automed.config import MAX_BUDGET_DAYS
from automed.errors import ConfigError


@pytest.mark.parametrize(
    "verb",
    [["train", "DATA", "-o", "OUT"], ["sweep", "DATA", "-o", "OUT"], ["demo", "-o", "OUT"]],
    ids=["train", "sweep", "demo"],
)
def test_a_budget_beyond_the_maximum_is_refused_before_any_work(tmp_path: Path, verb: list[str]) -> None:
    (tmp_path / "DATA").mkdir()
    args = [str(tmp_path / a) if a in ("DATA", "OUT") else a for a in verb]
    r = CliRunner().invoke(cli.app, [*args, "--budget", "99999h"])
    assert isinstance(r.exception, ConfigError), r.output
    text = str(r.exception)
    assert "--budget" in text and f"at most {MAX_BUDGET_DAYS} days (720h)" in text
    assert (
        f"at most {MAX_BUDGET_DAYS} days ({MAX_BUDGET_DAYS * 24}h)" in BUDGET_HELP
    )  # the help says the limit
    assert "'99999h', which is 4,166.6 days" in text  # the value as typed, restated in days
    assert not (tmp_path / "OUT").exists()


def test_the_maximum_budget_is_accepted_and_returned_as_typed() -> None:
    assert checked_budget("720h") == "720h" and checked_budget("2h30m") == "2h30m"
    assert checked_budget(None) is None
    with pytest.raises(ConfigError, match=r"at most 30 days.*'720h1s', which is 30\.0 days"):
        checked_budget("720h1s")
    with pytest.raises(ConfigError, match=r"a budget is a duration such as 45m.*found '1h30x'"):
        checked_budget("1h30x")


def test_the_budget_maximum_is_in_the_help() -> None:
    for verb in ("train", "sweep", "demo"):
        r = CliRunner().invoke(cli.app, [verb, "--help"], env={"COLUMNS": "400"})
        assert r.exit_code == 0 and "at most 30 days (720h)" in r.output, verb


@pytest.mark.parametrize(
    ("typed", "option", "value"),
    [
        (["--workers", "-1"], "'--workers' / '-w'", "'-1'"),
        (["--epochs", "0"], "'--epochs'", "'0'"),
        (["--fold", "-2"], "'--fold'", "'-2'"),
        (["--workers", "abc"], "'--workers' / '-w'", "'abc'"),
    ],
)
def test_a_number_typer_refuses_is_echoed_with_its_option(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    typed: list[str],
    option: str,
    value: str,
) -> None:
    monkeypatch.setattr(cli, "handle_sigterm", lambda: None)  # leave pytest's own SIGTERM handling alone
    monkeypatch.setattr(sys, "argv", ["automed", "train", str(tmp_path), "-o", str(tmp_path / "W"), *typed])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert f"Invalid value for {option}" in err and f"found {value}" in err
    assert not (tmp_path / "W").exists()


def test_the_api_holds_a_budget_to_the_same_limit() -> None:
    """api.train(budget="99999h") and the other verbs parse budgets through config.parse_duration: the command
    line's limit holds for Python callers too."""
    from automed.config import parse_duration
    from automed.errors import ConfigError

    assert parse_duration("720h") == 720 * 3600
    with pytest.raises(ConfigError, match=r"at most 30 days"):
        parse_duration("99999h")
