"""Runs compared case by case are of one dataset: ``automed report`` (paired tests, scatter) and ``automed select``
(segmentation trainings scored on the first one's label maps; image-level trainings and pairs scored on the cases
they share) pair case IDs, and two datasets that number their cases alike (``case_000``, ...) share IDs but no
images: a paired test, a score or a pair over them compares nothing.

One rule for all three, over each training work dir's ``fingerprint.json``. A case's signature is what its per-case
record says of the image: shape, spacing, the box its non-zero voxels fill (``shape_after_crop``, one rule since the
fingerprint's first version) and, where the task has label maps, the label voxels in that box. A shared case whose
signatures differ is another image (unless the datasets' voxel digests agree: one dataset). A shared case of the same
image must have one target in both (a paired test or a pair scored against two truths compares nothing): its class
by name where both fingerprints name the classes (a class added to a dataset renumbers the others, whose images and
classes are still the same), else its value. Runs of one dataset (other splits, configurations, presets; a dataset
grown by new cases or classes) agree on every shared case and compare. The fingerprint keeps no digest per image, so
two pictures of one signature cannot be told apart: those pass. Runs without a fingerprint (``automed metrics``
outputs, MLflow runs) cannot be told apart and compare as before."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automed.errors import ArtifactError
from automed.fingerprint.schema import CaseFingerprint, Fingerprint
from automed.workdir import WorkDir

SIGNED = "shape, spacing, non-zero box and label voxels"  # what a signature holds, as the messages say it


def case_signature(case: CaseFingerprint) -> dict[str, Any]:
    """A case's image as its fingerprint records it: the same image gives the same values in every work dir (label
    voxels are empty where the task has no label maps)."""
    return {
        "shape": list(case.shape),
        "spacing": [round(s, 6) for s in case.spacing],
        "non-zero box": list(case.shape_after_crop),
        "label voxels": dict(sorted(case.label_voxels.items())),
    }


@dataclass(frozen=True)
class _Source:
    name: str  # the run or training as the command names it
    path: Path  # the work dir
    file: Path  # its fingerprint.json
    fp: Fingerprint
    cases: dict[str, CaseFingerprint]  # case ID -> its record

    def target(self, case: str, by_name: bool) -> float | str | None:
        """A case's target: its class by name where ``by_name`` and the fingerprint names classes, else its value
        (None: segmentation)."""
        value = self.cases[case].value
        if by_name and value is not None and self.fp.class_names is not None:
            return self.fp.class_names.get(str(int(value)), value)
        return value


def _source(path: Path, name: str) -> _Source | None:
    file = WorkDir(path).fingerprint
    if not (path.is_dir() and file.is_file()):
        return None
    fp = Fingerprint.load(file)
    return _Source(name, path, file, fp, {c.case_id: c for c in fp.cases})


def _same_target(a: float | str | None, b: float | str | None) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return a == b


def _differing(a: _Source, b: _Source) -> tuple[list[str], list[str]]:
    """The case IDs both hold whose signature differs (none when the datasets' voxel digests agree), and those whose
    image is the same but whose target differs."""
    ca, cb = a.cases, b.cases
    shared = sorted(ca.keys() & cb.keys())
    same_voxels = a.fp.voxels_digest is not None and a.fp.voxels_digest == b.fp.voxels_digest
    images = [] if same_voxels else [c for c in shared if case_signature(ca[c]) != case_signature(cb[c])]
    by_name = a.fp.class_names is not None and b.fp.class_names is not None
    targets = [
        c for c in shared if c not in images and not _same_target(a.target(c, by_name), b.target(c, by_name))
    ]
    return images, targets


def _what_differs(a: _Source, b: _Source, case: str) -> str:
    sa, sb = case_signature(a.cases[case]), case_signature(b.cases[case])
    fields = ", ".join(f"{k} {sa[k]} vs {sb[k]}" for k in sa if sa[k] != sb[k])
    return f"{case} in {a.name} (dataset {a.fp.dataset_name!r}) vs {b.name} (dataset {b.fp.dataset_name!r}): {fields}"


def _shown(differ: list[str]) -> str:
    return ", ".join(differ[:3]) + (f" and {len(differ) - 3} more" if len(differ) > 3 else "")


def refuse_other_datasets(paths: list[Path], names: list[str], verb: str = "report") -> None:
    """Raise :class:`ArtifactError` when two of the training work dirs among ``paths`` (shown as ``names``) hold
    another image, or the same image with another target, under a case ID they share; the fix names
    ``automed VERB`` (``report``, ``select``). Work dirs without a fingerprint are not compared."""
    sources = [s for p, n in zip(paths, names, strict=True) if (s := _source(p, n)) is not None]
    runs = "trainings" if verb == "select" else "runs"
    for a, b in itertools.combinations(sources, 2):
        images, targets = _differing(a, b)
        fix = (
            f"{verb} each dataset's {runs} separately (`automed {verb} {a.path} ... -o DIR`, `automed {verb} "
            f"{b.path} ... -o DIR2`)"
        )
        if images:
            raise ArtifactError.single(
                b.file,
                f"{runs} compared case by case are of one dataset: a case ID two of them share names the same image "
                f"(its fingerprint's {SIGNED}) in both ({a.file})",
                f"{len(images)} shared case ID(s) with other images ({_shown(images)}); "
                + _what_differs(a, b, images[0]),
                f"{fix}, or train them again on one version of the dataset",
            )
        if targets:
            by_name = a.fp.class_names is not None and b.fp.class_names is not None
            shown = "; ".join(
                f"{c}: {a.target(c, by_name)!r} in {a.name}, {b.target(c, by_name)!r} in {b.name}"
                for c in targets[:3]
            )
            raise ArtifactError.single(
                b.file,
                f"{runs} compared case by case are of one dataset: a case ID two of them share has one target in "
                f"both (its fingerprint's class, by name where both name their classes, or value) ({a.file})",
                f"{len(targets)} shared case ID(s) with another target ({shown})",
                f"{fix}, or train them again on one version of the dataset",
            )
