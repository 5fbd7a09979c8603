"""Widths one model's parts must share: an all-data model takes its cross-validation's network (``--folds all
--cv W``), and ``--fold K`` into a work dir takes its earlier folds' width, so the budget's width rule (which times
its own probe) cannot give the parts of one model different networks."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

import automed.workflow.all_data as all_data
from automed.plan.planner import make_plan
from automed.plan.preset import load_preset
from automed.plan.schema import Plan
from automed.testing.fingerprints import synthetic_fingerprint
from automed.train.config import TrainConfig
from automed.workdir import WorkDir
from automed.workflow.shape import width_rule_applies
from automed.workflow.train_options import TrainOptions
from automed.workflow.train_start import _earlier_width


@pytest.fixture(scope="module")
def plan() -> Plan:
    return make_plan(synthetic_fingerprint((1.0, 1.0, 1.0), (40, 40, 40)), load_preset("cpu"))


def _cv_model(monkeypatch: pytest.MonkeyPatch, cv: TrainConfig) -> None:
    monkeypatch.setattr(all_data, "load_model", lambda root: SimpleNamespace(config=cv))


def test_an_all_data_model_takes_the_plans_width_pinned_when_its_cv_kept_it(
    plan: Plan, monkeypatch: pytest.MonkeyPatch
) -> None:
    planned = plan.configurations["3d_fullres"].network.features_per_stage[0]
    _cv_model(monkeypatch, TrainConfig(configuration="3d_fullres"))  # the CV trained the plan's width
    pinned = all_data.inherit_shape("CV", TrainConfig(configuration="3d_fullres"), plan)
    assert pinned.base_features == planned and pinned.n_stages is None
    # pinned, the all-data model's own budget no longer narrows it (the width rule leaves a set width alone)
    assert width_rule_applies(plan, TrainConfig(configuration="3d_fullres"), "cpu")
    assert not width_rule_applies(plan, pinned, "cpu")


def test_an_all_data_model_takes_its_cvs_narrowed_network_unless_its_config_sets_one(
    plan: Plan, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cv_model(monkeypatch, TrainConfig(configuration="3d_fullres", base_features=16, n_stages=3))
    took = all_data.inherit_shape("CV", TrainConfig(configuration="3d_fullres"), plan)
    assert (took.base_features, took.n_stages) == (16, 3)
    own = all_data.inherit_shape("CV", TrainConfig(configuration="3d_fullres", base_features=24), plan)
    assert (own.base_features, own.n_stages) == (
        24,
        3,
    )  # the config's width stays (check_same_model judges it)
    assert all_data.inherit_shape(None, TrainConfig(), plan) == TrainConfig()  # no --cv: nothing inherited


def _earlier(wd: Path, config: TrainConfig) -> WorkDir:
    wd.mkdir()
    (wd / "train_config.json").write_text(json.dumps({"config": config.model_dump(mode="json")}))
    return WorkDir(wd)


def test_fold_k_takes_the_width_the_budget_gave_the_earlier_folds(tmp_path: Path) -> None:
    wdir = _earlier(tmp_path / "W", TrainConfig(configuration="3d_fullres", base_features=16))
    fold1 = TrainOptions(only_folds=[1], budget_s=600.0)
    assert _earlier_width(wdir, TrainConfig(configuration="3d_fullres"), fold1).base_features == 16
    # a width in the config, the budget deciding the folds, or another configuration: nothing is taken
    assert _earlier_width(wdir, TrainConfig(base_features=32), fold1).base_features == 32
    auto = TrainOptions(folds_auto=True, budget_s=600.0)
    assert _earlier_width(wdir, TrainConfig(), auto).base_features is None
    assert _earlier_width(wdir, TrainConfig(configuration="2d"), fold1).base_features is None
    assert _earlier_width(WorkDir(tmp_path / "new"), TrainConfig(), fold1).base_features is None
