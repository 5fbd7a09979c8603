"""Resuming a sweep (``automed sweep --resume W``): its saved state and options, what this call may change, and a
dataset moved since the sweep began."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from automed.artifacts import write_json_atomic
from automed.data.dataset import load_dataset
from automed.errors import ConfigError, Problem
from automed.plan.schema import Plan
from automed.privacy import strip_credentials
from automed.records import read_train_config
from automed.search.ray_hooks import hooks_of_another_automed
from automed.tracking import resolve_uri
from automed.train.config import TrainConfig
from automed.workdir import WorkDir
from automed.workflow.prepare import choose_configuration, dataset_source
from automed.workflow.resume_data import check_same_cases, dataset_now
from automed.workflow.sweep_stages import STATE_FILE, SweepOptions, check_gpus
from automed.workflow.sweep_state import read_state

log = logging.getLogger(__name__)

# what a resumed sweep takes from this call; every other option is the sweep's own (sweep.json)
_RESUME_OPTIONS = ("budget_s", "ray_address", "tracking_uri", "device", "workers")
_SEARCH_OPTIONS = ("space", "grid")  # compared by the content they load, not as typed


def resume_state(
    wd: Path,
    opts: SweepOptions,
    dataset: str | Path | None = None,
    asked: set[str] | None = None,
    base_config: TrainConfig | None = None,
) -> tuple[dict[str, Any], SweepOptions]:
    """A sweep work dir's saved state and options (this call's budget, address, store, device and workers win);
    another dataset, base config (``--config``) or value of a sweep option is refused (it would be silently
    ignored), and the cases the sweep was split on must still be the dataset's."""
    sfile = wd / STATE_FILE
    state, saved = read_state(wd)  # every part checked before any of it is used
    default = SweepOptions()
    problems = [
        Problem(
            str(sfile),
            f"a resumed sweep keeps its own {f.name} (only --budget, --ray-address, --tracking-uri, --device and "
            "--workers apply to a resume)",
            f"{getattr(opts, f.name)!r} asked, {getattr(saved, f.name)!r} saved",
            "drop that option, or start a new sweep with -o NEW_WORKDIR",
        )
        for f in fields(SweepOptions)
        if f.name not in (*_RESUME_OPTIONS, *_SEARCH_OPTIONS)
        and (f.name in asked if asked is not None else getattr(opts, f.name) != getattr(default, f.name))
        and getattr(opts, f.name) != getattr(saved, f.name)
    ]
    saved_place = Path(state["dataset"]).exists()  # a moved dataset is given by its new place (cases checked)
    if saved_place and dataset is not None and dataset_source(load_dataset(dataset)) != state["dataset"]:
        problems.append(
            Problem(
                str(sfile),
                "a resumed sweep keeps its dataset",
                f"{dataset} asked, {state['dataset']} saved",
                "drop DATASET (the sweep knows it), or start a new sweep with -o NEW_WORKDIR",
            )
        )
    for name in _SEARCH_OPTIONS:
        if getattr(opts, name) is not None:
            problems += _other_space(sfile, state, name, str(getattr(opts, name)), getattr(saved, name))
    if base_config is not None:
        problems += _other_base_config(sfile, state, base_config)
    problems += _other_store(sfile, state, opts.tracking_uri)
    if saved.engine == "ray":
        problems += _old_tune_hooks(wd, state)
    if problems:
        raise ConfigError(problems, f"cannot resume the sweep in {wd}")
    ds = load_dataset(dataset_now(state["dataset"], dataset, f"automed sweep NEW_PLACE --resume {wd}"))
    check_same_cases(ds, WorkDir(wd))
    if dataset_source(ds) != state["dataset"]:
        state = _record_moved(wd, state, dataset_source(ds))
    opts = replace(
        saved,
        budget_s=opts.budget_s,
        ray_address=opts.ray_address or saved.ray_address,
        tracking_uri=opts.tracking_uri or state.get("uri") or saved.tracking_uri,  # as resolved when it began
        device=opts.device or saved.device,
        workers=opts.workers if opts.workers is not None else saved.workers,
    )
    check_gpus(opts)  # resumed on another machine, or without the cluster it began on
    if state.get("sweep_run_id") and strip_credentials(resolve_uri(opts.tracking_uri)) != state["uri"]:
        state = _record_store(wd, state, str(opts.tracking_uri))  # a moved store file, found at its new place
    return state, opts


def _other_space(
    sfile: Path, state: dict[str, Any], name: str, given: str, saved: str | None
) -> list[Problem]:
    """A ``--space`` (``--grid``) given to a resume must load to the space the sweep searches (``sweep.json``'s
    ``space``): the same file by another path, or a copy, is taken; another space, or a file not there, is not."""
    from automed.search.space import load_space
    from automed.workflow.sweep_stages import grid_space

    rule = f"a resumed sweep keeps its own search space (--{name})"
    fix = f"drop --{name}, or start a new sweep with -o NEW_WORKDIR"
    if saved is None:
        other = "grid" if name == "space" else "space"
        return [Problem(str(sfile), rule, f"{given} asked, the sweep searches a --{other}", fix)]
    try:
        space = load_space(given) if name == "space" else grid_space(given)
    except ConfigError as exc:
        return list(exc.problems)
    now, was = space.model_dump(mode="json"), dict(state["space"])
    if (
        name == "grid"
    ):  # a grid's space is named after its file: the same strategy under another name is the same
        now, was = ({k: v for k, v in d.items() if k not in ("name", "description")} for d in (now, was))
    if now == was:
        return []
    return [Problem(str(sfile), rule, f"{given} asked: not the space the sweep began with ({saved})", fix)]


