"""What Tune's result grid says of each trial of a stage, as :class:`~automed.search.engine.TrialOutcome` s: its
key, whether it validated its folds, was stopped or failed, and the trial's own error message."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from automed.search.engine import TrialOutcome


def outcomes(grid: Any, stage_dir: Path, fixed: bool = False) -> list[TrialOutcome]:
    """One outcome per result of ``grid`` (a stage's ``ResultGrid``; ``fixed``: a stage of fixed trial keys, whose
    key is in the config), in the grid's order."""
    out = []
    for r in grid:
        cfg = r.config or {}
        metrics = last_result(r, stage_dir)
        key = cfg["__trial"][0] if fixed else metrics.get("trial_id") or trial_id_from_path(r.path)
        status: Literal["complete", "stopped", "timed out", "error"] = (
            "error" if r.error else ("complete" if metrics.get("validated") else "stopped")
        )
        out.append(TrialOutcome(str(key), status, error_text(r.error)))
    return out


def error_text(error: BaseException | None) -> str:
    """The trial's own exception message on one line (Ray wraps it in a RayTaskError)."""
    if error is None:
        return ""
    cause = getattr(error, "cause", None) or error
    return " ".join(line.strip() for line in str(cause).splitlines() if line.strip())[:1000]


def last_result(result: Any, stage_dir: Path) -> dict[str, Any]:
    """What a trial reported last. Tune gives nothing for a trial it started after restoring a stage whose sweep dir
    was moved since the stage first started (its search generator keeps the first run's storage path, and looks
    there): a trial that validated its folds read 'stopped'. Then its ``result.json`` (one JSON line per report)
    is read in this driver's stage folder, where Tune wrote it."""
    if result.metrics:
        return dict(result.metrics)
    import json

    try:
        lines = (stage_dir / Path(result.path or "").name / "result.json").read_text().splitlines()
        return dict(json.loads(lines[-1])) if lines and result.path else {}
    except (OSError, ValueError):
        return {}


def trial_id_from_path(path: str | None) -> str:
    """Tune names trial folders ``<trainable>_<trial id>_<index>_<params>`` (ids: 8 hex digits in Ray 2.60; 5 hex
    digits, ``_`` and a 5-digit count in earlier Rays). Only the earlier form was matched: a trial that reported
    nothing (failed before its first epoch) had no key, and the summary said ``trial  failed (no values)`` once for
    all such trials."""
    import re

    m = re.search(r"_([0-9a-f]{5}_\d{5}|[0-9a-f]{8})_\d+_", Path(path or "").name)
    return m.group(1) if m else ""
