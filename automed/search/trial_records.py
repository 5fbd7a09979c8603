"""A sweep trial's records in ``SWEEP/trials/<key>/``, each read through one reader here: ``trial.json`` (its key,
sampled values and the config it trains, written when it claims that config) and ``result.json`` (its finished
folds' scores and its CV score, rewritten from the folds' own files whenever a fold of it ends).

They differ in what a damaged one (edited by hand, truncated) allows. ``trial.json`` is what the trial trained:
nothing else records it, so :func:`read_trial` refuses a damaged one naming the file, the rule, the value found and
the fix. ``result.json`` is recomputed: :func:`read_result` reads a damaged one as missing, as the sweep already read
a trial with none (no fold done), and says so in a warning; the trial's finished folds are kept, and its next fold
unit (a resumed sweep's promotion) finds them done and writes the file anew. Before, either crashed the sweep with a
bare JSONDecodeError, KeyError or TypeError."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from automed.errors import ArtifactError, Problem
from automed.records import fits, read_recomputable, shown

log = logging.getLogger(__name__)

TRIAL = "trial.json"
RESULT = "result.json"

# each key of trial.json: its type (checked strictly), in words, and whether every reader needs it (config: those
# that read it, :func:`read_trial`'s ``config``; the others are written as the trial claims or settles its config,
# or were not written by an earlier automed)
_TRIAL_KEYS: tuple[tuple[str, Any, str, bool], ...] = (
    ("key", str, "the trial's key, text", True),
    ("values", dict[str, Any], "its sampled values, an object", True),
    ("config", dict[str, Any], "the training config it trains, an object", False),
    ("is_default", bool, "whether it is the planner default, true or false", False),
    ("digest", str, "its config's digest, text", False),
    ("identity", dict[str, Any] | None, "the training its config resolves to, an object or null", False),
    ("duplicate_of", str | None, "the trial it repeats, text or null", False),
)
_TRIAL_FIX = (
    "put back the trial.json automed wrote (from a backup): it is the config the trial trained, which automed "
    "cannot recompute; or start the sweep anew with -o NEW_WORKDIR"
)

# each key of result.json the sweep reads: its type and, in words, what it is
_RESULT_KEYS: tuple[tuple[str, Any, str], ...] = (
    ("score", float, "the trial's score over its folds, a number"),
    ("compute_s", float, "its compute seconds, a number"),
    ("trial_s", float, "its seconds, a number"),
    ("host", str, "the host it ran on, text"),
    ("node", str, "the Ray nodes it ran on, text"),
)


def read_trial(path: Path, *, config: bool = False) -> dict[str, Any]:
    """A trial's ``trial.json``: an object with its key and values (text, object), its config (an object) when
    ``config`` (the reader uses it), and, where written, the kinds :data:`_TRIAL_KEYS` gives; an
    :class:`ArtifactError` otherwise (missing included)."""
    data, problems = _checked_trial(path, config)
    if data is None or problems:
        raise ArtifactError(problems, f"the sweep trial in {path.parent} cannot be read")
    return data


def check_trials(sweep_dir: Path) -> None:
    """Every trial's ``trial.json`` under ``sweep_dir`` readable with its config (:func:`read_trial`), all problems
    at once: a resumed sweep checks them before any work."""
    trials = sorted((sweep_dir / "trials").glob(f"*/{TRIAL}"))
    problems = [p for tfile in trials for p in _checked_trial(tfile, True)[1]]
    if problems:
        raise ArtifactError(
            problems, f"cannot resume the sweep in {sweep_dir}: a trial's trial.json is damaged"
        )


def _checked_trial(path: Path, config: bool) -> tuple[dict[str, Any] | None, list[Problem]]:
    """``path``'s trial.json (None: not an object) and what is wrong with it."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        rule, found = "trial.json must be readable", exc.strerror or type(exc).__name__
        return None, [Problem(str(path), rule, found, _TRIAL_FIX)]
    except ValueError as exc:  # not JSON (UnicodeDecodeError included)
        return None, [Problem(str(path), "trial.json must be valid JSON", str(exc)[:120], _TRIAL_FIX)]
    if not isinstance(data, dict):
        return None, [Problem(str(path), "trial.json must be a JSON object", shown(data), _TRIAL_FIX)]
    return data, [
        Problem(str(path), f"trial.json must hold {key} ({what})", "none", _TRIAL_FIX)
        if key not in data
        else Problem(str(path), f"trial.json's {key} must be {what}", shown(data[key]), _TRIAL_FIX)
        for key, kind, what, required in _TRIAL_KEYS
        if ((required or (config and key == "config")) and key not in data)
        or (key in data and not fits(kind, data[key]))
    ]  # fmt: skip


