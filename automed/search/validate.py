"""Validation of a parsed search space against the training config: every problem reported at once."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from automed.errors import ConfigError, Problem
from automed.registry import did_you_mean
from automed.search.schema import SPECIAL_TARGETS, Choice, Parameter, SearchSpace, set_nested
from automed.train.config import Augmentation, TrainConfig


def _field_names() -> list[str]:
    names = [n for n in TrainConfig.model_fields if n not in ("augmentation", "schema_version")]
    names += [f"augmentation.{n}" for n in Augmentation.model_fields]
    return names + list(SPECIAL_TARGETS)


def _config_error(base: dict[str, Any], target: str, value: Any) -> str | None:
    """Why setting ``target`` to ``value`` gives an invalid TrainConfig (None when it is valid)."""
    d: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    set_nested(d, target, value)
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
        if p.type == "int" and p.step is not None and not float(p.step).is_integer():
            out.append(
                Problem(
                    file,
                    f"{where}: an int parameter needs a whole step",
                    f"step={p.step}",
                    "use a whole number",
                )
            )
        if p.step is not None and p.step > 0 and p.step > p.high - p.low:
            out.append(
                Problem(
                    file,
                    f"{where}: the step must fit in [low, high] (else the range is one value)",
                    f"step={p.step}, low={p.low}, high={p.high}",
                    "use a smaller step or a wider range",
                )
            )
        if p.type == "int" and isinstance(p.default, float) and not p.default.is_integer():
            out.append(
                Problem(
                    file,
                    f"{where}: an int parameter's default is a whole number",
                    repr(p.default),
                    "use a whole number",
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
        if p.type == "bool" and p.choices is not None:
            out.append(
                Problem(
                    file,
                    f"{where}: a bool parameter tries false and true (it takes no choices)",
                    repr(p.choices),
                    "remove `choices:`, or use a categorical parameter, or fix the value",
                )
            )
        labels = [str(c) for c in p.choices or []]
        if len(set(labels)) < len(labels):
            out.append(
                Problem(
                    file,
                    f"{where}: each choice is listed once",
                    repr(p.choices),
                    "remove the repeated values (a repeat only weighs the sampler)",
                )
            )
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
    if target not in SPECIAL_TARGETS and p.type == "float" and p.low is not None and p.high is not None:
        # whole bounds pass an int field, the values sampled between them do not (every trial had failed)
        inner = p.low + (p.high - p.low) * 0.382
        if _config_error(fixed, target, inner) and not _config_error(fixed, target, round(inner)):
            out.append(
                Problem(file, f"{where}: `{target}` takes whole numbers", "type=float", "use type: int")
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
    elif p.type == "categorical":  # a grid axis of scales (or a space's list of them)
        bad = [c for c in p.options() if isinstance(c, bool) or not isinstance(c, int | float) or c <= 0]
        if bad:
            out.append(
                Problem(
                    file,
                    f"{where}: `{target}` takes positive numbers",
                    repr(bad),
                    "list positive numbers such as [0.75, 1.0, 1.25]",
                )
            )
    elif p.type not in ("float", "int") or (p.low is not None and p.low <= 0):
        out.append(
            Problem(
                file,
                f"{where}: `{target}` takes a positive number",
                f"type={p.type}, low={p.low}",
                "use type float with low > 0 (or a list of positive numbers)",
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
        # augmentation: the partial dict is merged over the base config's (resolve), so it is judged over the
        # defaults here (an unknown key, a wrong type or a reversed range fails before any trial starts)
        why = _config_error({}, key, fixed[key])
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
    # the parameters are judged over the valid fixed values (every problem reported in one run)
    fixed = {
        k: v
        for k, v in fixed.items()
        if k in TrainConfig.model_fields and k != "schema_version" and _config_error({}, k, v) is None
    }
    earlier: dict[str, Parameter] = {}
    targets: dict[str, str] = {}
    for name, p in space.parameters.items():
        problems += _check_parameter(file, name, p, earlier, fixed, list(space.parameters))
        t = p.target or name
        head, _, sub = t.partition(".")
        if (
            (t in space.fixed)
            if not sub
            else (isinstance(space.fixed.get(head), dict) and sub in space.fixed[head])
        ):
            problems.append(
                Problem(
                    file,
                    f"parameters.{name}: a parameter and `fixed:` set the same field (the parameter "
                    "would silently win)",
                    t,
                    "remove it from `fixed:` or remove the parameter",
                )
            )
        # two parameters of one target: only when both are conditional (on different values), else one silently
        # overrides the other
        if t in targets and not (p.when and space.parameters[targets[t]].when):
            problems.append(
                Problem(
                    file,
                    f"parameters.{name}: two parameters set the same target and one of them always applies",
                    f"{t} (also {targets[t]})",
                    "keep one, or make both conditional on different values",
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
