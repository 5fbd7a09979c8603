"""A sweep's saved state, ``sweep.json``: written when the sweep starts (:func:`new_state`), updated as its stages
run, and read by ``automed sweep --resume`` through :func:`read_state` alone. Before any work, the read refuses a
sweep.json that is not JSON or not an object, of another layout (``schema_version``) or sweep state
(``state_version``), with a key a resume reads missing or of another type, a search space or base config this
automed does not read, or options it does not know or of another type; each refusal names the file, the rule, the
value found and the fix (a damaged sweep.json had crashed the resume with a bare KeyError or TypeError). An option
the sweep lacks (added since it started) takes this automed's default, said in a warning."""

from __future__ import annotations

import json
import logging
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any, get_type_hints

from automed._version import __version__
from automed.config import load_model
from automed.errors import ArtifactError, ConfigError, Problem
from automed.privacy import strip_credentials
from automed.records import fits, shown
from automed.runtime.sliding import Mirrors
from automed.search.schema import SearchSpace
from automed.train.config import TrainConfig
from automed.workflow.sweep_stages import STATE_FILE, STATE_VERSION, SweepOptions

log = logging.getLogger(__name__)

# sweep.json's layout (its keys and the kinds of their values, _KEYS); every automed wrote it, one without it (edited
# by hand) is read as 1. What the state means (its options and stages) is versioned apart: STATE_VERSION.
SCHEMA_VERSION = 1

# Each top-level key automed writes: its type (checked strictly: "2" is no number, true no count), what that is in
# words, and whether every sweep.json holds it. The optional ones are written as the sweep runs (the MLflow ids once
# its run exists, the fold budget and timings by its stages) or were not written by an earlier automed (mirrors).
# Another key is left as it is: a later automed's record (one whose state this code would misread has another
# state_version).
_KEYS: dict[str, tuple[Any, str, bool]] = {
    "dataset": (str, "the dataset's place, text", True),
    "options": (dict[str, Any], "the sweep's options, an object", True),
    "space": (dict[str, Any], "the search space, an object", True),
    "base_config": (dict[str, Any], "the base training config, an object", True),
    "stages": (dict[str, bool | str], "the stages run, an object of true or a note (text) each", True),
    "automed_version": (str, "the automed that started it, text", False),
    "mirrors": (Mirrors, "the mirror set of TTA, 'all' or 'even'", False),
    "uri": (str | None, "the MLflow store, text or null", False),
    "sweep_run_id": (str | None, "the sweep's MLflow run id, text or null", False),
    "experiment": (str, "the MLflow experiment, text", False),
    "fold_budget_s": (float | None, "a fold's seconds, a number or null", False),
    "timing": (dict[str, float], "each stage's seconds, an object of numbers", False),
    "concurrency": (int, "the trials run at once, a whole number", False),
    "verdict": (str, "the verdict, text", False),
}
_WITH_RUN = ("uri", "experiment")  # what finds the sweep's MLflow run, once sweep_run_id is set