def _other_base_config(sfile: Path, state: dict[str, Any], given: TrainConfig) -> list[Problem]:
    """A ``--config`` given to a resume must have the content the sweep began with (its configuration chosen on
    the sweep's plan, as a new sweep chose it): another one would be ignored."""
    saved = state["base_config"]
    with contextlib.suppress(ConfigError):  # a configuration the plan lacks: it differs, as said below
        given = choose_configuration(given, Plan.load(sfile.parent / "plan.json"), auto=True)
    now = given.model_dump(mode="json")
    differ = [k for k in now if now[k] != saved.get(k)]
    if not differ:
        return []
    return [
        Problem(
            str(sfile),
            "a resumed sweep keeps its own base config (--config)",
            "; ".join(f"{k}: {now[k]} asked, {saved.get(k)} saved" for k in differ),
            "drop --config (the sweep keeps the config it began with), or start a new sweep with -o NEW_WORKDIR",
        )
    ]


def _other_store(sfile: Path, state: dict[str, Any], asked: str | None) -> list[Problem]:
    """A resumed sweep logs into the MLflow store its runs are in (another store lacks the sweep's run: MLflow failed
    after creating it). The same store, named otherwise or with credentials, is taken; so is a SQLite store file moved
    since, at its new place, when the sweep's run is in it. Nothing is created to find out."""
    saved, run = state.get("uri"), state.get("sweep_run_id")
    if not saved or not run:
        return []  # nothing logged yet: any store
    if asked is None:
        path = _sqlite_file(saved)
        if path is None or path.is_file():
            return []
        return [
            Problem(
                str(sfile),
                "the sweep's store is not where it was (a resumed sweep logs into the store its runs are in)",
                f"{saved} saved, no such file",
                "give the store file's new place: --tracking-uri sqlite:///NEW/PLACE.db",
            )
        ]
    uri = resolve_uri(asked)
    if strip_credentials(uri) == saved or _holds_run(uri, run):
        return []
    return [
        Problem(
            str(sfile),
            "a resumed sweep logs into the store its runs are in",
            f"{strip_credentials(uri)} asked (the sweep's run is not in it), {saved} saved",
            "drop --tracking-uri, or give the same store (a SQLite file moved since: its new place)",
        )
    ]


def _old_tune_hooks(wd: Path, state: dict[str, Any]) -> list[Problem]:
    """A Ray stage the resume would restore (every one under ``ray/`` but a finished search) whose saved Tune state
    holds hooks with an older automed's code: Tune would run them in place of this automed's, without the fixes
    made since, or fail to load them (:func:`~automed.search.ray_hooks.hooks_of_another_automed`)."""
    finished = {"search"} if state.get("stages", {}).get("search") else set()
    ray_dir = wd / "ray"
    stages = (
        sorted(p for p in ray_dir.iterdir() if p.is_dir() and p.name not in finished)
        if ray_dir.is_dir()
        else []
    )
    return [
        Problem(
            str(stage / "tuner.pkl"),
            "a resumed sweep runs this automed's Tune hooks (scheduler, searcher, time budget, progress): an "
            "automed before they were module-level classes saved them with its own code in the stage's Tune state, "
            "which the resume would run instead",
            f"stage {stage.name}: {', '.join(hooks)} saved with their code",
            f"start a new sweep with -o NEW_WORKDIR (this one's finished trials stay in {wd / 'trials'}), or "
            "finish this one with the automed that started it",
        )
        for stage in stages
        if (hooks := hooks_of_another_automed(stage))
    ]


def _sqlite_file(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///") :].split("?", 1)[0]) if uri.startswith("sqlite:///") else None


def _holds_run(uri: str, run_id: str) -> bool:
    """Whether a SQLite store file holds the run (read only: a file that is not there is not made)."""
    path = _sqlite_file(uri)
    if path is None or not path.is_file():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            return db.execute("SELECT 1 FROM runs WHERE run_uuid = ?", (run_id,)).fetchone() is not None
    except sqlite3.Error:
        return False


def _record_store(wd: Path, state: dict[str, Any], asked: str) -> dict[str, Any]:
    """A store moved since, given at its new place, is recorded (a later resume needs no --tracking-uri)."""
    uri = strip_credentials(resolve_uri(asked))
    log.warning("the sweep's MLflow store moved from %s to %s: recorded in %s", state["uri"], uri, STATE_FILE)
    state = {**state, "uri": uri, "options": {**state["options"], "tracking_uri": uri}}
    write_json_atomic(wd / STATE_FILE, state)
    return state


def _record_moved(wd: Path, state: dict[str, Any], place: str) -> dict[str, Any]:
    """A sweep resumed from its dataset's new place records it: in ``sweep.json`` and in the finished trials'
    ``train_config.json`` (select, export and explain of a trial read the dataset there)."""
    log.warning("the dataset moved from %s to %s: recorded in %s", state["dataset"], place, STATE_FILE)
    for cfg in sorted((wd / "trials").glob("*/train_config.json")):
        saved = read_train_config(cfg)
        if saved.get("dataset") == state["dataset"]:
            write_json_atomic(cfg, {**saved, "dataset": place})
    state = {**state, "dataset": place}
    write_json_atomic(wd / STATE_FILE, state)
    return state
