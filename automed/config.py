"""The strict pydantic base of every config and artifact schema, and loading YAML configs into such models: unknown
keys are rejected with a did-you-mean."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from automed.errors import ConfigError, Problem
from automed.registry import did_you_mean

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """The base of every config and artifact schema (presets, search spaces, training configs, fingerprint, plan,
    model metadata, container configs): an unknown key is refused (a typo is never silently ignored), a model is
    immutable once validated, and a NaN or infinite number is refused (a defect in any config or artifact: JSON
    artifacts never hold one, :func:`automed.artifacts.finite_json`, so only one computed in memory is caught)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Layers = list[tuple[Path, Any]]
"""An ``extends:`` chain as read: each file with its own YAML data (``extends`` removed), the root parent first."""


def _holds(data: Any, loc: tuple[Any, ...]) -> bool:
    for key in loc:
        if not isinstance(data, dict):
            return False
        found = [v for k, v in data.items() if str(k) == str(key)]
        if not found:
            return False
        data = found[0]
    return True


def source_file(layers: Layers, loc: tuple[Any, ...], default: str) -> str:
    """The file of ``layers`` whose value at ``loc`` (a key path into the merged mapping) is the one used: the
    last file holding it (the child wins when several do); the longest such prefix of ``loc`` decides (a missing
    key, an item of a list), else ``default``."""
    for n in range(len(loc), 0, -1):
        for path, data in reversed(layers):
            if _holds(data, loc[:n]):
                return str(path)
    return default


def _unknown_keys(
    model: type[BaseModel],
    data: Any,
    loc: tuple[str, ...],
    out: list[Problem],
    file: Callable[[tuple[Any, ...]], str],
) -> None:
    if not isinstance(data, dict):
        return
    fields = model.model_fields
    for key, value in data.items():
        if key not in fields:
            out.append(
                Problem(
                    file((*loc, key)),
                    f"unknown key '{'.'.join((*loc, str(key)))}'",
                    repr(key),
                    f"remove it or use one of {sorted(fields)}.{did_you_mean(str(key), fields)}",
                )
            )
            continue
        ann = fields[key].annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            _unknown_keys(ann, value, (*loc, key), out, file)


_LAYOUT = {  # where each kind of file's keys are shown
    "Preset": "planners/default.yaml",
    "SearchSpace": "search_spaces/quick.yaml",
    "TrainConfig": "automed/train/config.py (every training-config key with its default)",
}


def load_model(model: type[M], data: Any, *, file: str, layers: Layers | None = None) -> M:
    """Validate ``data`` as ``model``; every unknown key and bad value is reported in one :class:`ConfigError`.

    ``layers``: the ``extends:`` chain ``data`` was merged from; each problem then names the file of the chain
    that holds the offending key (see :func:`source_file`), not ``file``."""

    def where(loc: tuple[Any, ...]) -> str:
        return source_file(layers, loc, file) if layers else file

    layout = _LAYOUT.get(model.__name__, "the README")
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise ConfigError.single(
            file,
            "the file must hold a mapping of keys to values",
            type(data).__name__,
            f"see {layout} for the layout",
        )
    _unknown_keys(model, data, (), problems, where)
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
                    where(tuple(err["loc"])),
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
    if path.is_dir():  # (a folder was said to be "missing")
        raise ConfigError.single(path, f"{what} must be a YAML file", "a folder", "pass the YAML file itself")
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


def data_dir(name: str) -> Path:
    """automed's shipped YAML folder ``name`` (``planners``, ``search_spaces``): the source tree's (editable
    install), else the copy installed under ``share/automed``; the folder ``extends: NAME`` looks in first."""
    src = Path(__file__).resolve().parents[1] / name
    if src.is_dir():
        return src
    return Path(sys.prefix) / "share" / "automed" / name


