"""model.json and what load_model applies beside it: select's inference.json only for the model it was decided for,
and only with the plan the weights were trained on."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from automed.errors import ArtifactError
from automed.plan.planner import make_plan
from automed.plan.preset import load_preset
from automed.testing.fingerprints import synthetic_fingerprint
from automed.train.config import TrainConfig
from automed.train.meta import (
    InferenceChoice,
    InferenceSettings,
    ModelMeta,
    load_model,
    model_digest,
    resolve_training,
)
from automed.workdir import WorkDir


def _trained(wd: Path, cv_score: float) -> WorkDir:
    plan = make_plan(synthetic_fingerprint((1.0, 1.0, 1.0), (40, 40, 40)), load_preset("default"))
    wd.mkdir(exist_ok=True)
    plan.save(wd / "plan.json")
    cfg = TrainConfig(configuration="3d_fullres")
    ModelMeta(
        dataset=plan.dataset_name,
        configuration="3d_fullres",
        folds=[0, 1],
        config=cfg,
        resolved=resolve_training(plan, cfg),
        plan_hash=plan.hash,
        labels=plan.labels,
        cv_score=cv_score,
    ).save(wd / "model.json")
    return WorkDir(wd)


def test_a_choice_applies_only_to_the_model_it_was_decided_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wd = _trained(tmp_path / "W", 0.8)
    chosen = InferenceSettings(tta=False, step=0.75, folds=[0])
    InferenceChoice(selection="S", inference=chosen, model_digest=model_digest(wd.model)).save(wd.choice)
    assert load_model(wd.root).inference == chosen
    # a rerun that only re-chose the training's own inference settings (or another automed version) is the same model
    meta = ModelMeta.model_validate_json(wd.model.read_text())
    meta.model_copy(update={"inference": InferenceSettings(step=0.6), "automed_version": "0.0.1"}).save(
        wd.model
    )
    assert load_model(wd.root).inference == chosen
    # the training is redone (or extended) after the selection: its own settings, and a warning saying why
    _trained(wd.root, 0.85)
    with caplog.at_level(logging.WARNING, logger="automed.train.meta"):
        meta = load_model(wd.root)
    assert meta.inference == InferenceSettings() and meta.predict_folds == [0, 1]
    assert "decided for an earlier training" in caplog.text and "automed select" in caplog.text
    # a choice written before digests were recorded still applies
    InferenceChoice(selection="S", inference=chosen).save(wd.choice)
    assert load_model(wd.root).inference == chosen


def test_a_model_refuses_a_plan_it_was_not_trained_on(tmp_path: Path) -> None:
    wd = _trained(tmp_path / "W", 0.8)
    other = make_plan(synthetic_fingerprint((2.0, 1.0, 1.0), (30, 40, 40)), load_preset("default"))
    other.save(wd.plan)  # e.g. `automed plan OTHER -o W` over a trained work dir
    with pytest.raises(ArtifactError) as e:
        load_model(wd.root)
    text = str(e.value)
    assert "plan.json" in text and "the plan must be the one the model was trained on" in text
    assert other.hash in text and "another work dir" in text
