"""``automed select`` among segmentation trainings: every training and pair compared on CV with postprocessing decided
(:func:`automed.select.selection.select`); a single chosen training then gets its inference settings
(``WORKDIR/inference.json``: postprocessing, and with the measured cost TTA, window step and folds), which the caller
registers again when the training was registered. The choice never rewrites a training's ``model.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automed.evaluate.summary import score
from automed.parallel import Stages
from automed.select.inference_cost import choose, measure
from automed.select.selection import select as compare
from automed.tasks.base import Selected
from automed.train.meta import InferenceChoice, model_digest, read_meta
from automed.workdir import WorkDir, relative_place, with_relative_members


def _choose_for_one(
    workdir: Path,
    out: Path,
    res: dict[str, Any],
    inference: bool,
    latency_target: float | None,
    max_cases: int,
    device: str | None,
    progress: Stages | None,
) -> None:
    """Write the chosen training's ``inference.json`` (postprocessing, then the measured inference cost)."""
    wd = WorkDir(workdir)
    # the training's own settings (model.json), not an earlier choice; that choice stays in force until the new one
    # replaces it (a select killed part-way leaves it intact)
    meta = read_meta(wd.require_model())
    settings = meta.inference.model_copy(update={"postprocessing": res["postprocessing"]})
    cost = None
    if inference:
        table = measure(
            workdir,
            max_cases=max_cases,
            device=device,
            postprocessing=res["postprocessing"],
            progress=progress,
        )
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


def select_segmentation(
    workdirs: list[Path],
    out: Path,
    *,
    inference: bool,
    latency_target: float | None,
    max_cases: int,
    device: str | None,
    progress: Stages | None = None,
) -> Selected:
    """The choice (a single training settled as above), its CV score before postprocessing and the select run's metrics
    (``progress``: its stages shown as they go)."""
    res = compare(workdirs, out, write=False, progress=progress)  # written once, complete, by the caller
    res["chosen"] = with_relative_members(res["chosen"], out)
    members = [Path(m) for m in res["chosen"]["members"]]
    final = score(res["cv_dice_before_postprocessing"]["foreground_mean"])  # (see Selected.score)
    if len(members) == 1:
        _choose_for_one(members[0], out, res, inference, latency_target, max_cases, device, progress)
    metrics: dict[str, float | None] = {
        "cv_dice_fg_mean_chosen": res["cv_dice_before_postprocessing"]["foreground_mean"],
        "cv_dice_fg_mean_postprocessed": res["cv_dice_final"]["foreground_mean"],
    }
    for i, row in enumerate(res["candidates"]):
        metrics[f"candidate_{i}_cv_dice_fg_mean"] = row["foreground_mean"]
    return Selected(res, final, metrics, settled=len(members) == 1)
