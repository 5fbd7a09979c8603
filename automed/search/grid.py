"""GaNDLF-style config grids: a strategy YAML of lists, expanded as a Cartesian product, de-duplicated.

A strategy maps training-config keys (nested mappings or dotted keys, e.g. ``augmentation: {flip_p: [0, 0.5]}``
or ``augmentation.flip_p: [0, 0.5]``) to a list of values; a scalar is a single value. ``automed grid BASE
STRATEGY -o DIR`` writes one config YAML per distinct combination; ``automed sweep --grid STRATEGY`` evaluates them
(a strategy is turned into a search space of categorical parameters, so grids share the sweep's validation,
objective and tracking).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import ValidationError

from automed.artifacts import content_hash
from automed.config import load_yaml_model, read_yaml
from automed.errors import ConfigError, Problem
from automed.plan.schema import Plan
from automed.search.space import Parameter, SearchSpace, resolve, validate_space
from automed.train.config import TrainConfig


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_strategy(path: Path) -> dict[str, list[Any]]:
    data = read_yaml(path, "the grid strategy file", "check the path (see search_spaces/grid_example.yaml)")
    if not isinstance(data, dict) or not data:
        raise ConfigError.single(
            path,
            "a grid strategy is a mapping of config keys to lists of values",
            type(data).__name__,
            "see search_spaces/grid_example.yaml",
        )
    out: dict[str, list[Any]] = {}
    for key, v in _flatten(data).items():
        values = v if isinstance(v, list) else [v]
        if not values:
            raise ConfigError.single(
                path, f"'{key}': a grid axis needs at least one value", "[]", "list the values to try"
            )
        unique: list[Any] = []
        for value in values:  # repeated values in one list count once (lists are not hashable: compare)
            if value not in unique:
                unique.append(value)
        out[key] = unique
    return out


def grid_as_space(path: Path) -> SearchSpace:
    """The strategy as a search space of categorical parameters (validated like any space)."""
    strategy = load_strategy(path)
    parameters, problems = {}, []
    for k, v in strategy.items():
        try:
            # a value listed twice runs once (a grid has no sampling weights to keep)
            once = list({str(c): c for c in v}.values()) if isinstance(v, list) else v
            parameters[k] = Parameter(type="categorical", choices=once)
        except ValidationError:  # e.g. a list of ranges, or null, among an axis's values
            problems.append(Problem(str(path), "a grid axis lists numbers, words, booleans or lists of whole numbers",
                                    f"{k}: {v!r}", "list plain values for this key"))  # fmt: skip
    if problems:
        raise ConfigError(problems, f"invalid grid strategy {path}")
    space = SearchSpace(name=f"grid-{path.stem}", description=f"grid from {path.name}", parameters=parameters)
    validate_space(space, str(path))
    return space


def grid_points(space: SearchSpace, base: TrainConfig, plan: Plan) -> list[tuple[str, dict[str, Any]]]:
    """Every combination as ``(key, values)``; combinations that resolve to the same config are kept once."""
    names = list(space.parameters)
    seen: set[str] = set()
    out: list[tuple[str, dict[str, Any]]] = []
    for combo in itertools.product(*(space.parameters[n].options() for n in names)):
        values = dict(zip(names, combo, strict=True))
        digest = resolve(space, base, plan, values).digest()
        if digest in seen:
            continue
        seen.add(digest)
        out.append((f"g{len(out):03d}", values))
    return out


def space_points(space: SearchSpace, limit: int) -> list[dict[str, Any]] | None:
    """Every point of a finite space (categorical, bool and int parameters; a conditional parameter only where its
    condition holds), in the space's order; None for a space with a float parameter or more than ``limit`` points."""
    points: list[dict[str, Any]] = [{}]
    for name, p in space.parameters.items():
        if p.type == "float":
            return None
        if p.type == "int":
            assert p.low is not None and p.high is not None
            options: list[Any] = list(range(int(p.low), int(p.high) + 1, int(p.step or 1)))
        else:
            options = p.options()
        active = [p.active(pt) for pt in points]
        if sum(len(options) if a else 1 for a in active) > limit:
            return None
        points = [
            extended
            for pt, a in zip(points, active, strict=True)
            for extended in ([{**pt, name: v} for v in options] if a else [pt])
        ]
    return points


def distinct_points(
    space: SearchSpace, base: TrainConfig, plan: Plan, more_than: int
) -> list[tuple[str, dict[str, Any]]] | None:
    """``(config digest, values)`` of each distinct training config a finite space resolves to, the first point of
    each (points that resolve alike count once); None when the space is not finite, or has more than ``more_than``
    (counting stops there)."""
    points = space_points(space, 10_000)
    if points is None:
        return None
    seen: dict[str, dict[str, Any]] = {}
    for values in points:
        seen.setdefault(resolve(space, base, plan, values).digest(), values)
        if len(seen) > more_than:
            return None
    return list(seen.items())


def write_grid(base_file: Path, strategy_file: Path, out: Path) -> pd.DataFrame:
    """``automed grid``: one validated config YAML per distinct combination, plus ``grid.csv`` (the index)."""
    base = load_yaml_model(TrainConfig, base_file)
    strategy = load_strategy(strategy_file)
    space = grid_as_space(strategy_file)
    special = [
        k
        for k in strategy
        if space.target(k) not in TrainConfig.model_fields and not k.startswith("augmentation.")
    ]
    if special:
        raise ConfigError.single(
            strategy_file,
            "`automed grid` writes configs without a plan, so plan-aware scales cannot be resolved",
            special,
            "use them in `automed sweep --grid`, or grid over config fields",
        )
    rows = []
    configs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    seen: set[str] = set()
    for combo in itertools.product(*strategy.values()):
        values = dict(zip(strategy, combo, strict=True))
        # what the base sets and the grid's values only: a field neither sets keeps its meaning of "decided by
        # the plan" (configuration: the plan's own; every config had pinned 3d_fullres, refused on 2D datasets)
        d = base.model_dump(mode="json", exclude_unset=True)
        for key, v in values.items():
            node = d
            parts = key.split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = v
        cfg = TrainConfig.model_validate(d)
        digest = content_hash(cfg.model_dump(mode="json"))
        if digest in seen:
            continue
        seen.add(digest)
        configs.append((values, cfg.model_dump(mode="json", exclude_unset=True)))
    out.mkdir(parents=True, exist_ok=True)
    for i, (values, cfg_dict) in enumerate(configs):
        name = f"config_{i:03d}.yaml"
        text = (
            "# "
            + ", ".join(f"{k}={v}" for k, v in values.items())
            + "\n"
            + yaml.safe_dump(cfg_dict, sort_keys=False)
        )
        (out / name).write_text(text)
        rows.append({"file": name, **values})
    df = pd.DataFrame(rows)
    df.to_csv(out / "grid.csv", index=False)
    return df
