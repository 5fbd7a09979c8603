"""Model selection and postprocessing on cross-validation predictions (``automed select``, and the end of
``automed train``).

Evidence: every fold's validation probabilities (``train/<cfg>/fold_<k>/validation/<case>.npz``, original geometry)
and the reference label maps. Candidates: each training (one configuration, all its folds) and, with several
trainings, each pair averaged (mean probabilities). The candidate with the best CV foreground Dice (mean over labels
of the mean over cases; cases where both masks are empty excluded) is chosen. Postprocessing is then decided on it:
first a class bias (log-probability offsets before the argmax, :mod:`automed.select.class_bias`), then nnU-Net's
way: "largest connected component of all foreground", then per label "largest component of that label", each kept
only if the foreground mean Dice improves and no label's Dice gets worse. ``selection.json`` records the evidence
table and every decision.
"""

from __future__ import annotations

import itertools
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from automed.artifacts import write_json_atomic
from automed.data.cases import read_case
from automed.data.dataset import load_dataset
from automed.data.splits import read_splits
from automed.errors import ArtifactError, Problem
from automed.parallel import Stages
from automed.records import read_keyed, read_train_config, shown
from automed.runtime.postprocess import CLASS_BIAS, apply, class_bias, decide
from automed.select.class_bias import decide_class_bias
from automed.select.names import candidate_names
from automed.train.config import TrainConfig
from automed.workdir import ALL_DATA, SELECTION, WorkDir, require, with_relative_members

SELECTION_FILE = SELECTION
EPS = 1e-6


@dataclass(frozen=True)
class Training:
    """One finished ``automed train`` work dir: where each case's CV probabilities are."""

    workdir: Path
    name: str
    configuration: str
    probs: dict[str, Path]  # case -> validation probabilities
    label_values: list[int]
    dataset: str

    @classmethod
    def of(
        cls, workdir: Path, configuration: str, folds: list[int], label_values: list[int], dataset: str
    ) -> Training:
        """The CV evidence of ``folds`` of a training (every validation case needs its saved probabilities)."""
        wd = WorkDir(workdir)
        probs: dict[str, Path] = {}
        splits = read_splits(wd.splits)
        for fold in folds:
            vdir = wd.fold(configuration, int(fold)) / "validation"
            for cid in splits["folds"][int(fold)]["val"]:
                f = vdir / f"{cid}.npz"
                if not f.is_file():
                    raise ArtifactError.single(
                        f,
                        "every validation case of every fold needs its saved probabilities",
                        "missing",
                        "re-run the training",
                    )
                probs[cid] = f
        return cls(workdir, workdir.name, configuration, probs, sorted(label_values), dataset)


def load_training(workdir: Path) -> Training:
    wd = WorkDir(workdir)
    require(wd.train_config, "a finished training's train_config.json", f"automed train DATASET -o {workdir}")
    meta, configuration = _selected_meta(wd.require_model())
    if ALL_DATA in meta["folds"]:  # its fold -1 had been read as the split's last fold: "re-run the training"
        raise ArtifactError.single(
            workdir,
            "select compares trainings by their cross-validation; an all-data model (train --folds all) has none",
            "an all-data model (fold_all)",
            "select the cross-validation training whose evidence it inherits (its --cv work dir), then predict, "
            "export or package the all-data model itself",
        )
    dataset = read_train_config(wd.train_config)["dataset"]
    return Training.of(workdir, configuration, meta["folds"], [int(k) for k in meta["labels"]], dataset)


# what selection reads of model.json: each key's type and, in words, what it is
_META_KEYS: tuple[tuple[str, Any, str], ...] = (
    ("config", dict[str, Any], "the training config, an object"),
    ("folds", list[int], "the trained folds, whole numbers"),
    ("labels", dict[str, str], "an object of label value to name"),
)


def _selected_meta(path: Path) -> tuple[dict[str, Any], str]:
    """A training's ``model.json``, only what selection needs (folds, labels) and its configuration; a damaged one
    is refused naming the file, each rule, the value and the fix (it had crashed select with a bare
    JSONDecodeError, KeyError or pydantic ValidationError)."""
    fix = "re-run the training (it writes model.json anew)"
    meta = read_keyed(path, _META_KEYS, fix, needed_by=" for selection")
    if not all(k.isdigit() for k in meta["labels"]):
        rule = "model.json's labels must be keyed by label value (a whole number)"
        raise ArtifactError.single(path, rule, shown(meta["labels"]), fix)
    try:
        config = TrainConfig.model_validate(meta["config"])
    except ValidationError as exc:
        problems = [
            Problem(str(path), f"model.json's config.{'.'.join(map(str, e['loc']))}: {e['msg']}",
                    shown(e.get("input")), fix)
            for e in exc.errors()
        ]  # fmt: skip
        raise ArtifactError(problems) from exc
    result: dict[str, Any] = meta
    return result, config.configuration


