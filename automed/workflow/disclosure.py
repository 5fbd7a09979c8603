"""The :class:`~automed.privacy.Redactor` of a work dir: its pseudonym key, the case IDs of its dataset and the
local folders that must not leave the machine (the dataset's, the images', the work dir's, the home folder)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterable
from pathlib import Path, PureWindowsPath
from typing import Any

from automed.artifacts import read_json
from automed.data.schema import Dataset
from automed.errors import ArtifactError
from automed.privacy import KEY_BYTES, Redactor, load_key
from automed.records import fits, shown
from automed.workdir import WorkDir


def _fingerprint_facts(wd: WorkDir) -> tuple[list[str], str | None]:
    if not wd.fingerprint.is_file():
        return [], None
    path = wd.fingerprint
    fix = "put back the fingerprint.json automed wrote, or delete it and re-run the training (it is written anew)"
    fp = read_json(path, what="fingerprint.json", damaged_fix=fix)
    if not fits(dict[str, Any], fp):
        raise ArtifactError.single(path, "fingerprint.json must be a JSON object", shown(fp), fix)
    cases, source = fp.get("cases", []), fp.get("source")
    if not (fits(list[dict[str, Any]], cases) and all(fits(str, c.get("case_id")) for c in cases)):
        rule = "fingerprint.json's cases must each name its case_id (text)"
        raise ArtifactError.single(path, rule, shown(cases), fix)
    if not fits(str | None, source):
        raise ArtifactError.single(path, "fingerprint.json's source must be text", shown(source), fix)
    return [str(c["case_id"]) for c in cases], source


def redactor_for(
    workdirs: Iterable[Path],
    *,
    keep_case_ids: bool = False,
    ds: Dataset | None = None,
    outputs: Iterable[Path] = (),
) -> Redactor:
    """The redactor of the first of ``workdirs`` (its key, written there once) covering every case ID and folder of
    all of them. Without a work dir (a ``models:/`` URI) the key is random: pseudonyms differ per command."""
    roots = [Path(w) for w in workdirs]
    key = secrets.token_bytes(KEY_BYTES)
    if roots:
        with contextlib.suppress(OSError):  # a read-only model folder: pseudonyms of this command only
            key = load_key(WorkDir(roots[0]).pseudonym_key)
    ids: set[str] = set()
    places: dict[str, Path] = {}
    for i, root in enumerate(roots):
        places[f"workdir{i or ''}"] = root.resolve()
        case_ids, source = _fingerprint_facts(WorkDir(root))
        ids.update(case_ids)
        if source:
            places.setdefault("dataset", _dataset_place(source))
    for i, out in enumerate(outputs):
        places[f"output{i or ''}"] = Path(out).resolve()
    if ds is not None:
        ids.update(c.case_id for c in ds.cases)
        places["dataset"] = _dataset_place(ds.source)
        folders = sorted(
            {p.resolve().parent for c in ds.cases for p in (*c.images, *([c.label] if c.label else []))}
        )
        for j, folder in enumerate(folders):
            places.setdefault(f"data{j}", folder)
    return Redactor.build(key, ids, places, keep_case_ids=keep_case_ids)


def _dataset_place(source: str | Path) -> Path:
    """What ``<dataset>`` stands for: the folder of a dataset.json or CSV, or a folder-per-class dataset itself
    (its own name would otherwise be logged as ``<dataset>/NAME``)."""
    p = Path(source).resolve()
    return p if p.is_dir() else p.parent


FILE_OPTIONS = (
    "preset",
    "space",
    "grid",
    "config",
)  # options that may name a YAML file anywhere on the machine


def public_options(options: dict[str, Any]) -> dict[str, Any]:
    """Run options as MLflow params: a preset, search space, grid or config given as a file keeps its name only
    (the folder it sits in may be a user's or a site's, outside every folder the redactor knows)."""
    return {
        k: PureWindowsPath(str(v)).name if k in FILE_OPTIONS and isinstance(v, str | Path) else v
        for k, v in options.items()
    }
