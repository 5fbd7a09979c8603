"""``splits.json``: seeded k-fold cross-validation, grouped by subject, stratified when a target exists: by class, or
for regression by quantile bins of the value (every fold then spans the range of values; unstratified, one 12-case
fold of the hippocampus volumes had a mean 330 mm³ below the others and four fifths of their spread)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from automed.artifacts import check_schema_version, content_hash, read_json, write_json_atomic
from automed.data.dataset import Dataset
from automed.errors import ArtifactError, Problem
from automed.records import key_problems, shown
from automed.workdir import WorkDir

SCHEMA_VERSION = 1

# what a damaged splits.json can do: never re-split in its place (the folds trained on it would change)
_KEEP = (
    "put back the splits.json automed wrote (from a backup): folds trained on a split need that very split, so "
    "automed never makes a new one in its place; or start anew in a new work dir (-o NEW_WORKDIR)"
)


_SPLIT_KEYS: tuple[tuple[str, Any, str], ...] = (
    ("n_folds", int, "the number of folds, a whole number"),
    ("folds", list[dict[str, list[str]]], "a list of folds, each with train and val lists of case ids"),
)


def read_splits(path: Path) -> dict[str, Any]:
    """A work dir's ``splits.json``, as every reader of it gets it: a JSON object of this schema
    (``schema_version`` 1; none recorded: 1) whose ``n_folds`` (a whole number, at least 1) counts its ``folds``,
    each an object with ``train`` and ``val`` lists of case ids (text). Anything else is refused naming the file,
    the rule, the value found and the fix (a damaged one had crashed with a bare JSONDecodeError, KeyError or
    TypeError): never treated as missing, since a new split would change the folds trained on it."""
    data = read_json(path, what="splits.json", damaged_fix=_KEEP)  # never "delete it": see _KEEP
    if not isinstance(data, dict):
        raise ArtifactError.single(path, "splits.json must be a JSON object", shown(data), _KEEP)
    check_schema_version(path, data, SCHEMA_VERSION, what="splits.json", missing=SCHEMA_VERSION)
    n, folds = data.get("n_folds"), data.get("folds")
    problems = key_problems(path, data, _SPLIT_KEYS, _KEEP)
    if not problems and isinstance(n, int) and isinstance(folds, list):
        problems += [
            Problem(str(path), f"splits.json's fold {i} must hold {part} (a list of case ids)",
                    shown(sorted(fold)), _KEEP)
            for i, fold in enumerate(folds)
            for part in ("train", "val")
            if part not in fold
        ]  # fmt: skip
        if n < 1 or n != len(folds):
            problems.append(
                Problem(
                    str(path),
                    "splits.json's n_folds must be at least 1 and count its folds",
                    f"n_folds {n}, {len(folds)} fold(s)",
                    _KEEP,
                )
            )
    if problems:
        raise ArtifactError(problems, f"splits.json in {path.parent} is damaged")
    return data


def make_splits(
    ds: Dataset, n_folds: int = 5, seed: int = 12345, *, stratify_rare_classes: bool = True
) -> dict[str, Any]:
    """Folds over case ids: cases of one subject (``PatientID``) never straddle train and validation.

    A class with fewer cases than folds still stratifies (its cases go to different folds);
    ``stratify_rare_classes=False`` is the split automed made before, unstratified then, which work dirs trained on
    it keep (:func:`check_splits`)."""
    import warnings

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
        if len(ids) > 1:  # its "cross-validation" scores are training scores: said where a person reads it
            logging.getLogger("automed").warning(
                "%d cases of one subject group (%s): no fold can hold a subject out, so the one fold validates on its "
                "training data and its cross-validation scores are training scores; cases of more subjects (mined "
                "patches: of more slides) give a true cross-validation", len(ids), groups[0],
            )  # fmt: skip
    else:
        x = np.zeros(len(ids))
        y, why = _strata(ds.task_type, [c.value for c in cases], k, stratify_rare_classes)
        if y is not None:
            splitter: Any = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
            # "least populated class ... less than n_splits": said in the reason
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                it = list(splitter.split(x, y, groups))
            method = "StratifiedGroupKFold"
            reason += f", stratified by {why}"
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


def _strata(
    task: str, values: list[float | None], k: int, rare_classes: bool = True
) -> tuple[np.ndarray | None, str]:
    """Class indices, or regression values binned at quantiles into bins of at least ``k`` cases (each fold then
    draws about one case of every bin); ``None`` when a value is missing (or, ``rare_classes`` false, when a class
    has fewer than ``k`` cases)."""
    if task not in ("classification", "regression") or any(v is None for v in values) or not values:
        return None, ""
    v = np.array([float(x) for x in values if x is not None])
    if task == "classification":
        y = v.astype(np.int64)
        counts = np.unique(y, return_counts=True)[1]
        smallest = int(counts.min())
        if smallest >= k:
            return y, "ValueToPredict"
        if not rare_classes or int(counts.max()) < k:  # every class under the fold count: none to stratify
            return None, ""
        return y, (
            f"ValueToPredict (a class has fewer cases than folds, {smallest}: those folds validate none of it)"
        )
    n_bins = len(v) // k
    if n_bins < 2:
        return None, ""
    ranks = np.argsort(np.argsort(v, kind="stable"), kind="stable")
    return np.minimum(ranks * n_bins // len(v), n_bins - 1), f"{n_bins} quantile bins of ValueToPredict"


def check_splits(ds: Dataset, path: Path, n_folds: int = 5, seed: int = 12345) -> None:
    """Folds trained on a work dir's ``splits.json`` keep it: another fold count (or another case list) for the
    same work dir is refused before anything is written, instead of replacing the split under finished folds."""
    if not (path.is_file() and WorkDir(path.parent).trained_checkpoints()):
        return
    old = read_splits(path)  # folds were trained on it: a damaged one is refused, never split anew
    new = json.loads(json.dumps(make_splits(ds, n_folds, seed)))
    if old == new or _earlier_split(ds, path, n_folds, seed) is not None:
        return
    k_old = int(old.get("n_folds", 0)) or 1
    same_cases = any(  # the split this automed makes of k_old folds, or the one an earlier automed made
        old.get("folds")
        == json.loads(json.dumps(make_splits(ds, k_old, seed, stratify_rare_classes=r))).get("folds")
        for r in (True, False)
    )
    if old.get("n_folds") != new["n_folds"] and same_cases:  # another fold count: the trained one continues
        differs = f"{old.get('n_folds')} folds trained, {new['n_folds']} asked"
        fix = f"train into a new --output (or ask for --folds {old.get('n_folds')} to continue this one)"
    else:
        differs = "the cases or their grouping changed since the folds were trained"
        fix = "train into a new --output, or restore the dataset as it was"
    raise ArtifactError.single(path, "the folds trained in a work dir keep its splits.json", differs, fix)


def _earlier_split(ds: Dataset, path: Path, n_folds: int, seed: int) -> dict[str, Any] | None:
    """``path``'s split when folds were trained on it and it is the one automed made before rare classes were
    stratified; else ``None``."""
    if not (path.is_file() and WorkDir(path.parent).trained_checkpoints()):
        return None
    old = read_splits(path)
    earlier = json.loads(json.dumps(make_splits(ds, n_folds, seed, stratify_rare_classes=False)))
    return old if old == earlier and old.get("method") == "GroupKFold" else None


def write_splits(ds: Dataset, path: Path, n_folds: int = 5, seed: int = 12345) -> dict[str, Any]:
    if (earlier := _earlier_split(ds, path, n_folds, seed)) is not None:
        return earlier  # folds trained on it continue on it
    splits = make_splits(ds, n_folds, seed)
    write_json_atomic(path, splits)
    return splits
