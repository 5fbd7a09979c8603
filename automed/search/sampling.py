"""Sampling a search space with Optuna: distributions, define-by-run suggestion, decoding labels, value text."""

from __future__ import annotations

import math
from typing import Any

from automed.search.schema import SearchSpace


def distributions(space: SearchSpace) -> dict[str, Any]:
    """Optuna distributions of every parameter (for studies rebuilt from results)."""
    import optuna.distributions as od

    out: dict[str, Any] = {}
    for name, p in space.parameters.items():
        if p.type == "float":
            assert p.low is not None and p.high is not None
            out[name] = od.FloatDistribution(p.low, p.high, log=p.log, step=p.step)
        elif p.type == "int":
            assert p.low is not None and p.high is not None
            out[name] = od.IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
        else:
            out[name] = od.CategoricalDistribution(p.labels())
    return out


def suggest(space: SearchSpace, trial: Any) -> dict[str, Any]:
    """Sample the space with an Optuna trial (define-by-run); inactive conditional parameters are left out."""
    values: dict[str, Any] = {}
    for name, p in space.parameters.items():
        if not p.active(values):
            continue
        if p.type == "float":
            assert p.low is not None and p.high is not None
            values[name] = trial.suggest_float(name, p.low, p.high, log=p.log, step=p.step)
        elif p.type == "int":
            assert p.low is not None and p.high is not None
            values[name] = trial.suggest_int(name, int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
        else:
            label = trial.suggest_categorical(name, p.labels())
            values[name] = p.options()[p.labels().index(label)]
    return values


def decode(space: SearchSpace, labelled: dict[str, Any]) -> dict[str, Any]:
    """Values as an engine reports them (list choices as labels) -> the space's values."""
    out = {}
    for name, v in labelled.items():
        p = space.parameters.get(name)
        if p is not None and p.type in ("categorical", "bool") and v in p.labels():
            v = p.options()[p.labels().index(v)]
        out[name] = v
    return out


def values_key(values: dict[str, Any]) -> str:
    """A short, stable text of sampled values (for tables and run names)."""
    parts = []
    for k, v in values.items():
        parts.append(f"{k}={v:.3g}" if isinstance(v, float) and not math.isnan(v) else f"{k}={v}")
    return ", ".join(parts)
