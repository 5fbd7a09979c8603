"""``automed report`` pairs runs case by case (Wilcoxon tests, scatter): a case ID two runs share must name the same
image. Two datasets that number their cases alike (``case_000``, ...) share IDs but no images, and a paired test over
them would declare a "better" run of nothing. Each training work dir's ``fingerprint.json`` records every case's
shape, spacing and label voxel counts: runs whose shared case IDs differ there are refused. An image-level case must
also have one target in both (a paired test of right and wrong answers, or of errors, against two truths compares
nothing): its class by name where both fingerprints name the classes (a class added to a dataset renumbers the others,
whose images and classes are still the same), else its value. Runs of one dataset (other splits, configurations,
presets; a dataset grown by new cases or classes) agree on every shared case and compare. Runs without a fingerprint
(``automed metrics`` outputs, MLflow runs) cannot be told apart and compare as before."""

from __future__ import annotations

import itertools
import math
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
    cases: dict[str, tuple[Any, ...]]  # case ID -> what the fingerprint knows of its image
    targets: dict[str, float | None]  # case ID -> its target (class index or value; None: segmentation)
    classes: dict[str, str] | None  # class index -> name (None: not classification, or not recorded)


def _signature(case: CaseFingerprint) -> tuple[Any, ...]:
    """A case's image as its fingerprint records it (the same image gives the same values in every work dir)."""
    spacing = tuple(round(s, 6) for s in case.spacing)
    return tuple(case.shape), spacing, tuple(sorted(case.label_voxels.items()))


def _source(path: Path, name: str) -> _Source | None:
    file = WorkDir(path).fingerprint
    if not (path.is_dir() and file.is_file()):
        return None
    fp = Fingerprint.load(file)
    cases = {c.case_id: _signature(c) for c in fp.cases}
    targets = {c.case_id: c.value for c in fp.cases}
    return _Source(name, path, file, fp.dataset_name, fp.voxels_digest, cases, targets, fp.class_names)


def _target(source: _Source, case: str, by_name: bool) -> float | str | None:
    value = source.targets[case]
    if by_name and value is not None and source.classes is not None:
        return source.classes.get(str(int(value)), value)
    return value


def _same_target(a: float | str | None, b: float | str | None) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return a == b


def _differing(a: _Source, b: _Source) -> tuple[list[str], list[str]]:
    """The case IDs both runs hold whose image differs (none when the datasets' voxel digests agree), and those
    whose image is the same but whose target differs (its class by name where both fingerprints name classes)."""
    shared = sorted(a.cases.keys() & b.cases.keys())
    same_voxels = a.digest is not None and a.digest == b.digest
    images = [] if same_voxels else [c for c in shared if a.cases[c] != b.cases[c]]
    by_name = a.classes is not None and b.classes is not None
    targets = [
        c
        for c in shared
        if c not in images and not _same_target(_target(a, c, by_name), _target(b, c, by_name))
    ]
    return images, targets


def _describe(source: _Source, case: str) -> str:
    shape, spacing, voxels = source.cases[case]
    return (
        f"{source.name} (dataset {source.dataset!r}): shape {list(shape)}, spacing {list(spacing)}, "
        f"label voxels {dict(voxels)}"
    )


def _shown(differ: list[str]) -> str:
    return ", ".join(differ[:3]) + (f" and {len(differ) - 3} more" if len(differ) > 3 else "")


def refuse_other_datasets(paths: list[Path], names: list[str], verb: str = "report") -> None:
    """Raise :class:`ArtifactError` when two of the training work dirs among ``paths`` hold different images under
    one case ID (runs of different datasets); the fix names ``automed VERB`` (``report``, ``select``)."""
    sources = [s for p, n in zip(paths, names, strict=True) if (s := _source(p, n)) is not None]
    for a, b in itertools.combinations(sources, 2):
        images, targets = _differing(a, b)
        fix = (
            f"{verb} each dataset's {'trainings' if verb == 'select' else 'runs'} separately (`automed {verb} "
            f"{a.path} ... -o DIR`, `automed {verb} {b.path} ... -o DIR2`)"
        )
        if images:
            raise ArtifactError.single(
                b.file,
                "runs compared case by case are of one dataset: a case ID two runs share names the same image "
                f"(its fingerprint's shape, spacing and label voxels) in both ({a.file})",
                f"{len(images)} shared case ID(s) with other images ({_shown(images)}); {images[0]}: "
                f"{_describe(a, images[0])}; {_describe(b, images[0])}",
                fix,
            )
        if targets:
            by_name = a.classes is not None and b.classes is not None
            shown = "; ".join(
                f"{c}: {_target(a, c, by_name)!r} in {a.name}, {_target(b, c, by_name)!r} in {b.name}"
                for c in targets[:3]
            )
            raise ArtifactError.single(
                b.file,
                "runs compared case by case are of one dataset: a case ID two runs share has one target in both "
                f"(its fingerprint's class, by name where both name their classes, or value) ({a.file})",
                f"{len(targets)} shared case ID(s) with another target ({shown})",
                f"{fix}, or train them again on one version of the dataset",
            )
