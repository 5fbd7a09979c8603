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


_LAYOUT = {  # where each kind of file's keys are shown
    "Preset": "planners/default.yaml",
    "SearchSpace": "search_spaces/quick.yaml",
    "TrainConfig": "automed/train/config.py (every training-config key with its default)",
}


def load_model(model: type[M], data: Any, *, file: str) -> M:
    """Validate ``data`` as ``model``; every unknown key and bad value is reported in one :class:`ConfigError`."""
    layout = _LAYOUT.get(model.__name__, "the README")
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise ConfigError.single(
            file,
            "the file must hold a mapping of keys to values",
            type(data).__name__,
            f"see {layout} for the layout",
        )
    _unknown_keys(model, data, "", problems, file)
    # the unknown keys _unknown_keys reported (it follows nested models only: pydantic names the others)
    named = {p.value for p in problems}
    try:
        result = model.model_validate(data)
    except ValidationError as exc:  # reported with the unknown keys: one run shows every problem
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"])
            if err["type"] == "extra_forbidden" and repr(str(err["loc"][-1])) in named:
                continue  # already named, with did-you-mean
            problems.append(
                Problem(
                    file,
                    f"'{loc}': {err['msg']}",
                    repr(err.get("input")),
                    f"set a value of the right type and range (see {layout})",
                )
            )
        raise ConfigError(problems, f"invalid {file}") from exc
    if problems:
        raise ConfigError(problems, f"invalid {file}")
    return result


def read_yaml(path: Path, what: str = "the config file", fix: str = "check the path") -> Any:
    """Parse a YAML file; a missing file or bad syntax is a :class:`ConfigError` naming the file."""
    if not path.is_file():
        raise ConfigError.single(path, f"{what} must exist", "missing", fix)
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what_went_wrong = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError.single(
            path, "the file must be valid YAML", f"{what_went_wrong}{where}", "fix the YAML syntax there"
        ) from exc


def load_yaml_model(model: type[M], path: Path, names: Path | None = None) -> M:
    """Load ``path`` as ``model``, after resolving its ``extends:`` chain (see :func:`read_extending`)."""
    return load_model(model, read_extending(path, names), file=str(path))


EXTENDS = "extends"


def merge(base: Any, child: Any) -> Any:
    """``child`` over ``base``: mappings merge key by key (recursively); anything else in ``child`` replaces."""
    if isinstance(base, dict) and isinstance(child, dict):
        out = dict(base)
        for k, v in child.items():
            out[k] = merge(base[k], v) if k in base else v
        return out
    return child


def _parent_path(ref: Any, child: Path, names: Path | None) -> Path:
    """``extends: NAME`` (a file ``NAME.yaml`` of ``names``, else of the child's folder) or ``extends: PATH``
    (relative to the child's folder)."""
    if not isinstance(ref, str) or not ref.strip():
        raise ConfigError.single(
            child,
            "'extends' names one parent: a preset name or a YAML path",
            repr(ref),
            "write extends: NAME",
        )
    if ref.endswith((".yaml", ".yml")) or "/" in ref:
        p = Path(ref)
        found = p if p.is_absolute() else child.parent / p
        if found.is_file():
            return found.resolve()
        where, options = found.parent, []
    else:
        where = names or child.parent
        found = where / f"{ref}.yaml"
        if found.is_file():
            return found.resolve()
        options = sorted(q.stem for q in where.glob("*.yaml") if q.resolve() != child.resolve())
    raise ConfigError.single(
        child,
        "'extends' must name an existing preset or YAML file",
        repr(ref),
        f"use one of {options} in {where}, or a path to a YAML file.{did_you_mean(ref, options)}"
        if options
        else f"check the path (looked for {found})",
    )


def read_extending(
    path: Path,
    names: Path | None = None,
    _chain: tuple[Path, ...] = (),
    *,
    what: str = "the config file",
    fix: str = "check the path",
) -> Any:
    """The YAML mapping of ``path`` merged over its ``extends:`` parent, recursively (InnerEye-style base configs).

    The child's keys win; nested mappings merge key by key. A cycle or an unknown parent is a :class:`ConfigError`
    naming the chain or offering the names there are (``what``/``fix``: the error for a missing ``path``)."""
    data = read_yaml(path, what, fix)
    if not isinstance(data, dict) or EXTENDS not in data:
        return data
    here = path.resolve()
    parent = _parent_path(data.pop(EXTENDS), path, names)
    chain = (*_chain, here)
    if parent in chain:
        loop = " -> ".join(p.name for p in (*chain, parent))
        raise ConfigError.single(path, "'extends' chains must not loop", loop, "break the cycle")
    return merge(read_extending(parent, names, chain), data)


def parse_duration(value: str | float | None) -> float | None:
    """``45m``, ``2h``, ``90s``, ``1h30m`` or seconds as a number -> seconds."""
    if value is None:
        return None
    seconds = _seconds(value)
    if not seconds > 0:  # 0 would read as "no budget" downstream: the whole default schedule, no deadline
        raise ConfigError.single("--budget", "a budget is a positive duration", repr(value),
                                 "give at least a few minutes, e.g. 10m (or leave --budget out)")  # fmt: skip
    return seconds


def _seconds(value: str | float) -> float:
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
