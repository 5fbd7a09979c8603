"""``automed select`` among classification or regression trainings: a case ID the trainings share must name the same
image in each. The CV tables already refuse other classes and another target for a shared case
(:mod:`automed.select.image_level`); two datasets numbering their images alike (``case_000``, ...) with the same
targets passed, and a pair was scored on cases that are different pictures in each member.

What each work dir's ``fingerprint.json`` records of an image-level case: its shape, spacing and the box its non-zero
pixels fill (``shape_after_crop``, computed by one rule since the fingerprint's first version), besides the
target. A shared case whose records differ is another image:
refused before anything is written. The fingerprint keeps no digest per image (only the whole dataset's, which a
dataset grown by new cases changes), so two pictures of one size, spacing and non-zero box cannot be told apart:
those pass, as they did. Trainings whose datasets' voxel digests agree are one dataset and are not compared."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from automed.errors import ArtifactError
from automed.fingerprint.schema import CaseFingerprint, Fingerprint
from automed.workdir import WorkDir


def _record(case: CaseFingerprint) -> dict[str, Any]:
    return {
        "shape": list(case.shape),
        "spacing": [round(s, 6) for s in case.spacing],
        "non-zero box": list(case.shape_after_crop),
    }


def refuse_other_images(workdirs: list[Path], names: list[str]) -> None:
    """Raise :class:`ArtifactError` when two of the image-level trainings ``workdirs`` (shown as ``names``) record
    another image under a case ID they share (their fingerprints' shape, spacing or non-zero box); work dirs without
    a fingerprint are not compared."""
    found = [
        (wd, name, Fingerprint.load(WorkDir(wd).fingerprint))
        for wd, name in zip(workdirs, names, strict=True)
        if WorkDir(wd).fingerprint.is_file()
    ]
    for (wa, na, fa), (wb, nb, fb) in itertools.combinations(found, 2):
        if fa.voxels_digest is not None and fa.voxels_digest == fb.voxels_digest:
            continue
        cases_b = {c.case_id: c for c in fb.cases}
        differ = [
            (c.case_id, ra, rb)
            for c in fa.cases
            if c.case_id in cases_b and (ra := _record(c)) != (rb := _record(cases_b[c.case_id]))
        ]
        if not differ:
            continue
        cid, ra, rb = differ[0]
        more = ", ".join(d[0] for d in differ[1:4]) + (" ..." if len(differ) > 4 else "")
        raise ArtifactError.single(
            WorkDir(wb).fingerprint,
            "image-level trainings compared on CV are of one dataset: a case ID they share names the same image "
            f"in each (its fingerprint's shape, spacing and non-zero box; {WorkDir(wa).fingerprint})",
            f"{len(differ)} shared case ID(s) with another image: {cid}: {ra} in {na} (dataset "
            f"{fa.dataset_name!r}), {rb} in {nb} (dataset {fb.dataset_name!r})"
            + (f"; also {more}" if more else ""),
            f"select each dataset's trainings separately (`automed select {wa} ... -o DIR`, `automed select {wb} "
            "... -o DIR2`), or train them again on one version of the dataset",
        )
