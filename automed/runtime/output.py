"""Where the bundle's ``predict.py`` may write: the rules ``automed predict`` applies to its output folder
(``automed.artifacts.claim_output``), as far as a bundle without automed can tell them, checked before anything
loads.

- Never in an automed export (the bundle's own folder or another one), nor in a folder holding the bundle: an export
  is the folder shared with other sites (predictions inside it, case IDs and all, would travel with it) and the next
  ``automed export`` replaces it whole (deleting them).
- An existing non-empty folder only when a bundle wrote it (:data:`RECORD`; before the record, a bundle's
  ``predictions.csv``): a folder of the user's may hold anything, and predictions are never mixed in with it.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

RECORD = ".bundle-predict.json"  # the bundle, TTA, --folds and --step-size that wrote a folder's label maps
TABLE = "predictions.csv"  # a classification or regression bundle's output


def is_export(folder: Path) -> bool:
    """Whether ``folder`` is an automed export: its ``export.json`` beside its ``preprocess.json`` (as automed tells
    an export written before it marked its outputs)."""
    try:
        return (folder / "export.json").is_file() and (folder / "preprocess.json").is_file()
    except OSError:  # a folder this user may not look into: no export of theirs
        return False


def refuse_export_place(given: Path, out: Path, bundle: Path) -> None:
    """Refuse (``SystemExit``) an output folder ``out`` (resolved; ``given`` as the user wrote it) that is the
    bundle's folder ``bundle``, lies inside it or holds it, or is or lies inside another automed export."""
    root = bundle.resolve()
    if out == root or root in out.parents:
        found = "the bundle's own folder" if out == root else f"a folder inside the bundle {root}"
    elif out in root.parents:
        found = f"a folder holding the bundle {root}"
    else:
        export = next((p for p in (out, *out.parents) if is_export(p)), None)
        if export is None:
            return
        found = f"{'the' if export == out else 'a folder inside the'} automed export {export}"
        root = export
    raise SystemExit(
        f"{given}: the output folder must lie outside the bundle and every other automed export, and must not hold "
        "the bundle (an export is the folder that is shared: predictions inside it, their case IDs with them, "
        f"would travel with it, and the next `automed export` replaces it whole, deleting them); found {found}; "
        f"choose an -o beside it, e.g. -o {root.parent / 'predictions'}"
    )


def refuse_foreign_folder(given: Path, out: Path) -> None:
    """Refuse (``SystemExit``) an existing non-empty output folder ``out`` that no bundle wrote (no :data:`RECORD`,
    and no bundle's ``predictions.csv`` of before the record), ``--overwrite`` or not, as ``automed predict``
    refuses a non-empty folder automed did not write."""
    if not out.is_dir():
        return
    try:
        held = sorted(p.name for p in out.iterdir())
    except OSError as exc:
        raise SystemExit(
            f"{given}: the output folder must be one predict.py can list and write; found {exc.strerror or exc}; "
            "choose another -o"
        ) from None
    if not held or RECORD in held or older_bundle_table(out):
        return
    shown = f"{', '.join(held[:5])}{' ...' if len(held) > 5 else ''}"
    raise SystemExit(
        f"{given}: predict.py writes into a new or empty folder, or one a bundle wrote ({RECORD} marks it), "
        f"--overwrite or not; this folder holds {shown} without it: files of yours, not replaced and not written "
        "among; choose a new or empty folder for -o"
    )


def older_bundle_table(folder: Path) -> bool:
    """Whether ``folder`` holds a ``predictions.csv`` as a bundle writes it (``SubjectID`` first, a ``prediction``
    column): bundles before the record wrote none beside their table, and a rerun (the cube's) replaces it."""
    table = folder / TABLE
    if not table.is_file():
        return False
    try:
        with table.open(newline="", encoding="utf-8", errors="replace") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, csv.Error):
        return False
    return header[:1] == ["SubjectID"] and "prediction" in header


def earlier_predictions(out: Path, written: set[str]) -> list[Path]:
    """The predictions an earlier run of a bundle left in ``out`` (its label maps, its table) that a run writing
    ``written`` will not replace: ``--overwrite`` removes them when that run has finished."""
    from .io import SUFFIXES

    return sorted(
        p
        for p in out.iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and p.name not in written
        and (p.name == TABLE or p.name.lower().endswith((*SUFFIXES, ".npz")))  # (.npz: --save-probabilities)
    )


def input_stamps(cases: list[tuple[str, list[Path]]]) -> dict[str, str]:
    """Per case (ID, input files or folders), a digest of its inputs as they are now (place, size, modification
    time; a DICOM folder's files): ``--continue`` keeps a finished case only when its input is unchanged (another
    image under its name had been taken for it). automed predict records the same."""
    import hashlib

    stamps = {}
    for case_id, paths in cases:
        h = hashlib.sha256()
        for path in paths:
            files = (
                sorted(p for p in Path(path).rglob("*") if p.is_file())
                if Path(path).is_dir()
                else [Path(path)]
            )
            for f in files:
                st = f.stat()
                h.update(f"{f.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        stamps[case_id] = h.hexdigest()[:16]
    return stamps


def changed_inputs(record: dict[str, Any], stamps: dict[str, str], finished: list[str]) -> list[str]:
    """The ``finished`` cases whose input differs from the one ``record`` (an earlier run's) says they were
    predicted from; none when the record predates input stamps."""
    was = record.get("inputs")
    return sorted(c for c in finished if isinstance(was, dict) and was.get(c) != stamps.get(c))


def write_probabilities(probabilities: Any, label_values: Any, path: Path) -> None:
    """``CASE.npz`` (``--save-probabilities``, the bundle's and automed predict's): ``probabilities`` ``(K, z, y,
    x)`` and ``labels`` (int16), the label value of each channel (with label IDs such as 0, 1, 4 not the channel's
    index), replaced atomically."""
    import numpy as np

    if len(label_values) != probabilities.shape[0]:
        raise ValueError(f"{len(label_values)} label values for {probabilities.shape[0]} classes")
    tmp = path.with_name(f".{path.stem}.partial.npz")
    np.savez_compressed(tmp, probabilities=probabilities, labels=np.asarray(label_values, dtype=np.int16))
    tmp.replace(path)


def same_settings(before: dict[str, Any], now: dict[str, Any]) -> bool:
    """Two runs' records name the same model and settings (their input stamps aside: :func:`changed_inputs` judges
    those case by case)."""
    return {**before, "inputs": None} == {**now, "inputs": None}
