"""The first steps of ``automed train``: a new training planned, preprocessed and shaped for its budget
(``start_training``), or a killed or extended one restored from ``train_config.json`` (``restore_training``)."""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path

from automed.artifacts import write_bytes_atomic, write_json_atomic
from automed.data.dataset import Dataset, load_dataset
from automed.data.splits import check_splits, read_splits
from automed.errors import ArtifactError, ConfigError
from automed.plan.preset import load_preset
from automed.plan.schema import Plan
from automed.preprocess.previous_stage import check_first_stage, link_previous, write_previous_stage
from automed.privacy import strip_credentials
from automed.records import TRAIN_CONFIG_VERSION, read_progress, read_train_config, stamped
from automed.tasks.base import Task
from automed.tasks.registry import task_for
from automed.train.config import TrainConfig
from automed.train.schedule import FoldChoice
from automed.workdir import ALL_DATA, WorkDir, relative_place
from automed.workflow.all_data import check_same_model, evidence, inherit_shape
from automed.workflow.existing_folds import check_existing_folds, check_one_kind, check_same_previous
from automed.workflow.fold import validated_rows
from automed.workflow.prepare import (
    choose_configuration,
    dataset_source,
    plan_for_training,
    preprocess,
)
from automed.workflow.resume_checks import previous_place, read_saved_training
from automed.workflow.resume_data import check_same_cases, dataset_now
from automed.workflow.retyped import keep_decisions, recorded_decisions, typed_digest
from automed.workflow.shape import (
    asked_folds,
    auto_folds,
    auto_width,
    plan_screening,
    screening_candidates,
    width_rule_applies,
)
from automed.workflow.train_options import TrainOptions

log = logging.getLogger("automed")


def unstarted_share(budget_s: float, n_folds: int, slots: int) -> float:
    """The time a fold that had not started gets when a budgeted training resumes without ``--budget``: the original
    budget over the waves of ``slots`` folds that ran at once (``--parallel-folds``; 1: one after another)."""
    return budget_s / math.ceil(max(1, n_folds) / max(1, slots))


def recorded_share(wd: Path, configuration: str, folds: list[int], screened: bool) -> float | None:
    """The wall time the highest-numbered fold of ``folds`` that started was given (its ``progress.json``; a fold
    screened on fold 0 had a screening share, not a fold's): what its wave's folds that had not started would have
    got, wherever they ran (one after another, ``--parallel-folds`` or a Ray cluster). None when none recorded one."""
    for fold in sorted(folds, reverse=True):
        p = WorkDir(wd).fold(configuration, fold) / "progress.json"
        if (screened and fold == 0) or not p.is_file():
            continue
        share = read_progress(p).get("budget_s")  # a damaged one: an ArtifactError naming it
        if isinstance(share, int | float) and not isinstance(share, bool) and share > 0:
            return float(share)
    return None


def require_training_workdir(wd: Path) -> None:
    """A clear error, before anything is written or locked there, when ``wd`` is not a training work dir (a dataset
    folder given to ``--resume`` must not get a lock file)."""
    if not WorkDir(wd).train_config.is_file():
        raise ArtifactError.single(
            WorkDir(wd).train_config,
            "--resume/--extend need a training work dir",
            "no train_config.json",
            "start with `automed train DATASET -o WORKDIR`",
        )


