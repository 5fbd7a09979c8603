"""What a sweep concludes when no trial reached every fold: it names the best screened trial by its fold-0 score
(it said only "no best config", leaving the user to find the screening scores in the table)."""

from __future__ import annotations

import math

import pandas as pd

from automed.workflow.sweep_verdict import sweep_verdict


def _table(rows: list[tuple[str, bool, str, int, float]]) -> pd.DataFrame:
    cols = ["trial", "default", "status", "folds_done", "fold0_score"]
    table = pd.DataFrame(rows, columns=cols)
    table["cv_score"] = math.nan
    return table


def test_no_trial_at_every_fold_names_the_best_screened_trial() -> None:
    table = _table(
        [
            ("t0000", True, "done", 1, 0.61),
            ("t0001", False, "done", 1, 0.7049),
            ("t0002", False, "duplicate", 0, 0.9),  # its original's score, not its own
            ("t0003", False, "failed", 0, math.nan),
        ]
    )
    assert sweep_verdict(table, None, None, 5, 0) == (
        "no trial finished every fold: no best config (best screened: trial t0001, fold-0 score 0.7049: a "
        "screening score, no CV score)"
    )


def test_no_trial_screened_says_no_best_config_only() -> None:
    table = _table([("t0000", True, "failed", 0, math.nan)])
    assert sweep_verdict(table, None, None, 5, 2) == "no trial finished every fold: no best config"
    assert sweep_verdict(table.iloc[0:0], None, None, 5, 2) == "no trial finished every fold: no best config"
