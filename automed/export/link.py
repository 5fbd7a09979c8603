"""Which export belongs to a training work dir: ``WORKDIR/export_link.json`` (written by ``automed export``).

``automed predict WORKDIR`` uses the linked export (OpenVINO, else onnxruntime) instead of torch when it is still
the model's: the same fold checkpoints (by content hash) in the same order, and a parity check that passed. Anything
else (retrained folds, another fold selection, a failed or skipped parity check, a deleted folder) falls back to torch.
Torch-free on purpose: the exported path of ``automed predict`` never imports torch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from automed.artifacts import write_json_atomic
from automed.workdir import CHOICE, ENSEMBLE, EXPORT_LINK, MODEL, MODEL_BUNDLE

LINK_FILE = EXPORT_LINK
MODEL_FILE = MODEL
PAIR_FILE = Path(MODEL_BUNDLE) / ENSEMBLE  # an `automed select` folder that chose a pair


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _folds(meta: dict[str, Any], choice: Path | None = None) -> list[int]:
    """The folds a model predicts with: ``automed select``'s choice (``inference.json``), else its own."""
    chosen = json.loads(choice.read_text())["inference"].get("folds") if choice and choice.is_file() else None
    return list(chosen or meta.get("inference", {}).get("folds") or meta["folds"])


def model_checkpoints(workdir: Path) -> list[Path]:
    """The checkpoint files the work dir's model (``model.json``) predicts with, in ensemble order; for a selection
    folder that chose a pair, every member's fold weights in its ``model_bundle``."""
    if not (workdir / MODEL_FILE).is_file() and (workdir / PAIR_FILE).is_file():
        bundle = (workdir / PAIR_FILE).parent
        out = []
        for m in json.loads((workdir / PAIR_FILE).read_text())["members"]:
            meta = json.loads((bundle / m["folder"] / MODEL_FILE).read_text())
            out += [bundle / m["folder"] / f"fold_{f}.pt" for f in _folds(meta)]
        return out
    meta = json.loads((workdir / MODEL_FILE).read_text())
    root = workdir / "train" / meta["configuration"]
    folds = _folds(meta, workdir / CHOICE)
    return [root / f"fold_{f}" / f"checkpoint_{meta.get('checkpoint', 'final')}.pt" for f in folds]


def write_link(workdir: Path, folder: Path, report: dict[str, Any]) -> dict[str, Any]:
    """Record ``folder`` as ``workdir``'s export; ``usable`` says whether predict may use it."""
    parity = report.get("parity", {})
    link = {
        "schema_version": 1,
        "path": str(folder.resolve()),
        "formats": sorted(report.get("files", {})),
        "checkpoints": [_sha256(p) for p in model_checkpoints(workdir)],
        "parity_passed": bool(parity) and all(p.get("passed") for p in parity.values()),
    }
    write_json_atomic(workdir / LINK_FILE, link)
    return link


def usable_export(workdir: Path) -> tuple[Path | None, str]:
    """The linked export folder if ``automed predict`` may use it, else ``None``; and why, in words."""
    f = workdir / LINK_FILE
    if not f.is_file() or not ((workdir / MODEL_FILE).is_file() or (workdir / PAIR_FILE).is_file()):
        return None, "no export (run `automed export WORKDIR`)"
    link = json.loads(f.read_text())
    folder = Path(link["path"])
    if not (folder / "preprocess.json").is_file():
        return None, f"the linked export {folder} is gone"
    if not link.get("parity_passed"):
        return None, "the export's parity check did not pass (or did not run)"
    try:
        now = [_sha256(p) for p in model_checkpoints(workdir)]
    except FileNotFoundError as exc:
        return None, f"a checkpoint is missing: {exc.filename}"
    if now != link["checkpoints"]:
        return None, "the model's folds changed since the export"
    return folder, f"export {folder}"
