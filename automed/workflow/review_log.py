"""``automed predict --review --log-review``: the review pages of a prediction attached to the model's MLflow
training run, as a child run ``predict-review`` with the folder under ``review/``.

Only on request: the pages show the inputs' names and pictures of them (the user asks for them to leave the
machine). Local paths (the output and input folders, the model's work dir) are replaced by their names' placeholders
as in every other artifact automed logs."""

from __future__ import annotations

from pathlib import Path

from automed.errors import ConfigError
from automed.records import read_chosen, read_tracking
from automed.tracking import MODEL_URI, Tracker, bounded_client, model_version, resolve_uri, split_model_uri
from automed.workdir import WorkDir, chosen_members


def training_run(model: str | Path, tracking_uri: str | None) -> tuple[str, str, str, Path | None]:
    """(tracking URI, experiment, run ID, work dir) of the training behind ``model``: a work dir (its
    ``tracking.json``), a selection folder (its first member's) or a registered model URI (its version's run)."""
    text = str(model)
    if text.startswith(MODEL_URI):
        uri = resolve_uri(tracking_uri)
        client = bounded_client(uri)  # a server gone: the clear error in seconds, not MLflow's minutes
        version = model_version(client, *split_model_uri(text))
        if not version.run_id:
            raise ConfigError.single(model, "--log-review attaches the review to the model's training run",
                                     "the registered version names no run", "drop --log-review")  # fmt: skip
        experiment = client.get_experiment(client.get_run(version.run_id).info.experiment_id).name
        return uri, experiment, str(version.run_id), None
    root = Path(model)
    selection = root / "selection.json"
    if selection.is_file():
        root = chosen_members(root, read_chosen(selection))[0]
    track = WorkDir(root).tracking
    if not track.is_file():
        raise ConfigError.single(model, "--log-review attaches the review to the model's training run",
                                 "no tracking.json (trained without MLflow?)", "drop --log-review")  # fmt: skip
    saved = read_tracking(track)
    return resolve_uri(tracking_uri or saved["uri"]), saved["experiment"], saved["parent_run_id"], root


def log_review(model: str | Path, review: Path, output: Path, tracking_uri: str | None) -> str:
    """Log ``review`` under ``review/`` of a new child run of the model's training run; returns its run ID."""
    from automed.privacy import no_redaction
    from automed.workflow.disclosure import redactor_for

    uri, experiment, parent, workdir = training_run(model, tracking_uri)
    redactor = (
        redactor_for([workdir], keep_case_ids=True, outputs=[output])
        if workdir is not None
        else no_redaction()
    )
    tracker = Tracker(uri, experiment, redactor)
    run = tracker.start_run("predict-review", parent=parent, tags={"automed.kind": "predict-review"})
    tracker.log_artifact(run, review)  # the folder, as review/
    tracker.end_run(run)
    return run
