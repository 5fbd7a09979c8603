"""What every ``automed select`` does around its comparison: the MLflow run that records it, and the choice made
usable (a chosen pair's ``OUT/model_bundle``, registered when its members were) with ``OUT/selection.json`` written
once, complete, at the end."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from automed.artifacts import write_json_atomic
from automed.privacy import Redactor
from automed.records import read_tracking
from automed.select.names import candidate_names
from automed.select.register import register_members, registered_version, write_choice_bundle
from automed.select.selection import SELECTION_FILE
from automed.tracking import Tracker, resolve_uri
from automed.workdir import WorkDir, sweep_of, without_local_places


def open_select_run(
    workdirs: list[Path], chosen: str, tracking_uri: str | None, redactor: Redactor
) -> tuple[Tracker, str]:
    """The store of the first training (a sweep's trial: its sweep's; or ``tracking_uri``) and a ``select`` run
    tagged with the choice. (A trial has no tracking.json: the store had been ./mlflow.db wherever select ran.)"""
    track = WorkDir(workdirs[0]).tracking
    saved = read_tracking(track) if track.is_file() else _sweep_store(workdirs[0])
    tracker = Tracker(
        resolve_uri(tracking_uri or saved.get("uri")), saved.get("experiment") or "automed-select", redactor,
        None if tracking_uri else saved.get("registry") or None,
    )  # fmt: skip
    run = tracker.start_run("select", tags={"chosen": chosen})
    tracker.log_params(run, {"trainings": candidate_names(workdirs)})
    return tracker, run


def _sweep_store(workdir: Path) -> dict[str, Any]:
    """A sweep trial's store and experiment, from its sweep's ``sweep.json`` (``{}`` for any other folder)."""
    sweep = sweep_of(workdir)
    if sweep is None:
        return {}
    from automed.workflow.sweep_state import read_state

    state, opts = read_state(sweep)
    return {"uri": state.get("uri") or opts.tracking_uri, "experiment": state.get("experiment")}


def record_choice(res: dict[str, Any], out: Path, score: float, tracker: Tracker, run: str) -> dict[str, Any]:
    """A chosen pair's bundle (registered as a new version when a member was registered), then
    ``OUT/selection.json`` (a kill before it leaves the earlier selection whole), logged; the run ends."""
    members = [Path(m) for m in res["chosen"]["members"]]
    if len(members) > 1:  # a pair won: OUT/model_bundle, so predict/export take OUT
        try:
            if any(registered_version(m) for m in members):
                res["registered"] = register_members(members, out, res["postprocessing"], score, tracker, run)
            else:
                write_choice_bundle(res, out, score)
        except BaseException:
            tracker.end_run(run, "FAILED")
            raise
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / SELECTION_FILE, res)
    stale = WorkDir(out).pair  # an earlier selection's pair: selection.json no longer chooses it
    if len(members) == 1 and stale.is_file():
        shutil.rmtree(stale.parent)
    log_record(tracker, run, out / SELECTION_FILE)
    tracker.end_run(run)
    return res


def log_record(tracker: Tracker, run: str, path: Path, artifact_path: str | None = None) -> None:
    """A JSON record logged to MLflow without its ``relative`` places (for a folder moved whole they name local
    folders: they stay here; the tracker's redactor then hides what else is local)."""
    with tempfile.TemporaryDirectory(prefix="automed-record-") as tmp:
        write_json_atomic(Path(tmp) / path.name, without_local_places(json.loads(path.read_text())))
        tracker.log_artifact(run, Path(tmp) / path.name, artifact_path)
