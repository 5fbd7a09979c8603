"""The search-space data model: parameters, the space, their option labels and config targets.

The file format and the meaning of each field are described in :mod:`automed.search.space`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from automed.config import Strict

SPECIAL_TARGETS = ("patch_size_scale", "batch_size_scale", "augmentation_strength")
Value = str | int | float | bool
Choice = str | int | float | bool | list[int]  # a list: e.g. a patch size in a grid


class Parameter(Strict):
    type: Literal["float", "int", "categorical", "bool"]
    target: str | None = None  # None: the parameter's own name
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)  # an int step of 0 or a negative float step is no grid
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


class SearchSpace(Strict):
    schema_version: Literal[1] = 1
    name: str
    description: str = ""
    fixed: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, Parameter]

    def target(self, name: str) -> str:
        return self.parameters[name].target or name


def set_nested(d: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``d[a][b]...`` for a dotted target ``a.b...``, creating the nested dicts on the way."""
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value
