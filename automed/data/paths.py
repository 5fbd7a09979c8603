"""How a path listed in a dataset description resolves: relative to the description's folder, absolute as is."""

from __future__ import annotations

from pathlib import Path


def resolve_listed(base: Path, rel: str) -> Path:
    """``rel`` as listed in a ``dataset.json`` or CSV, resolved against ``base`` (the file's folder) unless absolute."""
    p = Path(rel)
    return p if p.is_absolute() else (base / p).resolve()
