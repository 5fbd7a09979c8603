"""``sweep.json`` records the automed that started the sweep (``automed_version``), and ``--resume`` by another
automed is refused before any work, naming the version found, the version running and the fix: a sweep's options,
stages and Tune state are its version's. Only the pickles of a Ray stage's Tune hooks had told an older sweep apart
(``sweep_resume._old_tune_hooks``); a sweep.json without the record was written by an automed before it, so an older
one."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from automed._version import __version__
from automed.errors import ArtifactError, ConfigError
from automed.workflow.sweep_resume import resume_state
from automed.workflow.sweep_stages import STATE_FILE, SweepOptions


def _sweep(tmp_path: Path, **version: Any) -> Path:
    """A sweep work dir written by hand: its sweep.json, with ``automed_version`` when given."""
    wd = tmp_path / "S"
    wd.mkdir()
    state = {
        **version,
        "options": asdict(SweepOptions(space="space.yaml")),
        "dataset": str(tmp_path / "data"),
    }
    (wd / STATE_FILE).write_text(json.dumps(state))
    return wd


def test_a_sweep_started_by_another_automed_is_not_resumed(tmp_path: Path) -> None:
    wd = _sweep(tmp_path, automed_version="0.0.9")
    before = (wd / STATE_FILE).read_text()
    with pytest.raises(ConfigError, match=re.escape(f"cannot resume the sweep in {wd}")) as e:
        resume_state(wd, SweepOptions())
    (p,) = e.value.problems
    assert p.file == str(wd / STATE_FILE)
    assert "resumed by the automed version that started it (sweep.json's automed_version)" in p.rule
    assert p.value == f"started by automed 0.0.9; this is automed {__version__}"
    assert p.fix.startswith("finish it with automed 0.0.9, or start a new sweep with -o NEW_WORKDIR")
    assert str(wd / "trials") in p.fix
    assert (wd / STATE_FILE).read_text() == before and sorted(q.name for q in wd.iterdir()) == [STATE_FILE]


def test_a_sweep_json_without_the_record_is_an_older_automeds(tmp_path: Path) -> None:
    wd = _sweep(tmp_path)
    with pytest.raises(ConfigError) as e:
        resume_state(wd, SweepOptions())
    (p,) = e.value.problems
    assert (
        p.value
        == f"started by an automed before sweep.json recorded its version; this is automed {__version__}"
    )
    assert p.fix.startswith(
        "finish it with the automed that started it, or start a new sweep with -o NEW_WORKDIR"
    )


def test_the_version_is_refused_before_options_it_would_misread(tmp_path: Path) -> None:
    """An older sweep.json's options need not be this automed's: the version is what the resume says, not a
    TypeError of SweepOptions on an option that is no more."""
    wd = _sweep(tmp_path, automed_version="0.0.9")
    state = json.loads((wd / STATE_FILE).read_text())
    state["options"]["an_option_of_that_version"] = 1
    (wd / STATE_FILE).write_text(json.dumps(state))
    with pytest.raises(ConfigError, match=re.escape("started by automed 0.0.9")):
        resume_state(wd, SweepOptions())


def test_this_automeds_sweep_goes_on_to_its_other_checks(tmp_path: Path) -> None:
    wd = _sweep(tmp_path, automed_version=__version__)
    # past the version, to what it judges next: the dataset, which this hand-made sweep lacks
    with pytest.raises(ArtifactError, match="reads the dataset it was started on"):
        resume_state(wd, SweepOptions())


def test_the_command_line_says_why(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from automed.cli import app

    wd = _sweep(tmp_path, automed_version="0.0.9")
    r = CliRunner().invoke(app, ["sweep", "--resume", str(wd)])
    assert r.exit_code != 0
    text = str(r.exception) if isinstance(r.exception, ConfigError) else r.output
    assert "started by automed 0.0.9" in text and f"this is automed {__version__}" in text