def dice_table(pred: np.ndarray, ref: np.ndarray, values: list[int]) -> dict[int, float]:
    """Dice of each foreground value of ``values`` (NaN where neither map holds it). Label maps of non-negative
    integers are counted in a few passes whatever the number of labels; anything else value by value."""
    if _countable(pred) and _countable(ref):
        n = max(int(pred.max(initial=0)), int(ref.max(initial=0)), *values) + 1
        sizes = np.bincount(pred.ravel(), minlength=n) + np.bincount(ref.ravel(), minlength=n)
        hits = np.bincount(pred[pred == ref].ravel(), minlength=n)
        return {
            v: math.nan if sizes[v] == 0 else 2.0 * float(hits[v]) / int(sizes[v]) for v in values if v != 0
        }
    return _dice_by_value(pred, ref, values)


def _dice_by_value(pred: np.ndarray, ref: np.ndarray, values: list[int]) -> dict[int, float]:
    """:func:`dice_table` by comparing the maps with each value (three passes per value)."""
    out = {}
    for v in values:
        if v == 0:
            continue
        a, b = pred == v, ref == v
        denom = int(a.sum()) + int(b.sum())
        out[v] = math.nan if denom == 0 else 2.0 * float((a & b).sum()) / denom
    return out


def _countable(labels: np.ndarray) -> bool:
    """Integers from 0 to a bound bincount can hold (a label map), so that each value can be counted in one pass."""
    return (
        (labels.dtype.kind in "ib" or (labels.dtype.kind == "u" and labels.dtype.itemsize < 8))
        and (labels.size == 0 or int(labels.min()) >= 0)
        and int(labels.max(initial=0)) < 1 << 20
    )


def dice_summary(per_case: list[dict[int, float]], values: list[int]) -> dict[str, Any]:
    per_label = {}
    for v in values:
        if v == 0:
            continue
        xs = [c[v] for c in per_case if not math.isnan(c[v])]
        per_label[str(v)] = float(np.mean(xs)) if xs else math.nan
    fg = [x for x in per_label.values() if not math.isnan(x)]
    return {"dice": per_label, "foreground_mean": float(np.mean(fg)) if fg else math.nan}


def _mean(prob_files: list[Path]) -> np.ndarray:
    total: np.ndarray | None = None
    for f in prob_files:
        p = _probabilities(f)
        total = p if total is None else total + p
    assert total is not None
    return total / len(prob_files)


def _labels(prob_files: list[Path], values: list[int], offsets: list[float] | None = None) -> np.ndarray:
    out: np.ndarray = np.asarray(values, dtype=np.int16)[decide(_mean(prob_files), offsets)]
    return out


def _better(after: dict[str, Any], before: dict[str, Any]) -> bool:
    if not after["foreground_mean"] > before["foreground_mean"] + EPS:
        return False
    return all(
        math.isnan(b) or (not math.isnan(after["dice"][k]) and after["dice"][k] >= b - EPS)
        for k, b in before["dice"].items()
    )


def select(
    workdirs: list[Path], out: Path, *, write: bool = True, progress: Stages | None = None
) -> dict[str, Any]:
    """Compare the trainings and their pairs, decide postprocessing on the best, write ``OUT/selection.json``
    (unless ``write`` is false: a caller that adds to the result writes it once, complete); ``progress`` shows the
    scoring, the class bias and the largest components case by case."""
    trainings = [load_training(Path(w).resolve()) for w in workdirs]
    return select_trainings(trainings, out, write=write, progress=progress)


