"""What a resumed training or sweep continues with: the dataset it began on (or where it moved, :func:`dataset_now`)
holding the cases of its split, with the content it was fingerprinted with (:func:`check_same_cases`)."""

from __future__ import annotations

import logging
from pathlib import Path

from automed.data.dataset import Dataset
from automed.data.splits import read_splits
from automed.errors import ArtifactError
from automed.fingerprint.extract import extract_fingerprint, inputs_unchanged
from automed.fingerprint.schema import Fingerprint
from automed.workdir import WorkDir
from automed.workflow.prepare import resolve_workers

log = logging.getLogger(__name__)


def check_same_cases(ds: Dataset, wdir: WorkDir) -> None:
    """A resumed training (or sweep) trains on its preprocessed cache and validates against the dataset: the cases of its
    split must still be the dataset's, and, when files changed (sizes, times), their content too (the fingerprint is
    computed again: edited images or labels are refused, files only touched go on). A fingerprint of an automed that
    recorded no voxel digest cannot tell: a warning."""
    fp = Fingerprint.load(wdir.fingerprint)
    if inputs_unchanged(ds, fp):
        return
    splits = read_splits(wdir.splits)
    split_ids = {c for f in splits["folds"] for part in ("train", "val") for c in f[part]}
    ids = {c.case_id for c in ds.cases}
    if split_ids != ids:
        gone, new = sorted(split_ids - ids), sorted(ids - split_ids)
        raise ArtifactError.single(
            ds.source,
            "a resumed training needs the cases it was split on",
            f"missing {gone[:5]}{' ...' if len(gone) > 5 else ''}, new {new[:5]}{' ...' if len(new) > 5 else ''}",
            "restore the dataset as it was, or start a new training with -o NEW_WORKDIR",
        )
    if fp.voxels_digest is not None:
        n = max(1, len(ds.cases))
        now = extract_fingerprint(ds, workers=resolve_workers(None), seed=fp.seed,
                                  sample_budget=fp.samples_per_case * n, show_progress=False)  # fmt: skip
        if now.hash == fp.hash:
            return  # touched, copied or moved: the same content
        raise ArtifactError.single(
            ds.source, "a resumed training trains and validates on the data it began with (the resumed folds train "
            "on the preprocessed cache of then, validation reads the files as they are now)",
            "images or labels edited since it began (fingerprint.json's voxel digest differs)",
            "restore the files as they were to resume, or train the changed data into a new --output",
        )  # fmt: skip
    log.warning(
        "%s: the dataset's files changed since this training began (sizes or times); the resumed folds train on "
        "the preprocessed cache of then while validation reads the files as they are now (edited labels mix two "
        "versions in the CV): to train on the changed data, train into a new --output",
        ds.source,
    )


def dataset_now(saved: str, given: str | Path | None, resume: str) -> str | Path:
    """The dataset a resume continues with: the saved place, or where a moved one is now (``given``; its cases are
    checked by ``check_same_cases``). A missing one without a new place is a clear error naming the ``resume``
    command, not a missing-file message from deep in loading."""
    if Path(saved).exists():
        return saved
    if not given:
        raise ArtifactError.single(
            saved,
            "a resumed training or sweep reads the dataset it was started on (validation is scored on its images)",
            "missing: moved or deleted",
            f"if it moved, give its new place: {resume}",
        )
    return given
