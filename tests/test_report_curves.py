"""The report's training curves: validation loss and the score's moving average drawn beside what they follow (the
docstring promised them, the figure left them out), and whole epochs on the axis (ticks read 1.2, 1.4)."""

from __future__ import annotations

from typing import Any

from automed.evaluate.report import curves


def _history(n: int, with_validation: bool) -> list[dict[str, Any]]:
    rows = []
    for e in range(1, n + 1):
        row: dict[str, Any] = {"epoch": e, "train_loss": 1.0 / e, "val_score": 0.1 * e, "learning_rate": 0.01}
        if with_validation:
            row |= {"val_loss": 1.2 / e, "val_score_ema": 0.08 * e if e > 1 else None}
        rows.append(row)
    return rows


def test_validation_loss_and_the_scores_average_are_dashed_beside_their_fold() -> None:
    fig = curves({"run fold 0": _history(3, True), "run fold 1": _history(3, False)})
    loss, score, lr = fig.axes
    assert [line.get_linestyle() for line in loss.lines] == ["-", "--", "-"]  # fold 1 has no validation loss
    assert loss.lines[0].get_color() == loss.lines[1].get_color()
    assert [line.get_linestyle() for line in score.lines] == ["-", "--", "-"]
    ema = score.lines[1].get_ydata()
    assert ema[0] != ema[0] and list(ema[1:]) == [0.16, 0.24]  # an undefined average is a gap
    assert len(lr.lines) == 2
    ticks = [t for t in loss.get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)
