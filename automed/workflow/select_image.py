"""``automed select`` for classification and regression trainings: compare them and their pairs on CV
(:func:`automed.select.image_level.compare_image_level`), log the evidence, and make the choice usable: a single
training is the model as it is (nothing to postprocess, no ``inference.json``); a chosen pair gets
``OUT/model_bundle`` (registered as a new version when its members were registered), so ``automed predict OUT`` runs
it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automed.plan.schema import Plan
from automed.privacy import Redactor
from automed.select.image_level import compare_image_level
from automed.tasks.registry import task_for
from automed.workdir import WorkDir, with_relative_members
from automed.workflow.choice import open_select_run, record_choice


def select_image_level(
    workdirs: list[Path], out: Path, tracking_uri: str | None, redactor: Redactor
) -> dict[str, Any]:
    """The choice among image-level trainings, ``OUT/selection.json`` written once at the end."""
    task = task_for(Plan.load(WorkDir(workdirs[0]).plan).task_type, workdirs[0])
    res = compare_image_level(workdirs, task)
    res["chosen"] = with_relative_members(res["chosen"], out)
    final = float(res["cv_score_final"])
    tracker, run = open_select_run(workdirs, res["chosen"]["candidate"], tracking_uri, redactor)
    metrics: dict[str, float | None] = {f"{task.score_name}_chosen": final}
    for i, row in enumerate(res["candidates"]):
        metrics[f"candidate_{i}_{task.score_name}"] = row["score"]
    tracker.log_metrics(run, metrics)
    return record_choice(res, out, final, tracker, run)
