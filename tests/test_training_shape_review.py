"""Training-shape review findings: config values that crashed a fold after planning (Nesterov without momentum, a
negative seed), a plan's memory target thrown away by train, preset budget rules edited under a retyped command,
an all-data model given as --cv, reasons that described a training that did not run, bad numbers on plan."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from automed.cli import app
from automed.config import load_model
from automed.errors import ArtifactError, ConfigError, PlanError
from automed.plan.preset import BudgetRules, load_preset
from automed.testing.synthetic import make_dataset
from automed.train.config import TrainConfig
from automed.train.fold_schedule import lay_out
from automed.train.schedule import choose_fold_count
from automed.train.state import TrainState
from automed.workdir import ALL_DATA
from automed.workflow.retyped import typed_digest
from automed.workflow.train_options import TrainOptions


def test_config_values_that_crashed_a_fold_are_refused_when_read() -> None:
    with pytest.raises(ConfigError, match=r"'nesterov'.*Nesterov momentum needs a momentum above 0"):
        load_model(TrainConfig, {"momentum": 0}, file="c.yaml")
    assert load_model(TrainConfig, {"momentum": 0, "nesterov": False}, file="c.yaml").momentum == 0
    for seed in (-1, 2**70):
        with pytest.raises(ConfigError, match=r"'seed'"):
            load_model(TrainConfig, {"seed": seed}, file="c.yaml")
    assert load_model(TrainConfig, {"seed": 2**63 - 1}, file="c.yaml").seed == 2**63 - 1


def test_plan_refuses_bad_numbers_and_an_unknown_architecture(tmp_path: Path) -> None:
    from automed.plan.target import resolve_target

    with pytest.raises(PlanError, match="positive finite"):
        resolve_target(load_preset("cpu"), "cpu", float("nan"))
    ds = make_dataset(tmp_path / "d", n_cases=3, shape=(8, 16, 16), seed=0)
    runner = CliRunner()
    r = runner.invoke(
        app, ["plan", str(ds), "-o", str(tmp_path / "W"), "--no-preprocess", "--max-voxels", "0"]
    )
    assert r.exit_code == 2 and not (tmp_path / "W").exists()
    preset = tmp_path / "p.yaml"
    preset.write_text("extends: cpu\nname: p\nnetwork:\n  architecture: unte\n")
    from automed.workflow.prepare import plan_dataset

    with pytest.raises(ConfigError, match=r"network\.architecture must be one of .*Did you mean 'unet'\?"):
        plan_dataset(ds, tmp_path / "W", preset=preset, run_preprocess=False, show_progress=False)
    assert not (tmp_path / "W" / "plan.json").exists()


def test_fold_counts_beyond_the_split_are_said() -> None:
    choice = choose_fold_count(60.0, 0.01, 5, 10, [7])
    assert choice.folds == 1 and "budget.fold_counts [7] exceed the 5-fold split: not used" in choice.reason


def test_an_edited_budget_rule_decides_anew_and_defaults_keep_old_digests() -> None:
    opts = TrainOptions()
    default = typed_digest("ds", TrainConfig(), opts, BudgetRules())
    assert default == typed_digest("ds", TrainConfig(), opts, BudgetRules(fold_counts=[1, 5]))
    assert default != typed_digest("ds", TrainConfig(), opts, BudgetRules(fold_counts=[2]))


def test_an_all_data_model_is_no_cross_validation_to_inherit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from automed.workflow import all_data

    monkeypatch.setattr(all_data, "load_model", lambda root: SimpleNamespace(folds=[ALL_DATA], plan_hash="h"))
    with pytest.raises(
        ArtifactError, match=r"--cv must name a cross-validation training.*its cv\.workdir tag"
    ):
        all_data.evidence(str(tmp_path), SimpleNamespace(hash="h"))  # type: ignore[arg-type]


def test_capped_epochs_are_said_in_the_schedule_and_keep_the_width() -> None:
    from automed.workflow.shape import width_rule_applies

    st = TrainState()
    lay_out(st, TrainConfig(epochs=1), (60.0, 0.01, 0.0), 2, 1)
    assert st.epochs_total == 1
    assert (
        f"capped by the config's epochs: 1 epoch(s) x {st.iterations_per_epoch} iterations"
        in st.schedule_reason
    )
    network = SimpleNamespace(features_per_stage=[32])
    plan = SimpleNamespace(configurations={"3d_fullres": SimpleNamespace(network=network)})
    assert width_rule_applies(plan, TrainConfig(), "cpu")  # type: ignore[arg-type]
    assert not width_rule_applies(plan, TrainConfig(epochs=1), "cpu")  # type: ignore[arg-type]


def test_train_keeps_the_memory_target_automed_plan_left(tmp_path: Path) -> None:
    from automed.data.dataset import load_dataset
    from automed.workflow.prepare import plan_dataset, plan_for_training

    ds = make_dataset(tmp_path / "d", n_cases=3, shape=(8, 16, 16), seed=0)
    wd = tmp_path / "W"
    plan_dataset(
        ds, wd, preset="cpu", device="cpu", memory_gb=0.02, run_preprocess=False, show_progress=False
    )
    before = json.loads((wd / "plan.json").read_text())
    planned, _ = plan_for_training(load_dataset(ds), wd, "cpu", None, 0, False)
    assert {c.memory.target_gb for c in planned.configurations.values()} == {0.02}
    assert json.loads((wd / "plan.json").read_text()) == before  # not planned again for the preset's 8 GB


def test_the_planners_architecture_names_are_the_registered_networks() -> None:
    from automed.plan.preset import ARCHITECTURES
    from automed.train.networks import NETWORKS

    assert tuple(NETWORKS.names()) == ARCHITECTURES
