"""``automed select``: compare trainings and their pairs on CV, decide postprocessing and (for one chosen training)
the inference settings, record the choice and register it.

The comparison and what it settles are the task's (``Task.select``: :mod:`automed.select.segmentation`,
:mod:`automed.select.image_level`). The choice never rewrites a training's ``model.json``: a single chosen
segmentation training gets ``WORKDIR/inference.json`` (postprocessing, TTA, window step, folds, with the evidence),
which predict, export and registration apply; a chosen pair gets ``OUT/model_bundle`` (registered as a new version
when its members were registered).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from automed.artifacts import claim_output, write_json_atomic
from automed.errors import ArtifactError, ConfigError
from automed.parallel import Stages
from automed.privacy import Redactor
from automed.select.names import candidate_names
from automed.select.register import registered_version, reregister
from automed.select.selection import SELECTION_FILE
from automed.tasks.base import Selected
from automed.tasks.registry import task_for
from automed.train.meta import read_meta
from automed.workdir import WorkDir, refuse_unfinished
from automed.workflow.choice import open_select_run, record_choice
from automed.workflow.disclosure import redactor_for
from automed.workflow.one_dataset import refuse_other_datasets

log = logging.getLogger("automed")


def _check_output(out: Path, workdirs: list[Path]) -> None:
    """The selection folder is new, empty or an earlier selection (``selection.json``); never a training work dir or
    a folder holding one, never a folder of the user's (a dataset), nor inside an automed output that a later run
    replaces whole (an export, a cube, a report: the selection would go with it)."""
    # earlier=True: whether a non-empty folder may be written into is select's own rule (below), not the marker's
    res = claim_output(out, "selection", protected=workdirs, earlier=True)
    if res.is_dir() and any(res.iterdir()) and not (res / SELECTION_FILE).is_file():
        raise ArtifactError.single(out, "select writes into a new folder or an earlier selection",
                                   "a non-empty folder without selection.json", "choose a new folder")  # fmt: skip


def _check_trainings(workdirs: list[Path]) -> None:
    """Each training once (the same folder twice, by another spelling or a link, was compared with itself as
    ``w-2`` and paired with itself), and a selection folder is not taken for a training (its error had said to train
    into it)."""
    seen: dict[Path, Path] = {}
    for w in workdirs:
        res = w.expanduser().resolve()
        if res in seen:
            raise ConfigError.single(
                w, "select compares different trainings, each given once", f"the same folder as {seen[res]}",
                "pass each training work dir once (two or more of them)",
            )  # fmt: skip
        seen[res] = w
        if (res / SELECTION_FILE).is_file() and not (res / "model.json").is_file():
            raise ConfigError.single(
                w, "select compares training work dirs", f"a selection folder ({SELECTION_FILE})",
                "pass the training work dirs it compared (its candidates), or predict, export or package the "
                "selection folder as it is",
            )  # fmt: skip


def _register_settled(sel: Selected, out: Path, redactor: Redactor) -> None:
    """A single chosen training whose inference settings the choice changed is registered again with them (when it
    was registered); the choice is in force already, so its record is written first, the registration pending."""
    member = Path(sel.record["chosen"]["members"][0])
    registered = registered_version(member)
    out.mkdir(parents=True, exist_ok=True)
    pending = {"registered": {"state": "pending: the registry had not answered yet"}} if registered else {}
    write_json_atomic(out / SELECTION_FILE, {**sel.record, **pending})
    if registered:  # the champion applies what was chosen: register again with it
        sel.record["registered"] = reregister(member, sel.score, redactor)


def select(
    workdirs: list[str | Path],
    output: str | Path,
    *,
    tracking_uri: str | None = None,
    inference: bool = True,
    latency_target: float | None = None,
    max_cases: int = 5,
    device: str | None = None,
    keep_case_ids: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Compare trainings (and their pairs) on CV, decide postprocessing and (for a single chosen training) the
    inference settings, log the evidence to MLflow and register the choice: a single training again with its
    settings, a pair as a new ensemble version (``OUT/model_bundle``; ``automed predict OUT`` runs it too).
    ``show_progress``: its stages (scoring, class bias, largest components, inference timing) as they go."""
    if latency_target is not None and not latency_target > 0:
        raise ConfigError.single("--latency-target", "a latency target is a positive number of seconds per case",
                                 str(latency_target), "pass e.g. --latency-target 2")  # fmt: skip
    out = Path(output)
    _check_trainings([Path(w) for w in workdirs])  # a selection folder passed as a training: said as such
    _check_output(out, [Path(w) for w in workdirs])
    for w in workdirs:
        refuse_unfinished(Path(w))
    tasks = {read_meta(WorkDir(Path(w)).require_model()).task for w in workdirs}  # before anything is written
    redactor = redactor_for([Path(w) for w in workdirs], keep_case_ids=keep_case_ids, outputs=[out])
    if len(tasks) > 1:
        raise ArtifactError.single(
            workdirs[0],
            "trainings compared on CV must be of one task",
            sorted(tasks),
            "select them separately",
        )
    task = task_for(tasks.pop(), workdirs[0])
    paths = [Path(w) for w in workdirs]
    # a case ID the trainings share is one image with one target (the rule report applies)
    refuse_other_datasets(paths, candidate_names(paths), verb="select")
    sel = task.select(
        [Path(w) for w in workdirs],
        out,
        inference=inference,
        latency_target=latency_target,
        max_cases=max_cases,
        device=device,
        progress=Stages(show=show_progress),
    )
    if sel.settled:
        _register_settled(sel, out, redactor)
    tracker, run = open_select_run(
        [Path(w) for w in workdirs], sel.record["chosen"]["candidate"], tracking_uri, redactor
    )
    tracker.log_metrics(run, sel.metrics)
    res = record_choice(sel.record, out, sel.score, tracker, run)
    members = [Path(m) for m in res["chosen"]["members"]]
    if not res.get("registered") and not any(registered_version(m) for m in members):  # it had said nothing
        log.warning("the choice is not registered: no training it chose was registered (trained with --no-register, "
                    "or sweep trials: the sweep registers its own choice); `automed predict %s` runs it", out)  # fmt: skip
    return res
