"""What the Ray engine's Tune hooks (:mod:`automed.search.ray_tune_hooks`: progress and trial times, the scheduler
and the time budget that mark the trials they stop, the searcher that tells TPE only what trials showed) read and
write, without Ray: the sweep dir they work under, the budget files, the budget's marks and outcomes.

Tune pickles the hooks when a search first starts and restores them from that pickle: their paths are taken, at
use, under the sweep dir of the driver that runs them (:func:`sweep_place`), not the one they were made in. Hooks
pickled by automed before they were module-level classes carry their own code and call ``sweep_path``,
``budget_files``, ``_budget_s``, ``mark_budget_stops``, ``_duplicate_of`` and ``_read_times`` of this module by
name: those names stay, so such a sweep still resumes, its restored stage with the hooks' code of the automed
that started it (the stages it starts after the resume get this automed's). Older ones, whose code is not today's,
are refused before a resume starts (:func:`hooks_of_another_automed`)."""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from automed.errors import ArtifactError
from automed.search.context import SweepContext, trial_dir
from automed.search.engine import TrialOutcome
from automed.search.report import STOPPED, mark_stopped, stopped_by
from automed.search.trial_records import read_trial

_PLACE: dict[str, Path] = {}  # "sweep_dir": the sweep dir of the search this driver runs now


@contextlib.contextmanager
def sweep_place(sweep_dir: str | Path) -> Iterator[None]:
    """Within it, every hook of this module reads and writes under ``sweep_dir``, the sweep dir this driver runs,
    whatever sweep dir it was made with. Tune pickles the hooks (with the first run's absolute paths) when a search
    first starts and restores them from that pickle, the searcher's from its own checkpoint: a sweep dir moved
    before ``--resume`` had its scheduler marks and trial times written to the old place (its folders made again)
    or lost, its searcher look for duplicates there, and its budget read from there; a sweep dir copied whole had
    them written into the original."""
    _PLACE["sweep_dir"] = Path(sweep_dir)
    try:
        yield
    finally:
        _PLACE.pop("sweep_dir", None)


def sweep_path(made_in: str | Path, *parts: str) -> Path:
    """``parts`` under the sweep dir of this driver (:func:`sweep_place`); outside one, under ``made_in``. A
    module-level function, so a hook Tune pickled calls this module's (cloudpickle pickles it by name), not a copy
    of its state."""
    return _PLACE.get("sweep_dir", Path(made_in)).joinpath(*parts)


def budget_files(sweep_dir: str | Path, stage: str) -> tuple[Path, Path]:
    """A stage's budget (``{"budget_s": seconds or null}``, written by the driver before each fit) and its signal
    (written when the budget runs out), under the sweep dir of this driver."""
    return sweep_path(sweep_dir, "ray", f"{stage}_budget.json"), sweep_path(
        sweep_dir, "ray", f"{stage}_budget_reached.json"
    )


def _budget_s(budget_file: Path, otherwise: float | None) -> float | None:
    try:
        budget = json.loads(budget_file.read_text())["budget_s"]
    except (OSError, ValueError, KeyError, TypeError):
        return otherwise
    return None if budget is None else float(budget)


def mark_budget_stops(sweep_dir: str, signal: Path) -> None:
    """``stopped.json`` (``by: budget``) in the folder of each trial ``signal`` lists, unless the scheduler stopped
    it first or it is a duplicate. Again after the search: a trial whose process had not yet claimed its config
    when Tune stopped it (it claims it while its actor stops) is marked once it has."""
    try:
        listed = json.loads(signal.read_text()).get("trials", [])
    except (OSError, ValueError):
        return
    for key in listed:
        td = Path(sweep_dir) / "trials" / str(key)
        tfile = td / "trial.json"  # none: stopped before it claimed its config
        if tfile.is_file() and not (td / STOPPED).is_file() and not _duplicate(tfile):
            mark_stopped(td, "budget")


def budget_outcomes(ctx: SweepContext, outcomes: list[TrialOutcome], signal: Path) -> list[TrialOutcome]:
    """A stopped trial whose folder the budget marked (``ray_tune_hooks.BudgetMarks``, :func:`mark_budget_stops`) timed out."""
    mark_budget_stops(ctx.sweep_dir, signal)
    return [
        replace(o, status="timed out")
        if o.status == "stopped" and stopped_by(trial_dir(ctx, o.key)) == "budget"
        else o
        for o in outcomes
    ]


def _no_incomplete_trials(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Trials did not complete")


def quiet_incomplete_trials() -> None:
    """Tune's closing "Trials did not complete: [...]" error names the failed trials again: left out (once)."""
    logger = logging.getLogger("ray.tune.tune")
    if _no_incomplete_trials not in logger.filters:
        logger.addFilter(_no_incomplete_trials)


def _duplicate(tfile: Path) -> bool:
    return bool(_duplicate_of(tfile))


def _duplicate_of(tfile: Path) -> str:
    """The trial a trial repeats ("": none, or no trial.json: it failed before it claimed its config)."""
    if not tfile.is_file():
        return ""
    try:
        return str(read_trial(tfile).get("duplicate_of") or "")
    except ArtifactError:  # damaged: the trial itself and a resume refuse it; Tune's hooks go on
        return ""


def _read_times(path: Path) -> dict[str, dict[str, Any]]:
    """The trial times recorded so far (a file cut short by a kill starts them afresh)."""
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


# cloudpickle rebuilds a class pickled with its code (by value) through this function; a class made inside a function
# is named FUNCTION.<locals>.CLASS in the pickle
_BY_VALUE = b"_make_skeleton_class"
_LOCAL_CLASS = re.compile(rb"([A-Za-z_]\w*)\.<locals>\.([A-Za-z_]\w*)")


def hooks_of_another_automed(stage_dir: Path) -> list[str]:
    """The Tune hooks a stage's saved state (``tuner.pkl``, read as bytes: nothing is unpickled) holds with the code
    of the automed that started the stage, which a ``--resume`` would run in place of this automed's: classes made
    inside functions, pickled by value, by an automed before they were module-level (:mod:`ray_tune_hooks`). An
    automed before this module existed pickled hooks that call names of ``ray_engine`` gone since (the restore ended
    in "AttributeError: Can't get attribute '_read_times' on <module 'automed.search.ray_engine'>"); later ones,
    until the hooks read their paths through :func:`sweep_path`, ran without the fixes made since (the resume's
    ``--budget`` ignored, a moved sweep dir's marks written at the old place). Hooks that call :func:`sweep_path`
    (automed from the commit that added it until the hooks became module-level) are the module-level classes' code
    today, moved verbatim, and are not listed. Empty: no saved state, or only this automed's hooks."""
    try:
        data = (stage_dir / "tuner.pkl").read_bytes()
    except OSError:
        return []
    if _BY_VALUE not in data or b"sweep_path" in data:
        return []
    return sorted({m.group(2).decode() for m in _LOCAL_CLASS.finditer(data)})
