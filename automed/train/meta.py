"""Model metadata (``model.json``, written when a training concludes) and the inference choice ``automed select`` records
beside it (``inference.json``); torch-free.

``model.json`` says what was trained: task, configuration, folds, the frozen config *and* the values it resolved to
on this plan (patch, batch, foreground oversampling: every consumer reads these, none re-derives them), the CV
score, the label values and the inference settings training chose (postprocessing on its own CV). Selection never
rewrites it: ``inference.json`` overrides the inference settings (postprocessing, TTA, window step, folds) and
:func:`load_model` applies it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from automed._version import __version__
from automed.artifacts import content_hash, write_json_atomic
from automed.config import Strict
from automed.errors import ArtifactError, Problem
from automed.plan.schema import Plan
from automed.plan.variants import effective_plan
from automed.records import shown
from automed.runtime.sliding import Mirrors
from automed.train.config import TrainConfig
from automed.workdir import ALL_DATA, WorkDir

MODEL_SCHEMA = 2
log = logging.getLogger(__name__)


class InferenceSettings(Strict):
    step: float = Field(0.5, gt=0, le=1)
    tta: bool = True
    # which mirrorings tta averages: all (nnU-Net) or the even half (automed.runtime.sliding.mirror_axes_sets);
    # a model.json written before this field predicts with all
    mirrors: Mirrors = "all"
    whole_image_factor: float = 0.0
    folds: list[int] | None = None  # None: every trained fold
    postprocessing: list[dict[str, Any]] = Field(default_factory=list)


class ResolvedTraining(Strict):
    """The training config's values on this plan (the plan's unless the config overrides them)."""

    patch_size: list[int]
    batch_size: int
    foreground_oversample: float


class ModelMeta(Strict):
    schema_version: Literal[2] = 2
    automed_version: str = __version__
    dataset: str
    task: str = "segmentation"
    configuration: str
    folds: list[int]
    checkpoint: str = "final"
    config: TrainConfig
    resolved: ResolvedTraining
    plan_hash: str
    labels: dict[str, str]
    score_name: str = "cv_dice_fg_mean"
    cv_score: float | None = None  # undefined (None) when no label was defined in any validation case
    inference: InferenceSettings = InferenceSettings()
    # a model of slide patches: the micrometres per pixel they were mined at (its fingerprint's), which whole slides
    # are predicted at wherever the model goes (a selection, a registered bundle); None for any other model
    slide_mpp: float | None = None

    @property
    def predict_folds(self) -> list[int]:
        return list(self.inference.folds or self.folds)

    def first_stage_folds(self, folds: list[int]) -> list[int]:
        """The folds of this (a cascade's first stage) that serve the cascade's ``folds``: the same folds (each
        cascade fold trained on the predictions of the first-stage fold that held its cases out), or, for a
        cascade trained on all data, this model's own prediction folds (it has no all-data fold of its own)."""
        if ALL_DATA in folds and ALL_DATA not in self.folds:
            return self.predict_folds
        return folds

    def save(self, path: Path) -> None:
        write_json_atomic(path, self.model_dump(mode="json"))


class InferenceChoice(Strict):
    """What ``automed select`` chose for one training (``WORKDIR/inference.json``)."""

    schema_version: Literal[1] = 1
    selection: str  # the selection folder that decided it
    inference: InferenceSettings
    decisions: list[dict[str, Any]] = Field(default_factory=list)
    inference_cost: dict[str, Any] | None = None
    # the model.json it was decided for (model_digest); None: written before this was recorded
    model_digest: str | None = None
    # the selection folder relative to the work dir (a project folder moved or copied whole); None: written before
    # this was recorded. A local place: it stays in the work dir
    relative: str | None = None

    def save(self, path: Path) -> None:
        write_json_atomic(path, self.model_dump(mode="json"))


def resolve_training(plan: Plan, config: TrainConfig) -> ResolvedTraining:
    """Patch, batch and oversampling of ``config`` on ``plan``: the one place its overrides are applied."""
    cfgp = effective_plan(plan, config).configurations[config.configuration]
    patch = list(cfgp.patch_size)
    if config.patch_size is not None:
        net = cfgp.network
        bad = len(config.patch_size) != net.dimension or any(
            p % d for p, d in zip(config.patch_size, net.divisor, strict=False)
        )
        if bad:
            from automed.errors import ConfigError

            raise ConfigError.single(
                "patch_size",
                f"the patch must have {net.dimension} axes divisible by {net.divisor}",
                config.patch_size,
                "round each axis to a multiple of its divisor",
            )
        patch = list(config.patch_size)
    oversample = (
        cfgp.foreground_oversample if config.foreground_oversample is None else config.foreground_oversample
    )
    return ResolvedTraining(
        patch_size=patch, batch_size=config.batch_size or cfgp.batch_size, foreground_oversample=oversample
    )


def _raw_meta(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError.single(
            path, "model.json must be readable JSON", str(exc), "re-run the training"
        ) from exc
    if not isinstance(raw, dict):
        raise ArtifactError.single(
            path, "model.json must be a JSON object", shown(raw), "re-run the training"
        )
    return raw


def model_task(path: Path) -> str:
    """The task a ``model.json`` names ("" when none), without validating the rest of it; a file that is no JSON
    object is refused as :func:`read_meta` refuses it."""
    return str(_raw_meta(path).get("task", ""))


def read_meta(path: Path) -> ModelMeta:
    """``model.json`` (or a bundle's), validated; version 1 (before resolved values were recorded) is upgraded. A
    damaged one is refused naming the file, each rule it breaks, the value and the fix (content that is no object
    or of other types had crashed select, predict and export with a bare AttributeError or ValidationError)."""
    raw = _raw_meta(path)
    try:
        if raw.get("schema_version") == 1:
            raw = _upgrade_v1(raw, path.parent / "plan.json")
        return ModelMeta.model_validate(raw)
    except ValidationError as exc:
        raise _damaged(path, exc, "re-run the training (it writes model.json anew)") from exc


def read_choice(path: Path) -> InferenceChoice:
    """A work dir's ``inference.json`` (what ``automed select`` chose for it); a damaged one is refused naming the
    file, each rule, the value and the fix (it had crashed predict and export with a bare pydantic
    ValidationError or KeyError)."""
    fix = "run automed select again (it writes inference.json anew)"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # not JSON (UnicodeDecodeError included)
        raise ArtifactError.single(path, "inference.json must be readable JSON", str(exc)[:120], fix) from exc
    try:
        return InferenceChoice.model_validate(raw)
    except ValidationError as exc:
        raise _damaged(path, exc, fix) from exc


def _damaged(path: Path, exc: ValidationError, fix: str) -> ArtifactError:
    """Each rule of ``path``'s schema its content breaks, with the value found and ``fix``."""
    problems = [
        Problem(str(path), f"{path.name}'s {'.'.join(map(str, e['loc'])) or 'content'}: {e['msg']}",
                shown(e.get("input")), fix)
        for e in exc.errors()
    ]  # fmt: skip
    return ArtifactError(problems, f"{path.name} in {path.parent} is damaged")


def _upgrade_v1(raw: dict[str, Any], plan_file: Path) -> dict[str, Any]:
    config = TrainConfig.model_validate(raw["config"])
    out = {k: v for k, v in raw.items() if k not in ("registered", "selection", "cv_foreground_dice")}
    out.update(
        schema_version=MODEL_SCHEMA,
        resolved=resolve_training(Plan.load(plan_file), config).model_dump(),
        cv_score=raw.get("cv_foreground_dice"),
    )
    return out


def model_digest(path: Path) -> str:
    """Which training a ``model.json`` describes: a hash of it without the inference settings and the automed
    version (a re-run that only re-chose its own inference settings, or an upgrade, is the same model; a training
    redone or extended has other scores)."""
    raw = json.loads(path.read_text())
    return content_hash({k: v for k, v in raw.items() if k not in ("inference", "automed_version")})


def applied_choice(wd: WorkDir) -> InferenceChoice | None:
    """``automed select``'s ``inference.json`` when it was decided for this ``model.json`` (``None``: none, or one
    decided for an earlier training of the work dir, with a warning)."""
    if not wd.choice.is_file():
        return None
    choice = read_choice(wd.choice)
    if choice.model_digest in (None, model_digest(wd.model)):
        return choice
    log.warning(
        "%s was decided for an earlier training of this work dir: its inference settings are not applied "
        "(run `automed select` again to choose for this one)",
        wd.choice,
    )
    return None


def load_model(workdir: Path) -> ModelMeta:
    """A training work dir's model metadata with ``automed select``'s choice (``inference.json``) applied when it
    was decided for this ``model.json`` (a training extended or redone since then keeps its own settings until
    ``automed select`` runs again). Refused when ``plan.json`` is not the plan the weights were trained on."""
    wd = WorkDir(workdir)
    meta = read_meta(wd.require_model())
    _check_plan(wd, meta)
    choice = applied_choice(wd)
    return meta if choice is None else meta.model_copy(update={"inference": choice.inference})


def _check_plan(wd: WorkDir, meta: ModelMeta) -> None:
    """``plan.json`` beside ``model.json`` must be the plan of the training (``automed plan`` or a training of other
    data into the same folder replaces it: the weights would then run with another spacing or normalization)."""
    if not wd.plan.is_file():
        return
    try:
        stored = json.loads(wd.plan.read_text()).get("hash")
    except (OSError, json.JSONDecodeError):
        stored = None
    if stored and stored != meta.plan_hash:
        raise ArtifactError.single(
            wd.plan,
            "the plan must be the one the model was trained on (model.json's plan_hash)",
            f"plan {stored} vs model {meta.plan_hash}",
            "re-run the training in this folder, or train the new plan into another work dir",
        )
