"""Search spaces as data (``search_spaces/*.yaml``): loading, validation, sampling and resolution to a config.

A parameter has a ``type`` (float, int, categorical, bool), bounds (``low``/``high``/``log``/``step``) or
``choices``, an optional ``default`` (the value the planner's defaults are evaluated at first), an optional ``when``
condition on earlier categorical/bool parameters (``when: {optimizer: sgd}``) and a ``target``: a
:class:`~automed.train.config.TrainConfig` field (dotted for nested ones, e.g. ``augmentation.rotation_p``) or one of
the plan-aware targets below. ``fixed`` sets config fields for every trial. Every problem in a file is reported at
once, each with the file, the rule, the value and the fix.

Plan-aware targets (resolved through :mod:`automed.plan.variants`, so shapes stay valid):
``patch_size_scale`` (the plan's patch per axis times the value, rounded to the network's divisor),
``batch_size_scale`` (the plan's batch times the value) and ``augmentation_strength`` (every augmentation
probability times the value, capped at 1).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from automed.config import load_model, read_yaml
from automed.errors import ConfigError, Problem
from automed.plan.schema import Plan
from automed.plan.variants import scaled_batch, scaled_patch
from automed.registry import did_you_mean
from automed.train.config import Augmentation, TrainConfig

SPECIAL_TARGETS = ("patch_size_scale", "batch_size_scale", "augmentation_strength")
Value = str | int | float | bool
Choice = str | int | float | bool | list[int]  # a list: e.g. a patch size in a grid


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Parameter(_Strict):
    type: Literal["float", "int", "categorical", "bool"]
    target: str | None = None  # None: the parameter's own name
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Choice] | None = None
    default: Value | None = None
    when: dict[str, Value | list[Value]] | None = None

    def active(self, values: dict[str, Any]) -> bool:
        """Whether the parameter is sampled, given the values sampled before it."""
        for name, want in (self.when or {}).items():
            allowed = want if isinstance(want, list) else [want]
            if name not in values or values[name] not in allowed:
                return False
        return True

    def options(self) -> list[Choice]:
        return [False, True] if self.type == "bool" else list(self.choices or [])

    def labels(self) -> list[Value]:
        """The options as Optuna can store them (a list becomes ``"16x32x32"``)."""
        return [choice_label(c) for c in self.options()]


def choice_label(c: Choice) -> Value:
    return "x".join(str(v) for v in c) if isinstance(c, list) else c


class SearchSpace(_Strict):
    schema_version: Literal[1] = 1
    name: str
    description: str = ""
    fixed: dict[str, Any] = {}
    parameters: dict[str, Parameter]

    def target(self, name: str) -> str:
        return self.parameters[name].target or name


def _set_nested(d: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def _field_names() -> list[str]:
    names = [n for n in TrainConfig.model_fields if n not in ("augmentation", "schema_version")]
    names += [f"augmentation.{n}" for n in Augmentation.model_fields]
    return names + list(SPECIAL_TARGETS)


def _config_error(base: dict[str, Any], target: str, value: Any) -> str | None:
    """Why setting ``target`` to ``value`` gives an invalid TrainConfig (None when it is valid)."""
    d: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    _set_nested(d, target, value)
    try:
        TrainConfig.model_validate(d)
    except ValidationError as exc:
        return "; ".join(e["msg"] for e in exc.errors())
    return None


def _check_parameter(
    file: str,
    name: str,
    p: Parameter,
    earlier: dict[str, Parameter],
    fixed: dict[str, Any],
    all_names: list[str],
) -> list[Problem]:
    out: list[Problem] = []
    where = f"parameters.{name}"
    target = p.target or name
    if target not in _field_names():
        out.append(
            Problem(
                file,
                f"{where}: the target must be a training-config field or one of {list(SPECIAL_TARGETS)}",
                repr(target),
                f"set `target:` to a field.{did_you_mean(target, _field_names())}",
            )
        )
        return out
    if p.type in ("float", "int"):
        if p.low is None or p.high is None or p.choices is not None:
            return [
                Problem(
                    file,
                    f"{where}: a {p.type} parameter needs low and high (and no choices)",
                    f"low={p.low}, high={p.high}, choices={p.choices}",
                    "give numeric `low:` and `high:`",
                )
            ]
        if not p.low < p.high:
            out.append(
                Problem(
                    file,
                    f"{where}: low must be below high",
                    f"low={p.low}, high={p.high}",
                    "swap or widen the bounds",
                )
            )
        if p.log and p.low <= 0:
            out.append(
                Problem(
                    file,
                    f"{where}: a log-scale range must be positive",
                    f"low={p.low}",
                    "use low > 0 or log: false",
                )
            )
        if p.log and p.step is not None:
            out.append(
                Problem(
                    file, f"{where}: step and log cannot be combined", f"step={p.step}", "drop one of them"
                )
            )
        if p.type == "int" and not (float(p.low).is_integer() and float(p.high).is_integer()):
            out.append(
                Problem(
                    file,
                    f"{where}: an int parameter needs whole bounds",
                    f"low={p.low}, high={p.high}",
                    "use whole numbers",
                )
            )
        if p.default is not None and not (
            isinstance(p.default, int | float) and p.low <= float(p.default) <= p.high
        ):
            out.append(
                Problem(
                    file,
                    f"{where}: the default must lie within [low, high]",
                    repr(p.default),
                    f"use a value in [{p.low}, {p.high}]",
                )
            )
        probes: list[Choice] = [p.low, p.high] if p.type == "float" else [int(p.low), int(p.high)]
    else:
        if p.type == "categorical" and not p.choices:
            return [
                Problem(
                    file,
                    f"{where}: a categorical parameter needs a non-empty choices list",
                    repr(p.choices),
                    "list the values to try under `choices:`",
                )
            ]
        if p.low is not None or p.high is not None or p.log or p.step is not None:
            out.append(
                Problem(
                    file,
                    f"{where}: low/high/log/step apply to float and int parameters only",
                    f"type={p.type}",
                    "remove them or change the type",
                )
            )
        if p.default is not None and p.default not in p.options():
            out.append(
                Problem(
                    file,
                    f"{where}: the default must be one of the choices",
                    repr(p.default),
                    f"use one of {p.options()}",
                )
            )
        probes = p.options()
    if target == "architecture":
        from automed.train.networks import NETWORKS

        for v in probes:
            if v not in NETWORKS.names():
                out.append(
                    Problem(
                        file,
                        f"{where}: the value is not a registered network ({NETWORKS.names()})",
                        repr(v),
                        f"use a registered name.{did_you_mean(str(v), NETWORKS.names())}",
                    )
                )
    if target not in SPECIAL_TARGETS:
        for v in probes:
            why = _config_error(fixed, target, v)
            if why:
                out.append(
                    Problem(
                        file,
                        f"{where}: the value is invalid for `{target}` ({why})",
                        repr(v),
                        "use values the training config accepts",
                    )
                )
    elif p.type not in ("float", "int") or (p.low is not None and p.low <= 0):
        out.append(
            Problem(
                file,
                f"{where}: `{target}` takes a positive number",
                f"type={p.type}, low={p.low}",
                "use type float with low > 0",
            )
        )
    for cond, want in (p.when or {}).items():
        if cond not in earlier:
            later = " (it is defined later: move it above)" if cond in all_names and cond != name else ""
            out.append(
                Problem(
                    file,
                    f"{where}: `when` must name a categorical or bool parameter defined above{later}",
                    repr(cond),
                    f"use one of {sorted(earlier)}.{did_you_mean(cond, earlier)}",
                )
            )
            continue
        src = earlier[cond]
        if src.type not in ("categorical", "bool"):
            out.append(
                Problem(
                    file,
                    f"{where}: `when` can only test categorical or bool parameters",
                    f"{cond} is {src.type}",
                    "condition on a categorical parameter",
                )
            )
            continue
        for w in want if isinstance(want, list) else [want]:
            if w not in src.options():
                out.append(
                    Problem(
                        file,
                        f"{where}: the condition's value is not a choice of `{cond}`",
                        repr(w),
                        f"use one of {src.options()}",
                    )
                )
    return out


def validate_space(space: SearchSpace, file: str) -> None:
    problems: list[Problem] = []
    fixed = dict(space.fixed)
    for key in list(fixed):
        why = _config_error({}, key, fixed[key]) if key != "augmentation" else None
        if key not in TrainConfig.model_fields or key == "schema_version":
            problems.append(
                Problem(
                    file,
                    "fixed: keys must be training-config fields",
                    repr(key),
                    f"remove it.{did_you_mean(key, TrainConfig.model_fields)}",
                )
            )
        elif why:
            problems.append(
                Problem(
                    file,
                    f"fixed.{key}: invalid value ({why})",
                    repr(fixed[key]),
                    "use a value the training config accepts",
                )
            )
    if problems:
        raise ConfigError(problems, f"invalid search space {file}")
    earlier: dict[str, Parameter] = {}
    targets: dict[str, str] = {}
    for name, p in space.parameters.items():
        problems += _check_parameter(file, name, p, earlier, fixed, list(space.parameters))
        t = p.target or name
        if t in targets and not (p.when or space.parameters[targets[t]].when):
            problems.append(
                Problem(
                    file,
                    f"parameters.{name}: two unconditional parameters set the same target",
                    f"{t} (also {targets[t]})",
                    "keep one, or make them conditional",
                )
            )
        targets.setdefault(t, name)
        earlier[name] = p
    if not space.parameters:
        problems.append(
            Problem(
                file,
                "a search space needs at least one parameter",
                "parameters: {}",
                "add parameters (see search_spaces/quick.yaml)",
            )
        )
    if problems:
        raise ConfigError(problems, f"invalid search space {file}")


def load_space(path: str | Path) -> SearchSpace:
    """Load and validate a search-space YAML file."""
    p = Path(path)
    data = read_yaml(p, "the search-space file", "check the path (see search_spaces/)")
    problems: list[Problem] = []
    if isinstance(data, dict):
        for name, spec in (data.get("parameters") or {}).items():
            if isinstance(spec, dict):
                for key in spec:
                    if key not in Parameter.model_fields:
                        problems.append(
                            Problem(
                                str(p),
                                f"unknown key 'parameters.{name}.{key}'",
                                repr(key),
                                f"remove it or use one of {sorted(Parameter.model_fields)}.{did_you_mean(str(key), Parameter.model_fields)}",
                            )
                        )
    if problems:
        raise ConfigError(problems, f"invalid search space {p}")
    space = load_model(SearchSpace, data, file=str(p))
    validate_space(space, str(p))
    return space


# --- sampling ---------------------------------------------------------------------------------------------------


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
            _set_nested(d, target, v)
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


def values_key(values: dict[str, Any]) -> str:
    """A short, stable text of sampled values (for tables and run names)."""
    parts = []
    for k, v in values.items():
        parts.append(f"{k}={v:.3g}" if isinstance(v, float) and not math.isnan(v) else f"{k}={v}")
    return ", ".join(parts)
