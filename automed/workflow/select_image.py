"""``automed select`` for classification and regression trainings: compare them and their pairs on CV
(:func:`automed.select.image_level.compare_image_level`), log the evidence, and make the choice usable: a single
training is the model as it is (nothing to postprocess, no ``inference.json``); a chosen pair gets
``OUT/model_bundle`` (registered as a new version when its members were registered), so ``automed predict OUT`` runs
it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from automed.artifacts import write_json_atomic
from automed.plan.schema import Plan
from automed.privacy import Redactor
from automed.select.image_level import compare_image_level
from automed.select.register import register_members, registered_version, write_choice_bundle
from automed.select.selection import SELECTION_FILE
from automed.tasks.registry import task_for
from automed.tracking import Tracker, resolve_uri
from automed.workdir import WorkDir


def select_image_level(
    workdirs: list[Path], out: Path, tracking_uri: str | None, redactor: Redactor
) -> dict[str, Any]:
    """The choice among image-level trainings, ``OUT/selection.json`` written once at the end."""
    task = task_for(Plan.load(WorkDir(workdirs[0]).plan).task_type, workdirs[0])
    res = compare_image_level(workdirs, task)
    members = [Path(m) for m in res["chosen"]["members"]]
    final = float(res["cv_score_final"])
    track = WorkDir(workdirs[0]).tracking
    saved = json.loads(track.read_text()) if track.is_file() else {}
    tracker = Tracker(
        resolve_uri(tracking_uri or saved.get("uri")), saved.get("experiment") or "automed-select", redactor
    )
    run = tracker.start_run("select", tags={"chosen": res["chosen"]["candidate"]})
    tracker.log_params(run, {"trainings": [w.name for w in workdirs]})
    metrics: dict[str, float | None] = {f"{task.score_name}_chosen": final}
    for i, row in enumerate(res["candidates"]):
        metrics[f"candidate_{i}_{task.score_name}"] = row["score"]
    tracker.log_metrics(run, metrics)
    if len(members) > 1:  # a pair won: OUT/model_bundle, so predict/export take OUT
        try:
            if any(registered_version(m) for m in members):
                res["registered"] = register_members(members, out, [], final, tracker, run)
            else:
                write_choice_bundle(res, out, final)
        except BaseException:
            tracker.end_run(run, "FAILED")
            raise
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / SELECTION_FILE, res)  # a kill before this line leaves the earlier selection whole
    tracker.log_artifact(run, out / SELECTION_FILE)
    tracker.end_run(run)
    return res
