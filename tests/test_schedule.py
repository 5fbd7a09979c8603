"""Learning-rate schedules and budget arithmetic."""

from __future__ import annotations

import pytest

from automed.train.schedule import Phase, learning_rate, plan_budget, refit_iterations


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


def test_refit_uses_the_budget_to_the_iteration_and_never_overruns() -> None:
    # epochs of 100 s: 200 training iterations + 30 validation ones (a third of the cost each)
    val_s = 100 * 10 / 210
    step_s = (100 - val_s) / 200
    assert refit_iterations(1000, 100, 200, 30) == 2000  # exactly ten epochs
    partial = refit_iterations(1050, 100, 200, 30)
    assert 2000 + 50 <= partial < 2000 + 200  # a shorter eleventh epoch instead of 50 s left unused
    assert 10 * 100 + (partial - 2000) * step_s + val_s <= 1050 + 1e-9
    assert (
        refit_iterations(1010, 100, 200, 30) == 2000
    )  # under a quarter of an epoch: not worth its validation
    assert refit_iterations(40, 100, 200, 30) == int((40 - val_s) // step_s) == 74  # part of one epoch
    assert refit_iterations(0, 100, 200, 30) == 0 and refit_iterations(5, 100, 200, 30) == 0


def test_refit_reason_stays_one_line() -> None:
    from automed.train.schedule import refit_reason

    reason = "budget: 100 s at 0.1 s per iteration; optimizer adamw lr 0.003"
    for k in range(50):  # a long budgeted run re-fits after many epochs
        reason = refit_reason(reason, 1000 + k, 10, 3.0)
    assert reason.startswith("budget: 100 s") and reason.count("re-fitted") == 1
    assert "re-fitted 50 times" in reason and reason.endswith(
        "last to 1049 iterations (10 epochs) at 3.0 s/epoch"
    )


def test_a_share_the_probe_used_up_says_so_not_a_negative_budget() -> None:
    """A 20 s --budget: the probe and the validation reserve left -10 s, and the run said 'budget: -10 s ...'."""
    bp = plan_budget(-10, 1.68, 5, 1)
    assert bp.epochs == 1 and bp.reason.startswith("0 s at 1.680 s per iteration: 1 epochs x 5 iterations")
    assert "too little time for one epoch" in bp.reason
    assert "too little" not in plan_budget(60, 1.0, 250, 50).reason


def test_a_cut_epoch_blames_the_machine_only_when_its_steps_ran_slower_than_probed() -> None:
    """A budget spent before the schedule was laid (the probe, a loaded machine) gets the shortest schedule, which
    the budget's hard end cuts even when the steps ran faster than probed: the reason said "the machine ran slower
    than when probed" of steps of 3.9 s where the probe measured 7.9 s."""
    from automed.train.schedule import cut_reason

    faster = cut_reason(1, 1, 5, 3.896, 7.875)
    assert "3.896 s per step where the probe measured 7.875 s: too short a budget" in faster
    assert "slower" not in faster
    assert cut_reason(1, 1, 5, 10.5, 4.6).endswith("the machine ran slower than when probed)")
    assert cut_reason(1, 1, 5, 1.0, None).endswith(
        "(1.000 s per step: the machine ran slower than when probed)"
    )
