"""``splits.json``: seeded k-fold cross-validation, grouped by subject, stratified when a class target exists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from automed.artifacts import content_hash, write_json_atomic
from automed.data.dataset import Dataset

SCHEMA_VERSION = 1


def make_splits(ds: Dataset, n_folds: int = 5, seed: int = 12345) -> dict[str, Any]:
    """Folds over case ids: cases of one subject (``PatientID``) never straddle train and validation."""
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    cases = sorted(ds.cases, key=lambda c: c.case_id)
    ids = [c.case_id for c in cases]
    groups = [c.subject for c in cases]
    n_groups = len(set(groups))
    k = min(n_folds, n_groups)
    reason = f"{k}-fold split of {len(ids)} cases in {n_groups} subject group(s), seed {seed}"
    if k < n_folds:
        reason += f" (asked for {n_folds}; only {n_groups} group(s))"
    folds: list[dict[str, list[str]]] = []
    if k < 2:
        folds = [{"train": ids, "val": ids}]
        reason = (
            "a single subject group: one fold that validates on its training data (like nnU-Net's fold 'all')"
        )
        method = "all"
    else:
        x = np.zeros(len(ids))
        strat = ds.task_type == "classification"
        if strat:
            y = np.array([int(c.value or 0) for c in cases])
            min_class = int(np.unique(y, return_counts=True)[1].min()) if y.size else 0
            strat = min_class >= k
        if strat:
            splitter: Any = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
            it = splitter.split(x, y, groups)
            method = "StratifiedGroupKFold"
            reason += ", stratified by ValueToPredict"
        else:
            splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
            it = splitter.split(x, groups=groups)
            method = "GroupKFold"
        for tr, va in it:
            folds.append({"train": sorted(ids[i] for i in tr), "val": sorted(ids[i] for i in va)})
    return {
        "schema_version": SCHEMA_VERSION,
        "method": method,
        "n_folds": len(folds),
        "seed": seed,
        "cases_hash": content_hash(ids),
        "reason": reason,
        "folds": folds,
    }


def write_splits(ds: Dataset, path: Path, n_folds: int = 5, seed: int = 12345) -> dict[str, Any]:
    splits = make_splits(ds, n_folds, seed)
    write_json_atomic(path, splits)
    return splits
