"""A Ray sweep started by an automed whose Tune hooks were classes made inside functions: Tune pickled them with their
code (by value) into the stage's ``tuner.pkl``, and ``--resume`` restored and ran that code instead of this automed's.
The oldest ones called names of ``ray_engine`` gone since and the resume ended in an unexpected "AttributeError:
Can't get attribute '_read_times' on <module 'automed.search.ray_engine'>"; later ones ran silently without the fixes
made since. Such a sweep is now refused before any work, naming the file and the fix. Hooks that read their paths
through ``ray_hooks.sweep_path`` are today's code moved verbatim and still resume, as do this automed's own."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from automed._version import __version__
from automed.errors import ArtifactError, ConfigError
from automed.search.ray_hooks import budget_files, hooks_of_another_automed, sweep_path
from automed.workflow.sweep_resume import resume_state
from automed.workflow.sweep_stages import STATE_FILE, SweepOptions
from tests.test_sweep_state import saved_parts

pickle = pytest.importorskip("ray.cloudpickle")


def _old_budget_marks(sweep_dir: str, stage: str) -> Any:
    """A hook as an automed before its hooks read paths through sweep_path made it: a class inside a function."""

    class BudgetMarks:
        def on_step_end(self) -> Path:
            return budget_files(sweep_dir, stage)[1]

    return BudgetMarks()


def _verbatim_progress(sweep_dir: str, stage: str) -> Any:
    """A hook made inside a function that reads its paths through sweep_path: today's code, not yet module-level."""

    class _Progress:
        def times_file(self) -> Path:
            return sweep_path(sweep_dir, "ray", f"{stage}_trial_times.json")

    return _Progress()


def _sweep(tmp_path: Path, stages: dict[str, Any], done: dict[str, Any]) -> Path:
    """A Ray sweep work dir written by hand: sweep.json, and each stage's Tune state (tuner.pkl) holding ``hooks``."""
    wd = tmp_path / "S"
    for stage, hooks in stages.items():
        (wd / "ray" / stage).mkdir(parents=True)
        (wd / "ray" / stage / "tuner.pkl").write_bytes(pickle.dumps({"_run_config": {"callbacks": hooks}}))
    state = {
        **saved_parts(),
        "automed_version": __version__,  # this automed's sweep: only its hooks are judged
        "options": asdict(SweepOptions(space="space.yaml")),
        "dataset": str(tmp_path / "data"),
        "stages": done,
    }
    (wd / STATE_FILE).write_text(json.dumps(state))
    return wd


def test_a_stage_saved_with_an_older_automeds_hooks_is_refused_before_any_work(tmp_path: Path) -> None:
    wd = _sweep(tmp_path, {"search": [_old_budget_marks(str(tmp_path / "S"), "search")]}, {})
    with pytest.raises(ConfigError) as e:
        resume_state(wd, SweepOptions())
    (p,) = e.value.problems
    assert p.file == str(wd / "ray" / "search" / "tuner.pkl")
    assert "runs this automed's Tune hooks" in p.rule
    assert p.value == "stage search: BudgetMarks saved with their code"
    assert "start a new sweep with -o NEW_WORKDIR" in p.fix and str(wd / "trials") in p.fix
    assert sorted(q.name for q in wd.iterdir()) == ["ray", STATE_FILE]  # nothing was made


def test_only_the_stages_a_resume_restores_are_judged(tmp_path: Path) -> None:
    """A finished search is not restored again: its old hooks do not matter; the promotion it started does."""
    old = _old_budget_marks(str(tmp_path / "S"), "promote")
    wd = _sweep(tmp_path, {"search": [old], "promote": [old]}, {"search": True, "promote_started": True})
    with pytest.raises(ConfigError) as e:
        resume_state(wd, SweepOptions())
    assert [p.file for p in e.value.problems] == [str(wd / "ray" / "promote" / "tuner.pkl")]


def test_this_automeds_hooks_and_verbatim_ones_are_not_refused(tmp_path: Path) -> None:
    from automed.search.ray_tune_hooks import BudgetMarks, TrialProgress

    sd = str(tmp_path / "S")
    current = [TrialProgress("search", 4, False, sd), BudgetMarks(sd, "search")]
    verbatim = [_verbatim_progress(sd, "promote")]
    wd = _sweep(tmp_path, {"search": current, "promote": verbatim}, {})
    assert b"_make_skeleton_class" in (wd / "ray" / "promote" / "tuner.pkl").read_bytes()  # pickled by value
    assert hooks_of_another_automed(wd / "ray" / "search") == []
    assert hooks_of_another_automed(wd / "ray" / "promote") == []
    assert hooks_of_another_automed(wd / "ray" / "grid") == []  # no saved state
    # the resume goes past the hooks to what it judges next: the dataset, which this hand-made sweep lacks
    with pytest.raises(ArtifactError, match="reads the dataset it was started on"):
        resume_state(wd, SweepOptions())
