"""The report's thumbnails picture the worst cases: a structure absent from both reference and prediction (Dice
undefined, NaN) is no failure, so it gets no "Dice nan" thumbnail and never makes a case one of the worst."""

from __future__ import annotations

import math

import pandas as pd

from automed.evaluate.report_thumbs import worst_scored


def test_structures_without_dice_are_not_among_the_worst() -> None:
    nan = math.nan
    rows = [("both_empty", 1, nan), ("both_empty", 2, nan), ("good", 1, 0.9), ("good", 2, 0.8),
            ("bad", 1, 0.3), ("bad", 2, nan), ("fair", 1, 0.6), ("fair", 2, 0.5)]  # fmt: skip
    table = pd.DataFrame(rows, columns=["case", "label", "dice"]).assign(name="s", fold=0)
    picked = worst_scored(table, 3)
    assert [case for case, _ in picked] == ["bad", "fair", "good"]
    assert picked[0][1]["label"].tolist() == [1]  # the NaN structure of "bad" is not drawn
    assert all(sub["dice"].notna().all() for _, sub in picked)
    assert [case for case, _ in worst_scored(table, 1)] == ["bad"]
    assert len(worst_scored(table, 24)) == 3  # room for every case: the one without Dice is still left out