def read_result(path: Path, *, quiet: bool = False) -> dict[str, Any] | None:
    """A trial's ``result.json``: an object whose ``folds`` maps each finished fold (its number as text) to an object
    with its ``score`` (a number) and, where written, ``epochs`` (a whole number), and whose other keys the sweep reads are of the
    kinds :data:`_RESULT_KEYS` gives. None when there is none, or (with a warning naming the file, the rule, the value
    and what follows) when it is damaged: it is recomputed from the trial's fold files. ``quiet``: that warning is
    a debug line (the live view reads every trial each second; the sweep's own reads warn)."""
    result: dict[str, Any] | None = read_recomputable(
        path,
        _result_problem,
        "read as no fold of the trial done (it is recomputed: the trial's finished folds are kept, and its next fold "
        "unit, such as a resumed sweep's promotion, writes it anew; to have it at once, put back the result.json "
        "automed wrote)",
        level=logging.DEBUG if quiet else logging.WARNING,
    )
    return result


def _result_problem(data: Any) -> tuple[str, str] | None:
    """The rule a result.json's content breaks and the value that breaks it; None: none."""
    if not isinstance(data, dict):
        return "result.json must be a JSON object", shown(data)
    folds = data.get("folds")
    if not isinstance(folds, dict) or not fits(dict[str, dict[str, Any]], folds):
        return "result.json's folds must be an object of an object per fold", shown(folds)
    for fold, done in folds.items():
        epochs_ok = "epochs" not in done or fits(int, done["epochs"])
        if not (fold.isdigit() and fits(float, done.get("score")) and epochs_ok):
            rule = (
                "result.json's folds must each be a fold number with its score (a number) and epochs (whole)"
            )
            return rule, f"fold {fold!r}: {shown(done)}"
    for key, kind, what in _RESULT_KEYS:
        if key in data and not fits(kind, data[key]):
            return f"result.json's {key} must be {what}", shown(data[key])
    return None


# fold_result.json, each key: its type and, in words, what it is
_FOLD_KEYS: tuple[tuple[str, Any, str], ...] = (
    ("score", float, "the fold's score, a number"),
    ("epochs", int, "its epochs, a whole number"),
    ("compute_s", float, "its compute seconds, a number"),
    ("unit_s", float, "its unit's seconds, a number"),
)


def read_fold_result(path: Path) -> dict[str, Any] | None:
    """A trial fold's ``fold_result.json`` (``trials/<key>/train/<configuration>/fold_<k>/``, written as the fold
    ends): an object with the kinds :data:`_FOLD_KEYS` gives, and ``node`` (text) where written. None when there is
    none, or (with a warning naming the file, the rule and the value) when it is damaged: the fold then counts as
    not done, and its next unit runs it again, which keeps its training (its final weights) and writes it anew, as
    for a fold whose validation rows are damaged."""
    result: dict[str, Any] | None = read_recomputable(
        path,
        lambda d: _fold_problem(path.name, d),
        "the fold counts as not done until its next unit (a resumed sweep's) runs it again, its training kept",
    )
    return result


def _fold_problem(name: str, data: Any) -> tuple[str, str] | None:
    if not isinstance(data, dict):
        return f"{name} must be a JSON object", shown(data)
    for key, kind, what in (*_FOLD_KEYS, ("node", str, "the Ray node it ran on, text")):
        if key not in data and key != "node":
            return f"{name} must hold {key} ({what})", "none"
        if key in data and not fits(kind, data[key]):
            return f"{name}'s {key} must be {what}", shown(data[key])
    return None


def read_partial_compute(path: Path) -> float:
    """The compute seconds a trial fold's ``fold_partial.json`` records (its attempts stopped or failed part-way);
    0 when there is none, or (with a warning naming the file, the rule and the value) when it is damaged: the
    trial's compute time then leaves those attempts out, nothing else depends on it."""
    data = read_recomputable(
        path,
        lambda d: (
            None
            if isinstance(d, dict) and fits(float, d.get("compute_s"))
            else (f"{path.name} must be an object with compute_s (a number)", shown(d))
        ),
        "its stopped attempts' compute time is left out",
    )
    return 0.0 if data is None else float(data["compute_s"])
