"""What a sweep concludes: the best trial against the planner default (each at full CV), the notes the verdict
adds (duplicate trials), and one line per failed trial."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from automed.errors import ArtifactError
from automed.records import fits, shown
from automed.search.engine import TrialOutcome
from automed.search.report import FAILED
from automed.search.space import values_key
from automed.search.trial_records import TRIAL, read_trial

log = logging.getLogger(__name__)


def sweep_verdict(
    table: pd.DataFrame,
    best: dict[str, Any] | None,
    default: dict[str, Any] | None,
    n_folds: int,
    promote: int,
) -> str:
    """The best trial against the planner default, each at full CV; never a claim over trials that were screened
    only (a fold-0 score is no CV score)."""
    if best is None:
        return "no trial finished every fold: no best config" + _best_screened(table)
    if default is None:
        return f"best trial {best['trial']}: CV score {best['cv_score']:.4f} (no planner-default trial in this sweep)"
    if default["folds_done"] < n_folds:
        return f"best trial {best['trial']}: CV score {best['cv_score']:.4f} (the planner default did not finish every fold)"
    others = table[~table["default"] & (table["status"] != "duplicate")]
    n_cv = int((others["folds_done"] == n_folds).sum())
    if n_cv == 0:
        text = f"the planner default is the only fully cross-validated trial (CV score {default['cv_score']:.4f})"
        screened = others[others["folds_done"] >= 1].sort_values("fold0_score", ascending=False)
        if screened.empty:
            return text + (
                "; no other trial was screened" if len(others) else "; no other config in this sweep"
            )
        top = screened.iloc[0]
        why = (
            "with --promote 0 the other trials were screened on fold 0 only"
            if promote == 0
            else "no other trial finished every fold"
        )
        return (
            f"{text}; {why} (best screened: trial {top['trial']}, fold-0 score {top['fold0_score']:.4f}), so it is "
            "not known to beat them"
        )
    if best["trial"] == default["trial"]:
        return f"the planner default is the best of {n_cv + 1} fully cross-validated trials (CV score {default['cv_score']:.4f})"
    if best["cv_score"] <= default["cv_score"]:
        return f"no trial beat the planner default (default CV score {default['cv_score']:.4f}, best other {best['cv_score']:.4f})"
    gain = best["cv_score"] - default["cv_score"]
    return f"best trial {best['trial']} beats the planner default: CV score {best['cv_score']:.4f} vs {default['cv_score']:.4f} (+{gain:.4f})"


def _best_screened(table: pd.DataFrame) -> str:
    """The best fold-0 score of a sweep where no trial reached every fold (a budget spent before promotion, whose
    note says how to go on), said as what it is."""
    if table.empty or "fold0_score" not in table:
        return ""
    scored = table[(table["status"] != "duplicate") & table["fold0_score"].notna()]
    if scored.empty:
        return ""
    top = scored.sort_values("fold0_score", ascending=False).iloc[0]
    return f" (best screened: trial {top['trial']}, fold-0 score {top['fold0_score']:.4f}: a screening score, no CV score)"


def duplicates_note(table: pd.DataFrame) -> str:
    """How many trials repeated an earlier trial's config, and which of them have no score (their original has
    none: it stopped early, failed or did not run); "" when none did."""
    if table.empty:
        return ""
    dups = table[table["status"] == "duplicate"]
    if dups.empty:
        return ""
    note = f"{len(dups)} trial(s) drew the config of an earlier trial and took its result (not trained again)"
    none = sorted(str(k) for k in dups[dups["fold0_score"].isna()]["trial"])
    if none:
        has = "has" if len(none) == 1 else "have"
        it = "it repeats has" if len(none) == 1 else "they repeat have"
        note += f"; {len(none)} of them ({', '.join(none)}) {has} no score: the trial {it} none"
    return note


def failure_lines(wd: Path, outcomes: list[TrialOutcome]) -> list[str]:
    """One line per failed trial (a grid's or promotion's trial fails in each of its fold units, and every attempt
    of it): its key, sampled values, its error's last line and where its full traceback is (``failed.json``)."""
    errors: dict[str, str] = {}
    for o in outcomes:
        if o.status == "error":
            errors.setdefault(o.key, o.error)
    lines = []
    for key, error in errors.items():
        td = wd / "trials" / key
        saved = _failure(td / FAILED)
        values: dict[str, Any] = {}
        with contextlib.suppress(ArtifactError):  # a damaged one: no values (the line is still written)
            values = read_trial(td / TRIAL)["values"]
        last = [line.strip() for line in error.splitlines() if line.strip()]
        message = saved.get("message") or (last[-1] if last else "no message")
        kind = f"{saved['error']}: " if saved.get("error") else ""
        where = (
            f"traceback: {td / FAILED}"
            if saved.get("traceback")
            else "no traceback saved (the engine's logs)"
        )
        lines.append(f"trial {key} failed ({values_key(values) or 'no values'}): {kind}{message}; {where}")
    return lines


def _failure(path: Path) -> dict[str, Any]:
    """A failed trial's ``failed.json`` (its error's type, message and traceback, text); {} when there is none, or
    (with a warning naming the file, the rule and the value) when it is damaged: the line then says the engine's
    error (a damaged one had crashed the sweep's verdict with a bare AttributeError)."""
    if not path.is_file():
        return {}
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # not JSON (UnicodeDecodeError included)
        wrong = "failed.json must be valid JSON", str(exc)[:120]
    else:
        if fits(dict[str, str], saved):
            result: dict[str, Any] = saved
            return result
        wrong = "failed.json must be an object of text (error, message, traceback)", shown(saved)
    log.warning("%s: %s, found %s; the trial's failure is told by the engine's error", path, *wrong)
    return {}