def restore_training(
    wd: Path, opts: TrainOptions, dataset: str | Path | None = None
) -> tuple[Dataset, TrainConfig, TrainOptions, float | None]:
    """What ``--resume``/``--extend`` continue: the saved config and options (this call's budget, device, workers)
    and, for folds that had not started, their share of the original budget. A dataset moved since is given by its
    new place (``dataset``): with the cases the training was split on, it is recorded as the work dir's dataset."""
    wdir = WorkDir(wd)
    require_training_workdir(wd)
    saved = read_saved_training(wd)
    kept = {k: v for k, v in saved["options"].items() if k in TrainOptions.__dataclass_fields__}
    new = {
        "budget_s": opts.budget_s,
        "device": opts.device or kept.get("device"),
        "workers": opts.workers,
        "ray_address": opts.ray_address or kept.get("ray_address"),  # a restarted cluster has a new address
        # a cluster's resources may differ too (typed: these, even the default's values; else the saved ones)
        "fold_resources": opts.fold_resources
        if opts.fold_resources is not None
        else kept.get("fold_resources"),
        # the same store (checked), typed with its credentials, which train_config.json never keeps
        "tracking_uri": opts.tracking_uri or kept.get("tracking_uri"),
    }
    restored = TrainOptions(**{**kept, **new})
    if (previous := previous_place(wd, saved["options"])) is not None:  # a cascade moved with its first stage
        restored = replace(restored, previous_workdir=str(previous))
    config = TrainConfig.model_validate(saved["config"])
    fallback = None
    if kept.get("budget_s") and not opts.budget_s:
        folds = list(restored.only_folds) if restored.only_folds else list(range(restored.folds))
        # with no started fold to read it from, a Ray cluster's concurrency is not known: one fold after another
        slots = 1 if restored.ray_address or os.environ.get("RAY_ADDRESS") else restored.parallel_folds
        fallback = recorded_share(
            wd, config.configuration, folds, restored.screen is not None
        ) or unstarted_share(kept["budget_s"], len(folds), slots)
    place = dataset_now(saved["dataset"], dataset, f"automed train NEW_PLACE --resume {wdir.root}")
    ds = load_dataset(place, restored.task)
    check_same_cases(ds, wdir)
    if wdir.previous_link.is_file():  # a cascade goes on only over the first-stage model it began on
        check_first_stage(wd)
    if dataset_source(ds) != saved["dataset"]:
        log.warning("the dataset moved from %s to %s: recorded in %s", saved["dataset"], dataset_source(ds),
                    wdir.train_config.name)  # fmt: skip
        write_json_atomic(wdir.train_config, {**saved, "dataset": dataset_source(ds)})
    return ds, config, restored, fallback


def _fit_folds(ds: Dataset, opts: TrainOptions) -> TrainOptions:
    """Before any work: more folds than subject groups is as many folds as groups (said, and recorded so), and
    ``--fold K`` must name a fold of that split (it crashed after planning, and every resume crashed again)."""
    groups = len({c.subject for c in ds.cases})
    k = min(opts.folds, groups)
    bad = [f for f in opts.only_folds or [] if f != ALL_DATA and f >= k]
    if bad:
        raise ConfigError.single(
            "--fold", f"--fold names a fold of the {k}-fold split ({groups} subject group(s): folds 0 to {k - 1})",
            f"--fold {bad}", f"pick folds below {k}" + (f", or ask for --folds {groups} or fewer" if k < opts.folds else ""),
        )  # fmt: skip
    if opts.folds > groups >= 2:
        if opts.folds_auto:  # nobody asked for a number: --folds auto (a --budget) splits five ways
            log.warning("--folds auto splits the cases %d ways, but the dataset has %d subject group(s) (the cases "
                        "of one PatientID, or one slide's patches, stay in one fold): %d folds", opts.folds, groups,
                        groups)  # fmt: skip
        else:
            log.warning(
                "%d folds asked, but the dataset has %d subject group(s): %d folds",
                opts.folds,
                groups,
                groups,
            )
        return replace(opts, folds=groups, folds_asked=opts.folds)
    return opts


