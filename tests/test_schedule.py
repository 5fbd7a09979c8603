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


def test_auto_optimizer_follows_the_planned_iterations() -> None:
    from automed.train.config import SHORT_TRAINING_ITERATIONS, TrainConfig, resolve_optimizer

    cfg = TrainConfig()
    name, lr, why = resolve_optimizer(cfg, cfg.epochs * cfg.iterations_per_epoch)  # nnU-Net's 250,000
    assert (name, lr) == ("sgd", 1e-2) and "250000" in why
    name, lr, why = resolve_optimizer(cfg, SHORT_TRAINING_ITERATIONS - 1)  # a CPU budget
    assert (name, lr) == ("adamw", 3e-3) and "short" in why
    assert resolve_optimizer(TrainConfig(optimizer="sgd"), 100)[:2] == ("sgd", 1e-2)
    assert resolve_optimizer(TrainConfig(learning_rate=1e-3), 100)[:2] == ("adamw", 1e-3)
    assert resolve_optimizer(TrainConfig(optimizer="adam", learning_rate=5e-4), 10**6)[:2] == ("adam", 5e-4)
