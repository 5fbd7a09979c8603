"""Learning-rate schedules and budget arithmetic."""

from __future__ import annotations

import pytest

from automed.train.schedule import Phase, learning_rate, plan_budget


def test_poly_and_extension_phase() -> None:
    phases = [Phase(0, 100, 0.01)]
    assert learning_rate("poly", phases, 0) == pytest.approx(0.01)
    assert learning_rate("poly", phases, 50) == pytest.approx(0.01 * 0.5**0.9)
    # an extension that starts before the first phase ended (early stop) takes over
    phases.append(Phase(60, 20, 0.001))
    assert learning_rate("poly", phases, 60) == pytest.approx(0.001)
    assert learning_rate("poly", phases, 70) == pytest.approx(0.001 * 0.5**0.9)
    assert learning_rate("cosine", [Phase(0, 10, 1.0)], 5) == pytest.approx(0.5)


def test_budget_fits_and_shortens_epochs() -> None:
    bp = plan_budget(1000, 1.0, 250, 50)
    assert bp.epochs * (bp.iterations_per_epoch + bp.val_iterations / 3) <= 1000
    short = plan_budget(60, 1.0, 250, 50)
    assert short.epochs >= 5 and short.iterations_per_epoch < 250
    assert short.epochs * (short.iterations_per_epoch + short.val_iterations / 3) <= 60 + 1e-9