def start_training(
    dataset: str | Path,
    wd: Path,
    config: TrainConfig,
    opts: TrainOptions,
    show_progress: bool,
    deadline: float | None,
) -> tuple[Dataset, TrainConfig, TrainOptions]:
    """Plan and preprocess a new training, decide its folds (``--folds auto``); record its config and options."""
    ds = load_dataset(dataset, opts.task)
    as_typed = opts
    opts = _fit_folds(ds, opts)
    wdir = WorkDir(wd)
    earlier = {p: p.read_bytes() if p.is_file() else None for p in (wdir.fingerprint, wdir.plan)}
    planned, preset = plan_for_training(
        ds, wd, opts.device, opts.preset, opts.workers, show_progress, opts.max_voxels, opts.folds
    )
    unchanged = all(b is not None and p.read_bytes() == b for p, b in earlier.items())
    typed = typed_digest(dataset_source(ds), config, as_typed, load_preset(preset).budget)
    again = recorded_decisions(wdir, typed, unchanged)  # the same command again: no second probe
    with _restored_if_refused(earlier, wdir):
        config = choose_configuration(config, planned, opts.auto_configuration, opts.previous_workdir)
    if again is not None:
        config, opts = keep_decisions(again, opts)
    if opts.previous_workdir and opts.only_folds == [ALL_DATA]:
        # a cascade on all data takes its first stage's split (each case's first-stage input is the prediction of
        # the first-stage fold that held it out): no --folds to match by hand
        first = WorkDir(Path(opts.previous_workdir)).splits
        if first.is_file():
            opts = replace(opts, folds=int(read_splits(first)["n_folds"]))
    ignored = task_for(planned.task_type, ds.source).ignored_settings
    default = TrainConfig()
    if unused := sorted(k for k in ignored if getattr(config, k) != getattr(default, k)):
        log.warning("the training config sets %s: a %s model does not use it (ignored)", ", ".join(unused),
                    planned.task_type)  # fmt: skip
    config = _earlier_width(wdir, config, opts)
    with _restored_if_refused(earlier, wdir):
        # --folds all --cv W: W's network (its width when the plan's), before the budget's width rule
        config = inherit_shape(opts.cv_workdir, config, planned)
        check_splits(ds, wdir.splits, opts.folds)
        check_one_kind(wd, config, opts.only_folds)  # before the folds' configs: the clearer refusal
        check_existing_folds(wd, planned, config, open_width=True)  # the budget may still narrow it
        evidence(opts.cv_workdir, planned)  # --cv is checked before any training
    shaped = opts.folds_auto and deadline is not None and opts.only_folds is None
    free = shaped and opts.auto_configuration and not opts.previous_workdir
    names = screening_candidates(planned, preset) if free else []
    if again is not None and opts.screen:
        names = list(opts.screen["configurations"])
    configs = [config.model_copy(update={"configuration": n}) for n in names] or [config]
    preprocess(
        ds,
        wd,
        configurations=[c.configuration for c in configs],
        folds=opts.folds,
        workers=opts.workers,
        show_progress=show_progress,
        train_configs=configs,
    )
    if opts.previous_workdir:  # a cascade: the first stage's out-of-fold predictions as extra inputs
        if wdir.previous_link.is_file():
            earlier[wdir.previous_link] = wdir.previous_link.read_bytes()
        with _restored_if_refused(earlier, wdir):
            link = link_previous(wd, Path(opts.previous_workdir), planned, config.configuration)
            check_same_previous(wdir, config, earlier.get(wdir.previous_link), link)
        write_previous_stage(wd, planned, config.configuration, show_progress)
    if again is not None:
        pass  # decided by the first run of this command (recorded_decisions)
    elif shaped and deadline is not None:
        task = task_for(planned.task_type, ds.source)
        screen = None
        if names:
            screen = plan_screening(
                wd, planned, config, task, names,
                preset=preset, deadline=deadline, device=opts.device, workers=opts.workers,
            )  # fmt: skip
        if screen is not None and screen.configurations:
            opts = replace(
                opts,
                only_folds=list(range(screen.folds)),
                folds_reason=screen.reason,
                screen={k: getattr(screen, k) for k in ("configurations", "share_s", "folds", "reason")},
            )
        else:
            probed = screen.steps.get(config.configuration) if screen is not None else None  # not timed twice
            choice = auto_folds(
                wd, planned, config, task, preset=preset, deadline=deadline, device=opts.device, workers=opts.workers,
                step_s=probed,
            )  # fmt: skip
            why = f"{screen.reason}; {choice.reason}" if screen is not None else choice.reason
            config, why = _narrowed(wd, planned, config, task, choice, why, opts, preset, deadline)
            opts = replace(opts, only_folds=list(range(choice.folds)), folds_reason=why)
    elif deadline is not None and width_rule_applies(planned, config, preset):
        # folds fixed by the user (--folds N, --fold, --folds all): the budget still decides the width
        task = task_for(planned.task_type, ds.source)
        n_models = len(opts.only_folds) if opts.only_folds is not None else opts.folds
        asked = asked_folds(
            wd, planned, config, task, n_models,
            deadline=deadline, device=opts.device, workers=opts.workers,
        )  # fmt: skip
        narrow, why = _narrowed(wd, planned, config, task, asked, asked.reason, opts, preset, deadline)
        if narrow is not config:  # the reason is recorded only when the budget changed the width
            config, opts = narrow, replace(opts, folds_reason=why)
    # the resources the folds ask of Ray are recorded as used (a resume that types none keeps them)
    opts = replace(
        opts, validation_mirrors=load_preset(preset).inference.mirrors, fold_resources=opts.resources()
    )
    with _restored_if_refused(earlier, wdir):  # the config is final now: finished folds must be of this one
        check_existing_folds(wd, planned, config)
        check_same_model(opts.cv_workdir, planned, config)
    write_json_atomic(
        WorkDir(wd).train_config,
        stamped(
            {
                "dataset": dataset_source(ds),
                "typed": typed,  # the command as typed: typed again, it keeps these decisions
                "config": config.model_dump(mode="json"),
                "options": {
                    **asdict(opts),
                    "preset": preset,
                    "tracking_uri": opts.tracking_uri and strip_credentials(opts.tracking_uri),
                    # a project moved or copied whole: --resume finds the first stage here (previous_place)
                    **(
                        {"previous_relative": relative_place(Path(opts.previous_workdir), wd)}
                        if opts.previous_workdir
                        else {}
                    ),
                },
            },
            TRAIN_CONFIG_VERSION,
        ),
    )
    return ds, config, opts