def new_state(
    dataset: str, opts: SweepOptions, space: SearchSpace, base: TrainConfig, mirrors: str
) -> dict[str, Any]:
    """A new sweep's ``sweep.json``: its layout and state versions, the automed that starts it, its dataset's place,
    options (without the store's credentials; the space's and grid's files by their absolute place, as a resume may
    run from another folder), search space, base config and TTA mirror set (how trials validate and predict)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "automed_version": __version__,
        "state_version": STATE_VERSION,  # a resume of another sweep state is refused (read_state)
        "dataset": dataset,
        "options": {
            **asdict(opts),
            "tracking_uri": opts.tracking_uri and strip_credentials(opts.tracking_uri),
            "space": opts.space and str(Path(opts.space).resolve()),
            "grid": opts.grid and str(Path(opts.grid).resolve()),
        },
        "space": space.model_dump(mode="json"),
        "base_config": base.model_dump(mode="json"),
        "mirrors": mirrors,
        "stages": {},
    }


def read_state(wd: Path) -> tuple[dict[str, Any], SweepOptions]:
    """The sweep work dir ``wd``'s saved state and options, every part of them checked (see the module docstring);
    an :class:`ArtifactError` or :class:`ConfigError` before anything of it is used."""
    sfile = wd / STATE_FILE
    state = _load(sfile, wd)
    _refuse_another_layout(sfile, state, wd)
    refuse_another_state(sfile, state, wd)  # before anything of it is read as this automed's
    problems = _wrong_keys(sfile, state, wd)
    if problems:
        raise ArtifactError(problems, f"cannot resume the sweep in {wd}")
    saved = _known_options(sfile, state, wd)
    problems = _wrong_content(sfile, state, wd)
    if problems:
        raise ArtifactError(problems, f"cannot resume the sweep in {wd}")
    absent = [f.name for f in fields(SweepOptions) if f.name not in saved]
    if absent:
        log.warning(
            "%s: the sweep's options lack %s (added since it started): this automed's defaults taken (%s)",
            sfile,
            ", ".join(absent),
            ", ".join(f"{n}={getattr(SweepOptions(), n)!r}" for n in absent),
        )
    return state, SweepOptions(**saved)


def _fix(wd: Path) -> str:
    return (
        "put back the sweep.json automed wrote (a backup), or resume with the automed that wrote it, or start a new "
        f"sweep with -o NEW_WORKDIR (this one's finished trials stay in {wd / 'trials'})"
    )


def _damaged(sfile: Path, wd: Path, rule: str, value: str) -> ArtifactError:
    return ArtifactError([Problem(str(sfile), rule, value, _fix(wd))], f"cannot resume the sweep in {wd}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _load(sfile: Path, wd: Path) -> dict[str, Any]:
    if not sfile.is_file():
        raise ArtifactError.single(
            sfile,
            "--resume needs a sweep work dir",
            "no sweep.json",
            "start with `automed sweep DATASET -o WORKDIR`",
        )
    try:
        state = json.loads(sfile.read_bytes())
    except ValueError as exc:  # not JSON, or not text (UnicodeDecodeError)
        found = f"{exc.msg} at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise _damaged(sfile, wd, "a sweep's sweep.json must be JSON (truncated or edited?)", found) from exc
    if not isinstance(state, dict):
        rule = "a sweep's sweep.json must hold a JSON object"
        raise _damaged(sfile, wd, rule, f"{type(state).__name__} {_shown(state)}")
    return state


def _refuse_another_layout(sfile: Path, state: dict[str, Any], wd: Path) -> None:
    found = state.get("schema_version", SCHEMA_VERSION)
    if type(found) is int and found == SCHEMA_VERSION:  # not True, nor 1.0
        return
    raise _damaged(
        sfile,
        wd,
        f"sweep.json's schema_version must be {SCHEMA_VERSION}, the layout this automed reads",
        f"{_shown(found)}, started by {_started_by(state)}; this is automed {__version__}",
    )


def refuse_another_state(sfile: Path, state: dict[str, Any], wd: Path) -> None:
    """A sweep is resumed by an automed that reads its sweep state: ``sweep.json``'s ``state_version`` (none: 1, the
    first) must be this code's :data:`~automed.workflow.sweep_stages.STATE_VERSION`. ``automed_version`` is recorded
    and named, not compared: it stays fixed through development while the state changes, and a release need not
    change the state."""
    found = state.get("state_version", 1)
    if type(found) is int and found == STATE_VERSION:  # not True, nor 1.0: another writer's
        return
    raise ConfigError(
        [
            Problem(
                str(sfile),
                "a sweep is resumed by an automed that reads its sweep state (sweep.json's state_version): its "
                "saved options, stages and Tune state are that state's",
                f"{_state_of(state)}, started by {_started_by(state)}; this automed {__version__} reads sweep state "
                f"version {STATE_VERSION}",
                f"finish it with the automed that started it, or start a new sweep with -o NEW_WORKDIR (this "
                f"one's finished trials stay in {wd / 'trials'})",
            )
        ],
        f"cannot resume the sweep in {wd}",
    )


def _state_of(state: dict[str, Any]) -> str:
    if "state_version" not in state:
        return "sweep state version 1 (sweep.json records none: written before it did)"
    return f"sweep state version {state['state_version']!r}"


def _started_by(state: dict[str, Any]) -> str:
    found = state.get("automed_version")
    return f"automed {found}" if found is not None else "an automed before sweep.json recorded its version"


def _wrong_keys(sfile: Path, state: dict[str, Any], wd: Path) -> list[Problem]:
    """Each top-level key a resume needs that is missing, and each one of another type."""
    problems = []
    with_run = state.get("sweep_run_id") is not None
    for key, (kind, what, required) in _KEYS.items():
        if key not in state:
            if required or (with_run and key in _WITH_RUN):
                why = (
                    "a resume reads it"
                    if required
                    else "the sweep's MLflow run (sweep_run_id) is found by it"
                )
                problems.append(
                    Problem(str(sfile), f"sweep.json must hold {key} ({what}): {why}", "none", _fix(wd))
                )
        elif not fits(kind, state[key]):
            value = shown(state[key])
            problems.append(Problem(str(sfile), f"sweep.json's {key} must be {what}", value, _fix(wd)))
    return problems


def _known_options(sfile: Path, state: dict[str, Any], wd: Path) -> dict[str, Any]:
    """The sweep's own options (``sweep.json``'s ``options``), to be read as this automed's :class:`SweepOptions`.
    An option this automed does not know, or a required one missing, is refused: the sweep was started by an automed
    whose options differ, though its state_version (or its missing one) says otherwise. A ``sweep.json`` without
    ``state_version`` whose options all load resumes: everything in it is read by this code as it was written (its
    Tune hooks, pickled with their code, are judged apart: ``sweep_resume``)."""
    saved: dict[str, Any] = state["options"]
    known = {f.name: f for f in fields(SweepOptions)}
    unknown = sorted(set(saved) - set(known))
    absent = [n for n in known if n not in saved]
    required = [n for n in absent if known[n].default is MISSING and known[n].default_factory is MISSING]
    if unknown or required:
        parts = [f"options this automed does not know: {', '.join(unknown)}"] if unknown else []
        parts += [f"options it needs, not saved: {', '.join(required)}"] if required else []
        raise ConfigError(
            [
                Problem(
                    str(sfile),
                    "a resumed sweep's options (sweep.json's options) are read as this automed's sweep options: "
                    "one it does not know would be dropped, one it needs invented",
                    f"{'; '.join(parts)} (started by {_started_by(state)}, {_state_of(state)}; this is automed "
                    f"{__version__})",
                    "finish it with the automed that started it (a development build of the same version number "
                    "may differ), or start a new sweep with -o NEW_WORKDIR (this one's finished trials stay in "
                    f"{wd / 'trials'})",
                )
            ],
            f"cannot resume the sweep in {wd}",
        )
    return saved


def _wrong_content(sfile: Path, state: dict[str, Any], wd: Path) -> list[Problem]:
    """Each saved option of another type than this automed's option, and what of the search space and the base
    config this automed does not read (each as a new sweep would have written it)."""
    kinds = get_type_hints(SweepOptions)
    problems = [
        Problem(
            str(sfile),
            f"sweep.json's option {name} must be {kinds[name]}".replace("<class '", "").replace("'>", ""),
            shown(value),
            _fix(wd),
        )
        for name, value in state["options"].items()
        if not fits(kinds[name], value)
    ]
    for key, model in (("space", SearchSpace), ("base_config", TrainConfig)):
        try:
            load_model(model, state[key], file=str(sfile))
        except ConfigError as exc:
            problems += [
                Problem(
                    str(sfile),
                    f"sweep.json's {key} must be one this automed reads: {p.rule}",
                    p.value,
                    _fix(wd),
                )
                for p in exc.problems
            ]
    return problems
