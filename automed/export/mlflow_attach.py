"""Attach an export to the registered model version it came from: the export report, model card, preprocessing
spec and networks as artifacts of the version's run (``export/``), the card as the version's description and the
parity results as version tags."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _version_of(model: str, tracking_uri: str | None) -> tuple[str, str, str] | None:
    """``(uri, name, version)`` of the registered version behind a work dir or a ``models:/`` URI (None: none)."""
    from automed.tracking import MODEL_URI, resolve_uri, split_model_uri

    if model.startswith(MODEL_URI):
        return resolve_uri(tracking_uri), *split_model_uri(model)
    from automed.records import read_tracking
    from automed.select.register import registered_version
    from automed.workdir import WorkDir, pair_members

    wd = WorkDir(Path(model))
    reg = registered_version(wd.root)
    if not reg:
        return None
    if not wd.model.is_file() and wd.pair.is_file():  # a pair registered by `automed select`
        first = WorkDir(pair_members(wd.root)[0]).tracking
        uri = tracking_uri or (read_tracking(first).get("uri") if first.is_file() else None)
        return resolve_uri(uri), reg["name"], str(reg["version"])
    if not wd.tracking.is_file():
        return None
    return (
        resolve_uri(tracking_uri or read_tracking(wd.tracking).get("uri")),
        reg["name"],
        str(reg["version"]),
    )


def attach_export(
    folder: Path, report: dict[str, Any], card: str, model: str, tracking_uri: str | None
) -> dict[str, Any] | None:
    found = _version_of(model, tracking_uri)
    if found is None:
        return None
    from automed.tracking import bounded_client, model_version

    uri, name, version = found
    client = bounded_client(uri)  # a server gone: the clear error in seconds, not MLflow's minutes of retries
    mv = model_version(client, name, version)
    version = str(mv.version)
    run_id = mv.run_id
    if run_id:
        for f in ("export.json", "MODEL_CARD.md", "preprocess.json"):
            client.log_artifact(run_id, str(folder / f), f"export/v{version}")
        client.log_artifacts(run_id, str(folder / "networks"), f"export/v{version}/networks")
    client.update_model_version(name, version, description=card)
    for runtime, p in report.get("parity", {}).items():
        key = "max_abs_prob" if "max_abs_prob" in p else "max_difference"  # label maps / image-level tables
        client.set_model_version_tag(name, version, f"export.{runtime}.{key}", f"{p[key]:.3g}")
        client.set_model_version_tag(name, version, f"export.{runtime}.passed", str(p["passed"]))
    for runtime, seconds in report.get("latency_seconds", {}).items():
        client.set_model_version_tag(name, version, f"latency_s.{runtime}", f"{seconds:.3f}")
    return {"name": name, "version": version, "run_id": run_id}
