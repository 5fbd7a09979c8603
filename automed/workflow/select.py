"""``automed select``: compare trainings and their pairs on CV, decide postprocessing and (for one chosen training)
the inference settings, record the choice and register it.

The choice never rewrites a training's ``model.json``: a single chosen training gets ``WORKDIR/inference.json``
(postprocessing, TTA, window step, folds, with the evidence), which predict, export and registration apply; a chosen
pair gets ``OUT/model_bundle`` (registered as a new version when its members were registered).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automed.artifacts import inside, write_json_atomic
from automed.errors import ArtifactError, ConfigError
from automed.evaluate.summary import score
from automed.select.inference_cost import choose, measure
from automed.select.register import registered_version, reregister
from automed.select.selection import SELECTION_FILE
from automed.select.selection import select as compare
from automed.train.meta import InferenceChoice, model_digest, read_meta
from automed.workdir import WorkDir, refuse_unfinished, relative_place, with_relative_members
from automed.workflow.choice import open_select_run, record_choice
from automed.workflow.disclosure import redactor_for
from automed.workflow.select_image import select_image_level


def _choose_for_one(
    workdir: Path,
    out: Path,
    res: dict[str, Any],
    inference: bool,
    latency_target: float | None,
    max_cases: int,
    device: str | None,
) -> None:
    """Write the chosen training's ``inference.json`` (postprocessing, then the measured inference cost)."""
    wd = WorkDir(workdir)
    # the training's own settings (model.json), not an earlier choice; that choice stays in force until the new one
    # replaces it (a select killed part-way leaves it intact)
    meta = read_meta(wd.require_model())
    settings = meta.inference.model_copy(update={"postprocessing": res["postprocessing"]})
    cost = None
    if inference:
        table = measure(workdir, max_cases=max_cases, device=device, postprocessing=res["postprocessing"])
        choice = choose(table, len(meta.folds), latency_target)
        settings = settings.model_copy(
            update={
                "tta": meta.config.mirror_tta(choice["tta"]),
                "mirrors": choice["mirrors"],
                "step": choice["step"],
                "folds": meta.folds[: choice["folds"]],
            }
        )
        cost = res["inference_cost"] = {"table": table, "choice": choice}
    InferenceChoice(
        selection=str(out.resolve()),
        relative=relative_place(out, workdir),
        inference=settings,
        decisions=res["decisions"],
        inference_cost=cost,
        model_digest=model_digest(wd.model),
    ).save(wd.choice)


def _check_output(out: Path, workdirs: list[Path]) -> None:
    """The selection folder is new, empty or an earlier selection (``selection.json``); never a training work dir or
    a folder holding one, never a folder of the user's (a dataset)."""
    res = out.expanduser().resolve()
    for w in workdirs:
        if inside(w.expanduser().resolve(), res):
            raise ArtifactError.single(out, "a selection folder must not be, or hold, a training it compares",
                                       f"holds {w.name}", "choose a new folder, e.g. beside the work dirs")  # fmt: skip
    if res.is_dir() and any(res.iterdir()) and not (res / SELECTION_FILE).is_file():
        raise ArtifactError.single(out, "select writes into a new folder or an earlier selection",
                                   "a non-empty folder without selection.json", "choose a new folder")  # fmt: skip


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
) -> dict[str, Any]:
    """Compare trainings (and their pairs) on CV, decide postprocessing and (for a single chosen training) the
    inference settings, log the evidence to MLflow and register the choice: a single training again with its
    settings, a pair as a new ensemble version (``OUT/model_bundle``; ``automed predict OUT`` runs it too)."""
    if latency_target is not None and not latency_target > 0:
        raise ConfigError.single("--latency-target", "a latency target is a positive number of seconds per case",
                                 str(latency_target), "pass e.g. --latency-target 2")  # fmt: skip
    out = Path(output)
    for w in workdirs:
        refuse_unfinished(Path(w))
    tasks = {read_meta(WorkDir(Path(w)).require_model()).task for w in workdirs}  # before anything is written
    _check_output(out, [Path(w) for w in workdirs])
    redactor = redactor_for([Path(w) for w in workdirs], keep_case_ids=keep_case_ids, outputs=[out])
    if len(tasks) > 1:
        raise ArtifactError.single(
            workdirs[0],
            "trainings compared on CV must be of one task",
            sorted(tasks),
            "select them separately",
        )
    if tasks != {"segmentation"}:
        return select_image_level([Path(w) for w in workdirs], out, tracking_uri, redactor)
    res = compare([Path(w) for w in workdirs], out, write=False)  # written once, complete, at the end
    res["chosen"] = with_relative_members(res["chosen"], out)
    members = [Path(m) for m in res["chosen"]["members"]]
    final = score(res["cv_dice_final"]["foreground_mean"])
    if len(members) == 1:
        _choose_for_one(members[0], out, res, inference, latency_target, max_cases, device)
        registered = registered_version(members[0])
        # the choice is in force now: its record must not wait on MLflow (completed below)
        out.mkdir(parents=True, exist_ok=True)
        pending = (
            {"registered": {"state": "pending: the registry had not answered yet"}} if registered else {}
        )
        write_json_atomic(out / SELECTION_FILE, {**res, **pending})
        if registered:  # the champion applies what was chosen: register again with it
            res["registered"] = reregister(members[0], final, redactor)
    tracker, run = open_select_run(
        [Path(w) for w in workdirs], res["chosen"]["candidate"], tracking_uri, redactor
    )
    metrics: dict[str, float | None] = {
        "cv_dice_fg_mean_chosen": res["cv_dice_before_postprocessing"]["foreground_mean"],
        "cv_dice_fg_mean_postprocessed": res["cv_dice_final"]["foreground_mean"],
    }
    for i, row in enumerate(res["candidates"]):
        metrics[f"candidate_{i}_cv_dice_fg_mean"] = row["foreground_mean"]
    tracker.log_metrics(run, metrics)
    return record_choice(res, out, final, tracker, run)