def _narrowed(
    wd: Path,
    plan: Plan,
    config: TrainConfig,
    task: Task,
    folds: FoldChoice,
    why: str,
    opts: TrainOptions,
    preset: str,
    deadline: float,
) -> tuple[TrainConfig, str]:
    """``config`` at the width the budget gives ``folds``' models (``shape.auto_width``) and ``why`` with its
    reason; ``config`` itself when the width stays."""
    width = auto_width(
        wd, plan, config, task, folds,
        preset=preset, deadline=deadline, device=opts.device, workers=opts.workers,
    )  # fmt: skip
    if width is None:
        return config, why
    return config.model_copy(update={"base_features": width.base_features}), f"{why}; {width.reason}"


@contextmanager
def _restored_if_refused(earlier: dict[Path, bytes | None], wdir: WorkDir) -> Iterator[None]:
    """A training refused inside leaves ``earlier``'s files (fingerprint, plan) as the earlier training wrote them,
    or absent where there were none (a new work dir refused for its --cv keeps no plan of its own)."""
    try:
        yield
    except (ArtifactError, ConfigError):
        for path, content in earlier.items():
            if content is None:
                path.unlink(missing_ok=True)
            else:
                write_bytes_atomic(path, content)
        if earlier.get(wdir.fingerprint, b"") is None:  # a new work dir: all that it holds is this run's
            wdir.splits.unlink(missing_ok=True)
            wdir.previous_link.unlink(missing_ok=True)
            for folder in (wdir.preprocessed, wdir.previous_stage):
                shutil.rmtree(folder, ignore_errors=True)
        raise


def _earlier_width(wdir: WorkDir, config: TrainConfig, opts: TrainOptions) -> TrainConfig:
    """``--fold K`` into a work dir whose earlier folds the budget narrowed: the same width (each command's own
    timing could choose another, and the folds of one model must match), unless the config sets one."""
    if (
        opts.only_folds is None
        or opts.folds_auto
        or config.base_features is not None
        or not wdir.train_config.is_file()
    ):
        return config
    before = TrainConfig.model_validate(read_train_config(wdir.train_config)["config"])
    if before.configuration != config.configuration or before.base_features is None:
        return config
    return config.model_copy(update={"base_features": before.base_features})


def fold_list(wd: Path, config: TrainConfig, opts: TrainOptions, n_folds: int, extend: int) -> list[int]:
    """The folds a training runs and concludes with: those asked, and with ``--fold K`` the folds of this work dir
    that finished before (folds trained one command at a time, nnU-Net's way: the model and its CV take them all;
    ``--resume --extend N`` extends them all, not only the last command's ``--fold``)."""
    folds = opts.only_folds if opts.only_folds is not None else list(range(n_folds))
    if opts.only_folds is None or opts.folds_auto or ALL_DATA in folds:
        return folds
    before = [
        k
        for k in range(n_folds)
        if k not in folds
        and validated_rows(
            WorkDir(wd).fold(config.configuration, k), opts.validation_tta, opts.validation_mirrors
        )
        is not None
    ]
    if before:
        log.info("fold(s) %s of this work dir finished before: the model and its CV include them", before)
    return sorted([*folds, *before])
