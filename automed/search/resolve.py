"""From points of a search space to training configs on a plan: the default point and plan-aware resolution."""

from __future__ import annotations

from typing import Any

from automed.errors import ConfigError
from automed.plan.schema import Plan
from automed.plan.variants import scaled_batch, scaled_patch
from automed.search.schema import SPECIAL_TARGETS, SearchSpace, set_nested
from automed.train.config import TrainConfig


def default_point(space: SearchSpace, base: TrainConfig, plan: Plan) -> dict[str, Any]:
    """The planner's defaults as a point of the space (what the first trial evaluates)."""
    point: dict[str, Any] = {}
    cfg_name = base.configuration
    cfgp = plan.configurations.get(cfg_name)
    for name, p in space.parameters.items():
        if not p.active(point):
            continue
        target = p.target or name
        value: Any
        if p.default is not None:
            value = p.default
        elif target in SPECIAL_TARGETS:
            value = 1.0
        else:
            value = base.model_dump()
            for k in target.split("."):
                value = value[k]
            if value is None and cfgp is not None:
                plan_values = {
                    "base_features": cfgp.network.features_per_stage[0],
                    "n_stages": cfgp.network.n_stages,
                    "architecture": cfgp.network.architecture,
                    "batch_size": cfgp.batch_size,
                    "foreground_oversample": cfgp.foreground_oversample,
                }
                value = plan_values.get(target)
        if value is None:
            continue
        if p.type in ("float", "int"):
            assert p.low is not None and p.high is not None
            value = min(max(float(value), p.low), p.high)
            value = round(value) if p.type == "int" else value
        elif value not in p.options():
            continue
        point[name] = value
    return point


def resolve(space: SearchSpace, base: TrainConfig, plan: Plan, values: dict[str, Any]) -> TrainConfig:
    """The frozen training config of one trial: ``base`` + ``fixed`` + the sampled ``values``."""
    d = base.model_dump(mode="json")
    for k, v in space.fixed.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            d[k] = {**d[k], **v}
        else:
            d[k] = v
    special: dict[str, float] = {}
    for name, v in values.items():
        target = space.target(name)
        if target in SPECIAL_TARGETS:
            special[target] = float(v)
        else:
            set_nested(d, target, v)
    cfg = TrainConfig.model_validate(d)
    cfgp = plan.configurations.get(cfg.configuration)
    if cfgp is None:
        raise ConfigError.single(
            "configuration",
            f"the sampled configuration must be planned (planned: {sorted(plan.configurations)})",
            cfg.configuration,
            "remove it from the search space's choices, or plan it (e.g. `--preset default` plans 2d as well)",
        )
    if "patch_size_scale" in special:
        d["patch_size"] = scaled_patch(cfgp, special["patch_size_scale"])
    if "batch_size_scale" in special:
        d["batch_size"] = scaled_batch(cfgp, special["batch_size_scale"])
    if "augmentation_strength" in special:
        s = special["augmentation_strength"]
        aug = d["augmentation"]
        for k in list(aug):
            if k.endswith("_p"):
                aug[k] = min(1.0, aug[k] * s)
    if cfg.n_stages and cfg.n_stages > cfgp.network.n_stages:
        d["n_stages"] = cfgp.network.n_stages  # the plan's depth is the most its patch allows
    return TrainConfig.model_validate(d)
