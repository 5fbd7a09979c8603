"""``automed report`` pairs runs case by case (Wilcoxon tests, scatter): a case ID two runs share must name the same
image. Two datasets that number their cases alike (``case_000``, ...) share IDs but no images, and a paired test over
them would declare a "better" run of nothing. Each training work dir's ``fingerprint.json`` records every case's
shape, spacing and label voxel counts: runs whose shared case IDs differ there are refused. Runs of one dataset
(other splits, configurations, presets; a dataset grown by new cases) agree on every shared case and compare. Runs
without a fingerprint (``automed metrics`` outputs, MLflow runs) cannot be told apart and compare as before."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automed.errors import ArtifactError
from automed.fingerprint.schema import CaseFingerprint, Fingerprint
from automed.workdir import WorkDir


@dataclass(frozen=True)
class _Source:
    name: str  # the run as the page names it
    path: Path  # the work dir
    file: Path  # its fingerprint.json
    dataset: str
    digest: str | None  # the dataset's voxel digest (None: written before it was recorded)
    cases: dict[str, tuple[Any, ...]]  # case ID -> what the fingerprint knows of its content


def _signature(case: CaseFingerprint) -> tuple[Any, ...]:
    """A case's content as its fingerprint records it (the same image gives the same values in every work dir)."""
    spacing = tuple(round(s, 6) for s in case.spacing)
    return tuple(case.shape), spacing, tuple(sorted(case.label_voxels.items())), case.value


def _source(path: Path, name: str) -> _Source | None:
    file = WorkDir(path).fingerprint
    if not (path.is_dir() and file.is_file()):
        return None
    fp = Fingerprint.load(file)
    cases = {c.case_id: _signature(c) for c in fp.cases}
    return _Source(name, path, file, fp.dataset_name, fp.voxels_digest, cases)


def _differing(a: _Source, b: _Source) -> list[str]:
    """The case IDs both runs hold whose content differs (none when the datasets' voxel digests agree)."""
    if a.digest is not None and a.digest == b.digest:
        return []
    return sorted(c for c in a.cases.keys() & b.cases.keys() if a.cases[c] != b.cases[c])


def _describe(source: _Source, case: str) -> str:
    shape, spacing, voxels, _ = source.cases[case]
    return (
        f"{source.name} (dataset {source.dataset!r}): shape {list(shape)}, spacing {list(spacing)}, "
        f"label voxels {dict(voxels)}"
    )


def refuse_other_datasets(paths: list[Path], names: list[str], verb: str = "report") -> None:
    """Raise :class:`ArtifactError` when two of the training work dirs among ``paths`` hold different images under
    one case ID (runs of different datasets); the fix names ``automed VERB`` (``report``, ``select``)."""
    sources = [s for p, n in zip(paths, names, strict=True) if (s := _source(p, n)) is not None]
    for a, b in itertools.combinations(sources, 2):
        differ = _differing(a, b)
        if not differ:
            continue
        shown = ", ".join(differ[:3]) + (f" and {len(differ) - 3} more" if len(differ) > 3 else "")
        raise ArtifactError.single(
            b.file,
            "runs compared case by case are of one dataset: a case ID two runs share names the same image "
            f"(its fingerprint's shape, spacing and label voxels) in both ({a.file})",
            f"{len(differ)} shared case ID(s) with other images ({shown}); {differ[0]}: {_describe(a, differ[0])}"
            f"; {_describe(b, differ[0])}",
            f"{verb} each dataset's {'trainings' if verb == 'select' else 'runs'} separately (`automed {verb} "
            f"{a.path} ... -o DIR`, `automed {verb} {b.path} ... -o DIR2`)",
        )
