"""Names of the trainings a selection compares: short, unique and free of local paths (they go to MLflow tags,
``selection.json`` and reports)."""

from __future__ import annotations

from pathlib import Path


def candidate_names(workdirs: list[Path]) -> list[str]:
    """Each work dir's folder name (of its resolved path: ``.`` is named too); a name taken by an earlier one gets
    the first free running number (``train``, ``train-2``). Never a path: a parent folder may name a person."""
    names: list[str] = []
    for w in workdirs:
        base = Path(w).resolve().name or "workdir"
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}-{n}"
        names.append(name)
    return names
