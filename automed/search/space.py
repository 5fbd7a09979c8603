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

This module loads a file (:func:`load_space`) and re-exports the rest: the data model
(:mod:`automed.search.schema`), validation (:mod:`automed.search.validate`), Optuna sampling
(:mod:`automed.search.sampling`) and the default point and plan-aware resolution (:mod:`automed.search.resolve`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automed.config import Layers, data_dir, load_model, merge_layers, read_layers, source_file
from automed.errors import ConfigError, Problem
from automed.registry import did_you_mean
from automed.search.resolve import default_point, resolve
from automed.search.sampling import decode, distributions, suggest, values_key
from automed.search.schema import SPECIAL_TARGETS, Choice, Parameter, SearchSpace, Value, choice_label
from automed.search.validate import validate_space

__all__ = [
    "SPECIAL_TARGETS",
    "Choice",
    "Parameter",
    "SearchSpace",
    "Value",
    "choice_label",
    "decode",
    "default_point",
    "distributions",
    "load_space",
    "resolve",
    "suggest",
    "validate_space",
    "values_key",
]

SPACES_DIR = data_dir("search_spaces")
"""automed's search spaces: ``extends: NAME`` names ``NAME.yaml`` here first, then beside the file (as presets do)."""


def _merged(layers: Layers) -> Any:
    """The ``extends:`` chain merged (:func:`merge_layers`), except that a parameter the child names replaces the
    parent's whole (merged key by key, a categorical child kept the parent's low/high and was refused, naming the
    child) and ``NAME: null`` drops it."""
    params = [d.get("parameters") for _, d in layers if isinstance(d, dict)]
    data = merge_layers(layers)
    if not isinstance(data, dict) or not all(isinstance(p, dict | None) for p in params):
        return data  # refused below, as the merge gives it
    whole: dict[str, Any] = {}
    for layer in params:
        for name, spec in (layer or {}).items():
            if spec is None:
                whole.pop(name, None)
            else:
                whole[name] = spec  # a redefined parameter keeps its place (a `when` names those above it)
    return {**data, "parameters": whole} if any(p is not None for p in params) else data


def load_space(path: str | Path) -> SearchSpace:
    """Load and validate a search-space YAML file."""
    p = Path(path)
    # `extends: NAME` is automed's search_spaces/NAME.yaml, else NAME.yaml beside it; or a path
    layers = read_layers(
        p, SPACES_DIR, what="the search-space file", fix="check the path (see search_spaces/)"
    )
    data = _merged(layers)
    problems: list[Problem] = []
    if isinstance(data, dict) and not isinstance(data.get("parameters") or {}, dict):
        raise ConfigError.single(source_file(layers, ("parameters",), str(p)), "'parameters' maps each parameter name to its spec",
                                 type(data["parameters"]).__name__,
                                 "write e.g. parameters: {learning_rate: {type: float, low: 1e-4, high: 1e-2}}")  # fmt: skip
    if isinstance(data, dict):
        for name, spec in (data.get("parameters") or {}).items():
            if isinstance(spec, dict):
                for key in spec:
                    if key not in Parameter.model_fields:
                        problems.append(
                            Problem(
                                source_file(layers, ("parameters", name, key), str(p)),
                                f"unknown key 'parameters.{name}.{key}'",
                                repr(key),
                                f"remove it or use one of {sorted(Parameter.model_fields)}.{did_you_mean(str(key), Parameter.model_fields)}",
                            )
                        )
    if problems:
        raise ConfigError(problems, f"invalid search space {p}")
    space = load_model(SearchSpace, data, file=str(p), layers=layers)
    validate_space(space, str(p))
    return space