def select_trainings(
    trainings: list[Training], out: Path, *, write: bool = True, progress: Stages | None = None
) -> dict[str, Any]:
    """:func:`select` on trainings given by their CV evidence."""
    stages = progress or Stages(show=False)
    first = trainings[0]
    for t in trainings[1:]:
        if set(t.probs) != set(first.probs) or t.label_values != first.label_values:
            raise ArtifactError.single(
                t.workdir,
                "trainings compared in one selection must cover the same cases and labels",
                f"{len(t.probs)} cases vs {len(first.probs)}",
                "train them on the same dataset with the same folds",
            )
    values = first.label_values
    ds = load_dataset(first.dataset)
    by_id = {c.case_id: c for c in ds.cases}
    cases = sorted(first.probs)
    # cases gone from the dataset (patches mined again there) had been a KeyError mid-scoring
    if gone := [c for c in cases if c not in by_id]:
        raise ArtifactError.single(
            first.dataset, "a selection scores the trainings' CV cases against the dataset's labels",
            f"{len(gone)} of {len(cases)} CV case(s) no longer in it (e.g. {gone[0]})",
            "restore the dataset the trainings were trained on, or train again on the dataset as it is now",
        )  # fmt: skip

    def reference(cid: str) -> np.ndarray:  # read case by case: nothing scales with the dataset in memory
        label = read_case(by_id[cid], ds.images_are_4d).label
        assert label is not None
        return label

    names = candidate_names([t.workdir for t in trainings])
    candidates: list[tuple[str, list[int]]] = [(n, [i]) for i, n in enumerate(names)]
    candidates += [
        (f"{names[i]} + {names[j]}", [i, j]) for i, j in itertools.combinations(range(len(trainings)), 2)
    ]
    per_candidate: list[list[dict[int, float]]] = [[] for _ in candidates]
    with stages.stage(f"scoring {len(candidates)} candidate(s) on {len(cases)} CV cases", len(cases)) as done:
        for cid in cases:
            ref = reference(cid)
            probs = [_probabilities(t.probs[cid]) for t in trainings]
            for k, (_, members) in enumerate(candidates):
                mean = np.sum([probs[m] for m in members], axis=0)
                per_candidate[k].append(
                    dice_table(np.asarray(values, dtype=np.int16)[mean.argmax(0)], ref, values)
                )
            done()
    table = [
        {
            "candidate": name,
            "members": [str(trainings[m].workdir) for m in members],
            **dice_summary(per_candidate[k], values),
        }
        for k, (name, members) in enumerate(candidates)
    ]
    best = max(table, key=lambda r: -1.0 if math.isnan(r["foreground_mean"]) else r["foreground_mean"])
    chosen = [trainings[names.index(n)] for n in best["candidate"].split(" + ")]
    base = dice_summary(per_candidate[table.index(best)], values)
    fg_values = [v for v in values if v != 0]
    decisions: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    current = base
    # 1) a class bias: offsets before the argmax (they change the labels every later step sees)
    evidence = ((_mean([m.probs[c] for m in chosen]), reference(c)) for c in cases)  # read as the search asks
    bias = decide_class_bias(evidence, values, baseline=base, n_cases=len(cases), progress=stages)
    decisions.append(
        {"step": "class bias", "kind": CLASS_BIAS, **{k: v for k, v in bias.items() if k != "step"}}
    )
    if bias["kept"]:
        steps.append(bias["step"])
        current = bias["after"]
    offsets = class_bias(steps)
    passes = 2 if len(fg_values) > 1 else 1
    with stages.stage("largest components", passes * len(cases)) as done:
        # 2) largest component of all foreground together (it can change every label)
        if len(fg_values) > 1:
            step = {"kind": "largest_component", "labels": fg_values}
            all_fg = []
            for c in cases:
                pred = apply(_labels([m.probs[c] for m in chosen], values, offsets), [step])
                all_fg.append(dice_table(pred, reference(c), values))
                done()
            after = dice_summary(all_fg, values)
            keep = _better(after, current)
            decisions.append(
                {"step": "all foreground", **step, "before": current, "after": after, "kept": keep}
            )
            if keep:
                steps.append(step)
                current = after
        # 3) per label: its largest component only changes that label (removed voxels become background, which
        # is not scored), so every label is measured in one pass, each by its own Dice (with many labels, scoring
        # every label for every label's variant had cost labels^2 x voxels per case)
        per_label: dict[int, list[dict[int, float]]] = {v: [] for v in fg_values}
        for c in cases:
            ref = reference(c)
            pred = apply(_labels([m.probs[c] for m in chosen], values, offsets), steps)
            for v in fg_values:
                per_label[v].append(
                    dice_table(apply(pred, [{"kind": "largest_component", "labels": [v]}]), ref, [v])
                )
            done()
    for v in fg_values:
        step = {"kind": "largest_component", "labels": [v]}
        variant = dice_summary(per_label[v], [v])
        after = {"dice": {**current["dice"], str(v): variant["dice"][str(v)]}}
        fg = [x for x in after["dice"].values() if not math.isnan(x)]
        after["foreground_mean"] = float(np.mean(fg)) if fg else math.nan
        keep = _better(after, current)
        decisions.append({"step": f"label {v}", **step, "before": current, "after": after, "kept": keep})
        if keep:
            steps.append(step)
            current = after
    result: dict[str, Any] = {
        "schema_version": 1,
        "criterion": "CV foreground mean Dice (mean over labels of the mean over cases; both-empty cases excluded)",
        "n_cases": len(cases),
        "candidates": table,
        "chosen": {
            "candidate": best["candidate"],
            "members": best["members"],
            "configurations": [m.configuration for m in chosen],
        },
        "postprocessing": steps,
        "decisions": decisions,
        "cv_dice_before_postprocessing": base,
        "cv_dice_final": current,
    }
    if write:  # a sweep's selection: its trials beside it, found again when the sweep folder moves whole
        out.mkdir(parents=True, exist_ok=True)
        result["chosen"] = with_relative_members(result["chosen"], out)
        write_json_atomic(out / SELECTION_FILE, result)
    return result


def _probabilities(path: Path) -> np.ndarray:
    """A validation case's saved probabilities; a damaged file (a run killed while writing it) is a clear error."""
    try:
        return np.asarray(np.load(path)["probabilities"], dtype=np.float32)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise ArtifactError.single(
            path,
            "a validation case's probabilities are readable",
            f"{type(exc).__name__}: {str(exc) or 'an empty or cut file'}"[:200],
            "re-validate the fold: automed train --resume WORKDIR (or train again)",
        ) from exc