def load_yaml_model(model: type[M], path: Path, names: Path | None = None) -> M:
    """Load ``path`` as ``model``, after resolving its ``extends:`` chain (see :func:`read_extending`); a problem
    names the file of the chain that holds the offending key."""
    layers = read_layers(path, names)
    return load_model(model, merge_layers(layers), file=str(path), layers=layers)


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
    (relative to the child's folder); the path as found, not resolved (errors name it as the user wrote it)."""
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
            return found
        where = found.parent
        place = str(where)
        # the YAML files beside the one named, written as the reference would name them
        options = sorted(
            str(p.with_name(q.name))
            for q in (where.iterdir() if where.is_dir() and p.name else [])  # `extends: ./` names no file
            if q.suffix in (".yaml", ".yml") and q.is_file() and q.resolve() != child.resolve()
        )
    else:
        # a preset names automed's presets first, then the YAML files beside it (`extends: base` was refused
        # where base.yaml lay beside the child, though the names listed were only automed's)
        folders = [f for f in (names, child.parent) if f is not None]
        candidates = [  # (a file never names itself: `extends: default` in a default.yaml is automed's)
            f
            for f in (where / f"{ref}.yaml" for where in folders)
            if f.is_file() and f.resolve() != child.resolve()
        ]
        if len(candidates) == 2 and read_yaml(candidates[0]) != read_yaml(candidates[1]):
            # a user's edited copy beside the child, named like automed's own: either reading is a surprise
            raise ConfigError.single(
                child,
                "'extends: NAME' must name one file",
                f"{ref!r} names automed's {candidates[0]} and, beside this file, {candidates[1]} (they differ)",
                f"write extends: ./{ref}.yaml for the one beside it, or extends: {candidates[0]} for automed's",
            )
        if candidates:
            return candidates[0]
        place = " or ".join(str(f.resolve()) for f in folders)
        options = sorted(
            {q.stem for f in folders for q in f.glob("*.yaml") if q.resolve() != child.resolve()}
        )
    raise ConfigError.single(
        child,
        "'extends' must name an existing preset or YAML file",
        repr(ref),
        f"use one of {options} in {place}, or a path to a YAML file.{did_you_mean(ref, options)}"
        if options
        else f"check the path (looked for {found})",
    )


def read_layers(
    path: Path,
    names: Path | None = None,
    _chain: tuple[Path, ...] = (),
    *,
    what: str = "the config file",
    fix: str = "check the path",
) -> Layers:
    """``path`` and its ``extends:`` ancestors, each with its own YAML data, the root parent first.

    A cycle, an unknown parent or a parent that is not a mapping is a :class:`ConfigError` naming the chain, the
    names there are or the parent (``what``/``fix``: the error for a missing ``path``)."""
    data = read_yaml(path, what, fix)
    if _chain and not isinstance(data, dict):
        found = "an empty file" if data is None else f"a YAML {type(data).__name__}"
        raise ConfigError.single(
            path,
            "an extends: parent must be a mapping of keys to values",
            f"{found} (the parent of {_chain[-1]})",
            f"write {path.name} as key: value lines, or make extends: in {_chain[-1]} name another file",
        )
    if not isinstance(data, dict) or EXTENDS not in data:
        return [(path, data)]
    data = dict(data)
    parent = _parent_path(data.pop(EXTENDS), path, names)
    chain = (*_chain, path)
    if parent.resolve() in {p.resolve() for p in chain}:
        loop = " -> ".join(p.name for p in (*chain, parent))
        raise ConfigError.single(path, "'extends' chains must not loop", loop, "break the cycle")
    return [*read_layers(parent, names, chain), (path, data)]


def merge_layers(layers: Layers) -> Any:
    """The data of an ``extends:`` chain (see :func:`read_layers`), each file merged over its parent."""
    out = layers[0][1]
    for _, data in layers[1:]:
        out = merge(out, data)
    return out


def read_extending(
    path: Path,
    names: Path | None = None,
    *,
    what: str = "the config file",
    fix: str = "check the path",
) -> Any:
    """The YAML mapping of ``path`` merged over its ``extends:`` parent, recursively (InnerEye-style base configs).

    The child's keys win; nested mappings merge key by key. A cycle, an unknown parent or a parent that is not a
    mapping is a :class:`ConfigError` (see :func:`read_layers`)."""
    return merge_layers(read_layers(path, names, what=what, fix=fix))


# a longer budget is a typo (99999h) more often than a plan: refused, as --budget's help says
MAX_BUDGET_DAYS = 30


def parse_duration(value: str | float | None) -> float | None:
    """``45m``, ``2h``, ``90s``, ``1h30m`` or seconds as a number -> seconds (positive, at most
    :data:`MAX_BUDGET_DAYS` days: the API's callers are held to what the command line is)."""
    if value is None:
        return None
    seconds = _seconds(value)
    if not seconds > 0:  # 0 would read as "no budget" downstream: the whole default schedule, no deadline
        raise ConfigError.single("--budget", "a budget is a positive duration", repr(value),
                                 "give at least a few minutes, e.g. 10m (or leave --budget out)")  # fmt: skip
    if seconds > MAX_BUDGET_DAYS * 86400:
        raise ConfigError.single(
            "--budget",
            f"a budget is at most {MAX_BUDGET_DAYS} days ({MAX_BUDGET_DAYS * 24}h)",
            f"{value!r}, which is {seconds / 86400:,.1f} days",
            f"give the wall-clock time the command may take, at most {MAX_BUDGET_DAYS * 24}h (e.g. 48h)",
        )
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
