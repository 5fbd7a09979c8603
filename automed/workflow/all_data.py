"""``automed train --folds all`` (nnU-Net's ``fold all``, a "marathon"): one model trained on every case with the
schedule over the whole budget and no validation fold (its per-epoch pseudo-Dice is measured on training patches).

It has no cross-validation of its own: ``--cv WORKDIR`` names the cross-validation training whose evidence it
inherits (its CV score, the postprocessing that CV decided), and the registered version links to it in tags. Predict,
export and package take it like any model."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from automed.errors import ArtifactError
from automed.fingerprint.schema import Fingerprint
from automed.plan.schema import Plan
from automed.plan.variants import effective_plan
from automed.records import read_tracking
from automed.select.register import cv_cases, register_training
from automed.tasks.base import Task
from automed.tracking import Tracker
from automed.train.config import TrainConfig
from automed.train.meta import InferenceSettings, ModelMeta, load_model, resolve_training
from automed.workdir import ALL_DATA, WorkDir


def all_data_split(splits: dict[str, Any]) -> dict[str, list[str]]:
    """Every case of the split trains; none validates."""
    ids = sorted({cid for f in splits["folds"] for cid in (*f["train"], *f["val"])})
    return {"train": ids, "val": []}


def evidence(cv_workdir: str | None, plan: Plan) -> tuple[ModelMeta | None, dict[str, Any]]:
    """The cross-validation training an all-data model inherits from (checked to be of the same plan), and its
    MLflow ids (``tracking.json``)."""
    if not cv_workdir:
        return None, {}
    wd = WorkDir(Path(cv_workdir))
    meta = load_model(wd.root)
    if (
        ALL_DATA in meta.folds
    ):  # its score is inherited itself: tags would name a run with no cross-validation
        raise ArtifactError.single(
            wd.root,
            "--cv must name a cross-validation training (folds validated on held-out cases)",
            "an all-data (--folds all) model, whose CV score is its own --cv's",
            "pass the cross-validation work dir it inherited from (its cv.workdir tag), or leave --cv out",
        )
    if meta.plan_hash != plan.hash:
        raise ArtifactError.single(
            wd.model,
            "--cv must name a cross-validation training of the same dataset and plan",
            f"plan {meta.plan_hash} vs {plan.hash}",
            "train the cross-validation in a work dir of this dataset with the same preset, or leave --cv out",
        )
    track = read_tracking(wd.tracking) if wd.tracking.is_file() else {}
    return meta, track


def inherit_shape(cv_workdir: str | None, config: TrainConfig, plan: Plan) -> TrainConfig:
    """An all-data model of a cross-validation takes its network's width and depth where its own config leaves them
    to the plan: the CV's (the budget's width rule may have narrowed them), or, where the CV kept the plan's, the
    plan's, pinned (so the all-data model's own budget does not narrow it): the model it inherits evidence from."""
    if not cv_workdir:
        return config
    cv = load_model(WorkDir(Path(cv_workdir)).root).config
    cfgp = plan.configurations.get(cv.configuration)
    planned = {"base_features": cfgp.network.features_per_stage[0] if cfgp else None, "n_stages": None}
    update = {
        k: getattr(cv, k) if getattr(cv, k) is not None else planned[k]
        for k in ("base_features", "n_stages")
        if getattr(config, k) is None and (getattr(cv, k) is not None or planned[k] is not None)
    }
    return config.model_copy(update=update) if update else config


def check_same_model(cv_workdir: str | None, plan: Plan, config: TrainConfig) -> None:
    """The all-data model is the model the cross-validation measured (configuration, network, patch and batch, loss,
    normalization; the schedule may differ): else its inherited CV score would describe another model."""
    if not cv_workdir:
        return
    wd = WorkDir(Path(cv_workdir))
    cv = load_model(wd.root).config

    def shape(c: TrainConfig) -> dict[str, Any]:
        if c.configuration not in plan.configurations:
            return {"configuration": c.configuration}
        net = effective_plan(plan, c).configurations[c.configuration].network
        return {
            "configuration": c.configuration,
            "network": [net.n_stages, net.features_per_stage],
            "patch and batch": resolve_training(plan, c).model_dump(),
            "loss": c.loss,
            "normalization": c.normalization,
        }

    mine, theirs = shape(config), shape(cv)
    differ = [k for k in theirs if mine.get(k) != theirs[k]]
    if differ:
        raise ArtifactError.single(
            wd.model,
            "--cv names a cross-validation of the same model (the all-data model inherits its CV score)",
            "; ".join(f"{k}: {mine.get(k)} here, {theirs[k]} there" for k in differ)[:400],
            f"train --folds all with that training's config (`config` in {wd.train_config.name}, or a sweep's "
            "best_config.yaml), or leave --cv out",
        )


def conclude_all_data(
    wd: Path,
    plan: Plan,
    config: TrainConfig,
    task: Task,
    tracker: Tracker,
    parent: str,
    cv_workdir: str | None,
    validation_tta: bool,
    register: bool,
    validation_mirrors: str = "all",
) -> tuple[dict[str, Any], ModelMeta, dict[str, Any] | None]:
    """``model.json`` (folds ``[ALL_DATA]``; CV score and postprocessing from ``cv_workdir``) and registration with
    tags linking the evidence."""
    cv_meta, cv_track = evidence(cv_workdir, plan)
    post = cv_meta.inference.postprocessing if cv_meta is not None else []
    meta = ModelMeta(
        dataset=plan.dataset_name,
        task=task.name,
        configuration=config.configuration,
        folds=[ALL_DATA],
        config=config,
        resolved=resolve_training(plan, config),
        plan_hash=plan.hash,
        labels=plan.labels,
        score_name=task.score_name,
        cv_score=cv_meta.cv_score if cv_meta is not None else None,
        # the cross-validation's own choices: postprocessing, and whether mirror TTA helped
        inference=InferenceSettings(
            tta=cv_meta.inference.tta if cv_meta else validation_tta,
            mirrors=cv_meta.inference.mirrors if cv_meta else validation_mirrors,
            postprocessing=post,
        ),
        slide_mpp=Fingerprint.slide_mpp_in(Path(wd)),
    )
    meta.save(WorkDir(wd).model)
    link = {
        "all_data": "true",
        "cv.workdir": Path(cv_workdir).name if cv_workdir else "none",
        "cv.run_id": str(cv_track.get("parent_run_id", "")),
        "cv.score": f"{meta.cv_score:.6f}" if meta.cv_score is not None else "none",
    }
    tracker.set_tags(parent, link)
    registered = None
    if register:
        cases = cv_cases(Path(cv_workdir)) if cv_workdir else None  # the evidence it inherits
        # the score the --cv training registered last (after automed select's choice, if any)
        kept = _registered_score(tracker, Path(cv_workdir)) if cv_workdir else None
        registered = register_training(
            wd, tracker, parent, kept if kept is not None else meta.cv_score or 0.0, cases
        )
        tracker.tag_version(registered["name"], registered["version"], link)
    summary = {"all_data": True, "inherited_cv_score": meta.cv_score, "cv_workdir": cv_workdir}
    return summary, meta, registered


def _registered_score(tracker: Tracker, cv_workdir: Path) -> float | None:
    """The ``cv_score`` of the version the ``--cv`` training registered last (``tracking.json``), else ``None``."""
    track = WorkDir(cv_workdir).tracking
    try:
        entry = read_tracking(track).get("registered") if track.is_file() else None
        if not isinstance(entry, dict):
            return None
        value = float(tracker.client.get_model_version(entry["name"], str(entry["version"])).tags["cv_score"])
    except Exception:  # another store, a version deleted since, no tag: its model.json's CV score is taken
        return None
    return value if math.isfinite(value) else None
