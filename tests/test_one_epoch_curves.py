"""Training curves of one epoch (a quick test run, `--epochs 1`) were blank: a line through one point draws nothing.
Up to 30 epochs each point is marked, in the report's curves and in a fold's progress figure."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from automed.evaluate.report import curves
from automed.train.plots import progress_figure


def _history(n: int) -> list[dict[str, Any]]:
    return [
        {"epoch": e, "train_loss": 1.0 - 0.1 * e, "val_loss": 1.1 - 0.1 * e, "val_score": 0.5, "val_score_ema": 0.5,
         "learning_rate": 0.01, "epoch_seconds": 3.0}
        for e in range(n)
    ]  # fmt: skip


def _coloured(fig: Any) -> int:
    """Pixels of the figure that are neither white nor grey (axes, ticks and text are black or grey)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3].astype(int)
    return int((rgb.max(axis=-1) - rgb.min(axis=-1) > 60).sum())


@pytest.mark.parametrize("n", [1, 2])
def test_a_one_epoch_training_curve_is_drawn(n: int) -> None:
    fig = curves({"W fold 0": _history(n)})
    assert _coloured(fig) > 20 * n
    lines = [line for ax in fig.axes for line in ax.get_lines()]
    assert lines and all(line.get_marker() == "o" for line in lines)
    assert all(
        line.get_marker() in (None, "None", "") for line in curves({"W": _history(31)}).axes[0].get_lines()
    )
    progress = progress_figure(_history(n), "fold 0")
    assert _coloured(progress) > 20 * n
