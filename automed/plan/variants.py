"""A plan as one training config sees it: the config's overrides (width, depth, normalization) applied.

Overrides never change ``plan.hash`` (the config digest records them); a normalization override gets its own
``data_identifier`` so its preprocessed cache lives beside the plan's. Patch and batch scales used by search spaces
are turned into concrete, valid shapes here too, so every shape the trainer sees went through the plan's rules.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from automed.errors import ConfigError
from automed.plan.schema import ChannelNormalization, ConfigurationPlan, Plan
from automed.plan.topology import features_per_stage

if TYPE_CHECKING:
    from automed.train.config import TrainConfig

# the default presets' caps, for a plan written before NetworkPlan recorded its preset's
_LEGACY_MAX_FEATURES = {2: 512, 3: 320}


def _network(cfg: ConfigurationPlan, config: TrainConfig) -> ConfigurationPlan:
    net = cfg.network
    n = config.n_stages or net.n_stages
    if n > net.n_stages:
        raise ConfigError.single(
            "n_stages",
            f"a network can be at most as deep as the plan allows ({net.n_stages} stages for this patch)",
            n,
            f"use n_stages <= {net.n_stages}",
        )
    base = config.base_features or net.features_per_stage[0]
    if n == net.n_stages and base == net.features_per_stage[0]:
        return cfg
    cap = max(net.max_features or _LEGACY_MAX_FEATURES[net.dimension], *net.features_per_stage)
    new = net.model_copy(
        update={
            "n_stages": n,
            "features_per_stage": features_per_stage(n, base, cap),
            "kernel_sizes": net.kernel_sizes[:n],
            "strides": net.strides[:n],
        }
    )
    return cfg.model_copy(update={"network": new})


def _normalization(cfg: ConfigurationPlan, scheme: str | None) -> ConfigurationPlan:
    if scheme is None or all(n.scheme == scheme for n in cfg.normalization):
        return cfg
    norms = [
        ChannelNormalization(
            channel=n.channel,
            scheme=scheme,
            use_nonzero_mask=n.use_nonzero_mask,
            reason=f"training config override (the plan chose {n.scheme})",
        )
        for n in cfg.normalization
    ]
    return cfg.model_copy(
        update={"normalization": norms, "data_identifier": f"{cfg.data_identifier}__{scheme}"}
    )


def effective_plan(plan: Plan, config: TrainConfig) -> Plan:
    """``plan`` with ``config``'s overrides applied to its configuration (the same object when there are none)."""
    name = config.configuration
    if name not in plan.configurations:
        return plan
    cfg = plan.configurations[name]
    new = _normalization(_network(cfg, config), config.normalization)
    if new is cfg:
        return plan
    return plan.model_copy(update={"configurations": {**plan.configurations, name: new}})


def scaled_patch(cfg: ConfigurationPlan, scale: float) -> list[int]:
    """The plan's patch scaled per axis, rounded to the network's divisor, at least one divisor and at most the
    median image rounded up to it (the planner's rule)."""
    div = cfg.network.divisor
    out = []
    for p, d, m in zip(cfg.patch_size, div, cfg.median_shape, strict=True):
        top = max(p, math.ceil(m / d) * d)
        out.append(int(min(top, max(d, round(p * scale / d) * d))))
    return out


def scaled_batch(cfg: ConfigurationPlan, scale: float) -> int:
    return max(1, round(cfg.batch_size * scale))
