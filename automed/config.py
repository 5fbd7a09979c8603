"""Loading YAML configs into strict pydantic models: unknown keys are rejected with a did-you-mean."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from automed.errors import ConfigError, Problem
from automed.registry import did_you_mean

M = TypeVar("M", bound=BaseModel)


def _unknown_keys(model: type[BaseModel], data: Any, where: str, out: list[Problem], file: str) -> None:
    if not isinstance(data, dict):
        return
    fields = model.model_fields
    for key, value in data.items():
        if key not in fields:
            out.append(
                Problem(
                    file,
                    f"unknown key '{where}{key}'",
                    repr(key),
                    f"remove it or use one of {sorted(fields)}.{did_you_mean(str(key), fields)}",
                )
            )
            continue
        ann = fields[key].annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            _unknown_keys(ann, value, f"{where}{key}.", out, file)


def load_model(model: type[M], data: Any, *, file: str) -> M:
    """Validate ``data`` as ``model``; every unknown key and bad value is reported in one :class:`ConfigError`."""
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise ConfigError.single(
            file,
            "the file must hold a mapping of keys to values",
            type(data).__name__,
            "see planners/default.yaml for the layout",
        )
    _unknown_keys(model, data, "", problems, file)
    if problems:
        raise ConfigError(problems, f"invalid {file}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"])
            problems.append(
                Problem(
                    file,
                    f"'{loc}': {err['msg']}",
                    repr(err.get("input")),
                    "set a value of the right type and range (see planners/default.yaml)",
                )
            )
        raise ConfigError(problems, f"invalid {file}") from exc


def read_yaml(path: Path, what: str = "the config file", fix: str = "check the path") -> Any:
    """Parse a YAML file; a missing file or bad syntax is a :class:`ConfigError` naming the file."""
    if not path.is_file():
        raise ConfigError.single(path, f"{what} must exist", "missing", fix)
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError.single(
            path, "the file must be valid YAML", str(exc).splitlines()[0], "fix the YAML syntax"
        ) from exc


def load_yaml_model(model: type[M], path: Path) -> M:
    return load_model(model, read_yaml(path), file=str(path))


def parse_duration(value: str | float | None) -> float | None:
    """``45m``, ``2h``, ``90s``, ``1h30m`` or seconds as a number -> seconds."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    import re

    text = value.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", text)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != text.replace(" ", ""):
        raise ConfigError.single(
            "--budget",
            "a budget is a duration such as 45m, 2h, 90s or 1h30m",
            repr(value),
            "write the number followed by h, m or s",
        )
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
