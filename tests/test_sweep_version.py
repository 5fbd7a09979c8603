"""``sweep.json`` records the automed that started the sweep (``automed_version``) and its sweep state's
compatibility number (``state_version``, :data:`~automed.workflow.sweep_stages.STATE_VERSION`); ``--resume`` of
another state_version is refused before any work, naming both versions and the fix. ``automed_version`` is named,
not compared: it stays 0.1.0 through development while the state changes. Independently, saved options this
automed does not know are refused naming sweep.json and the keys (they had crashed SweepOptions with a TypeError);
a sweep.json without ``state_version`` (version 1) whose options all load resumes."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from automed._version import __version__
from automed.errors import ArtifactError, ConfigError
from automed.workflow import sweep_state
from automed.workflow.sweep_resume import resume_state
from automed.workflow.sweep_stages import STATE_FILE, STATE_VERSION, SweepOptions
from tests.test_sweep_state import saved_parts

PAST_THE_STATE = (
    "reads the dataset it was started on"  # what resume judges next: this hand-made sweep lacks it
)


def _sweep(tmp_path: Path, options: dict[str, Any] | None = None, **record: Any) -> Path:
    """A sweep work dir written by hand: its sweep.json, with ``automed_version``/``state_version`` when given."""
    wd = tmp_path / "S"
    wd.mkdir()
    state = {
        **saved_parts(),
        **record,
        "options": asdict(SweepOptions(space="space.yaml")) if options is None else options,
        "dataset": str(tmp_path / "data"),
    }
    (wd / STATE_FILE).write_text(json.dumps(state))
    return wd


def test_a_new_sweep_state_version_is_refused_before_any_work(tmp_path: Path) -> None:
    wd = _sweep(tmp_path, automed_version=__version__, state_version=STATE_VERSION + 1)
    before = (wd / STATE_FILE).read_text()
    with pytest.raises(ConfigError, match=re.escape(f"cannot resume the sweep in {wd}")) as e:
        resume_state(wd, SweepOptions())
    (p,) = e.value.problems
    assert p.file == str(wd / STATE_FILE)
    assert "reads its sweep state (sweep.json's state_version)" in p.rule
    assert p.value == (
        f"sweep state version {STATE_VERSION + 1}, started by automed {__version__}; this automed {__version__} "
        f"reads sweep state version {STATE_VERSION}"
    )
    assert p.fix.startswith(
        "finish it with the automed that started it, or start a new sweep with -o NEW_WORKDIR"
    )
    assert str(wd / "trials") in p.fix
    assert (wd / STATE_FILE).read_text() == before and sorted(q.name for q in wd.iterdir()) == [STATE_FILE]


@pytest.mark.parametrize("found", [0, "1", True, None])
def test_a_state_version_that_is_not_this_one_is_refused(tmp_path: Path, found: Any) -> None:
    wd = _sweep(tmp_path, state_version=found)
    with pytest.raises(
        ConfigError, match=re.escape(f"sweep state version {found!r}, started by an automed before")
    ):
        resume_state(wd, SweepOptions())


def test_a_sweep_json_without_state_version_is_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Today the first is this code's: it resumes. Once the state is bumped, it is refused as version 1."""
    wd = _sweep(tmp_path)
    with pytest.raises(ArtifactError, match=PAST_THE_STATE):
        resume_state(wd, SweepOptions())
    monkeypatch.setattr(sweep_state, "STATE_VERSION", 2)
    with pytest.raises(ConfigError) as e:
        resume_state(wd, SweepOptions())
    (p,) = e.value.problems
    assert p.value == (
        "sweep state version 1 (sweep.json records none: written before it did), started by an automed before "
        f"sweep.json recorded its version; this automed {__version__} reads sweep state version 2"
    )


def test_another_automed_version_of_this_state_resumes(tmp_path: Path) -> None:
    """automed_version is recorded, not compared (a release need not change the sweep state)."""
    wd = _sweep(tmp_path, automed_version="0.0.9", state_version=STATE_VERSION)
    with pytest.raises(ArtifactError, match=PAST_THE_STATE):
        resume_state(wd, SweepOptions())


def test_the_state_version_is_refused_before_options_it_would_misread(tmp_path: Path) -> None:
    options = {**asdict(SweepOptions(space="space.yaml")), "an_option_of_that_version": 1}
    wd = _sweep(tmp_path, options, automed_version="0.0.9", state_version=STATE_VERSION + 1)
    with pytest.raises(ConfigError, match=re.escape(f"sweep state version {STATE_VERSION + 1}, started by")):
        resume_state(wd, SweepOptions())


@pytest.mark.parametrize("record", [{}, {"automed_version": __version__, "state_version": STATE_VERSION}])
def test_an_option_this_automed_does_not_know_is_refused_not_a_type_error(
    tmp_path: Path, record: dict[str, Any]
) -> None:
    """The crash that motivated the record: an older sweep.json of the same version number whose options hold a
    key this SweepOptions lacks ended in 'SweepOptions.__init__() got an unexpected keyword argument'."""
    options = {**asdict(SweepOptions(space="space.yaml")), "zeta_gone": 1, "alpha_gone": True}
    wd = _sweep(tmp_path, options, **record)
    with pytest.raises(ConfigError, match=re.escape(f"cannot resume the sweep in {wd}")) as e:
        resume_state(wd, SweepOptions())
    (p,) = e.value.problems
    assert p.file == str(wd / STATE_FILE)
    assert "sweep.json's options" in p.rule
    assert p.value.startswith("options this automed does not know: alpha_gone, zeta_gone (started by ")
    assert f"this is automed {__version__})" in p.value
    assert p.fix.startswith("finish it with the automed that started it") and "-o NEW_WORKDIR" in p.fix


def test_a_required_option_not_saved_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclass
    class Options(SweepOptions):
        must: int = field(kw_only=True)

    monkeypatch.setattr(sweep_state, "SweepOptions", Options)
    wd = _sweep(tmp_path, {"space": "space.yaml", "gone": 1})
    with pytest.raises(ConfigError) as e:
        resume_state(wd, SweepOptions())
    (p,) = e.value.problems
    assert p.value.startswith(
        "options this automed does not know: gone; options it needs, not saved: must (started by"
    )


def test_an_option_added_since_takes_its_default_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    options = asdict(SweepOptions(space="space.yaml", trials=3))
    del options["max_voxels"], options["keep_case_ids"]
    wd = _sweep(tmp_path, options)
    with caplog.at_level(logging.WARNING), pytest.raises(ArtifactError, match=PAST_THE_STATE):
        resume_state(wd, SweepOptions())
    assert (
        f"{wd / STATE_FILE}: the sweep's options lack keep_case_ids, max_voxels (added since it started): this "
        "automed's defaults taken (keep_case_ids=False, max_voxels=None)" in caplog.text
    )


def test_the_command_line_says_why(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from automed.cli import app

    wd = _sweep(tmp_path, automed_version="0.0.9", state_version=STATE_VERSION + 1)
    r = CliRunner().invoke(app, ["sweep", "--resume", str(wd)])
    assert r.exit_code != 0
    text = str(r.exception) if isinstance(r.exception, ConfigError) else r.output
    assert f"sweep state version {STATE_VERSION + 1}, started by automed 0.0.9" in text
    assert f"reads sweep state version {STATE_VERSION}" in text
