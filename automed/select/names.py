"""Names of the trainings a selection compares: short, unique and free of local paths (they go to MLflow tags and
``selection.json``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def candidate_names(workdirs: list[Path]) -> list[str]:
    """Each work dir's folder name; where two share it, the parent folder's name too (``a/train``, ``b/train``);
    where that is still shared, a running number (``train-2``). Never an absolute path."""
    names = [Path(w).name for w in workdirs]
    if len(set(names)) == len(names):
        return names
    longer = [
        f"{Path(w).parent.name}/{Path(w).name}" if Path(w).parent.name else Path(w).name for w in workdirs
    ]
    if len(set(longer)) == len(longer):
        return longer
    seen: Counter[str] = Counter()
    out = []
    for n in names:
        seen[n] += 1
        out.append(n if seen[n] == 1 else f"{n}-{seen[n]}")
    return out
