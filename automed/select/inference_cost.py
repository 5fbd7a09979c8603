"""Inference cost choice on cross-validation: how much Dice each cheaper setting gives up, and how long it takes.

Measured on fold 0's validation cases (at most ``max_cases``) with fold 0's own network, so no case was seen in
training: mirror TTA on/off x window step 0.5/0.75 -> Dice and seconds per case (TTA over the training's mirror set;
when that is the even half, nnU-Net's all-eight at step 0.5 is timed too, as the reference a latency cap is set
from, not as a candidate). The number of fold networks in the
ensemble (1, 3, 5, ... up to the folds trained) is timed on the same cases; its Dice cannot be measured on CV (every
case was in the training set of the other folds), so it is not traded against Dice: all folds are kept unless a
latency target forces fewer. Choice: with ``latency_target`` the most accurate (tta, step) whose time with the most
folds that fit is within the target; without one, the cheapest (tta, step) whose Dice is within ``tolerance``
(0.5 % relative) of the best. Settings that compute the same on a case (a step whose windows are step 0.5's) share
one prediction and its time, so a tie goes to the one listed first (step 0.5), not to the noise of two timings.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np

from automed.data.cases import read_case
from automed.data.dataset import load_dataset
from automed.data.splits import read_splits
from automed.evaluate.summary import score
from automed.infer.predictor import Predictor
from automed.parallel import Stages
from automed.plan.schema import Plan
from automed.records import read_train_config
from automed.select.selection import dice_summary, dice_table
from automed.train.config import TrainConfig
from automed.train.meta import read_meta
from automed.workdir import WorkDir

TTA = (True, False)
STEPS = (0.5, 0.75)


def measure(
    workdir: Path,
    *,
    max_cases: int = 5,
    device: str | None = None,
    postprocessing: list[dict[str, Any]] | None = None,
    progress: Stages | None = None,
) -> dict[str, Any]:
    """The Dice/time table of one training work dir (see the module docstring), with ``postprocessing`` (default:
    the training's own) applied; ``progress`` shows the predictions as they are timed."""
    meta = read_meta(WorkDir(workdir).require_model())
    post = meta.inference.postprocessing if postprocessing is None else postprocessing
    dataset = read_train_config(WorkDir(workdir).train_config)["dataset"]
    plan = Plan.load(WorkDir(workdir).plan)
    return measure_folds(
        workdir, plan, meta.config, meta.folds, dataset, post, max_cases=max_cases, device=device,
        checkpoint=meta.checkpoint, mirrors=meta.inference.mirrors, progress=progress,
    )  # fmt: skip


def measure_folds(
    workdir: Path,
    plan: Plan,
    config: TrainConfig,
    folds: list[int],
    dataset: str,
    postprocessing: list[dict[str, Any]],
    *,
    max_cases: int = 5,
    device: str | None = None,
    checkpoint: str = "final",
    mirrors: str = "all",
    progress: Stages | None = None,
    deadline: float | None = None,
) -> dict[str, Any]:
    """:func:`measure` for ``folds`` of a training that has no ``model.json`` yet (training decides its own);
    after ``deadline`` (``time.perf_counter()``: a ``--budget``'s end) no further case is timed (the first always
    is: a budgeted training had spent 89 s timing five cases after its budget was used up).

    Each fold's weights are loaded once and each case preprocessed once (its time counted in every setting's); a
    setting that would compute exactly what an earlier one did for a case (the same networks, mirrorings and windows:
    step 0.75 on a case no larger than a few patches, one fold at step 0.5 with TTA) takes that prediction and its
    time instead of predicting the case again (``reused_cases``)."""
    splits = read_splits(WorkDir(workdir).splits)
    ds = load_dataset(dataset)
    by_id = {c.case_id: c for c in ds.cases}
    ids = splits["folds"][folds[0]]["val"][:max_cases]
    cases = [read_case(by_id[c], ds.images_are_4d) for c in ids]
    values = sorted(int(k) for k in plan.labels)
    counts = sorted({n for n in (1, 3, 5, len(folds)) if n <= len(folds)})
    base = Predictor.from_folds(
        workdir, plan, config, folds[: counts[-1]], checkpoint=checkpoint, device=device,
        postprocessing=postprocessing, mirrors=mirrors,
    )  # fmt: skip
    settings = [(tta, mirrors, step) for tta, step in itertools.product(TTA, STEPS)]
    if mirrors != "all":
        settings.append((True, "all", 0.5))  # nnU-Net's default: the reference, not a candidate
    # the settings on fold 0's network, then the fold counts (TTA over the training's mirror set, step 0.5)
    runs = [base.variant(1, tta=tta, step=step, mirrors=m) for tta, m, step in settings]
    runs += [base.variant(n, tta=True, step=0.5, mirrors=mirrors) for n in counts]
    labels: list[list[np.ndarray]] = [[] for _ in runs]
    seconds: list[list[float]] = [[] for _ in runs]
    reused = [0 for _ in runs]
    what = (
        f"inference timing: {len(settings)} settings and {len(counts)} fold count(s) on {len(cases)} case(s) "
        f"of fold {folds[0]}"
    )
    with (progress or Stages(show=False)).stage(what, len(runs) * len(cases)) as timed:
        for i, cd in enumerate(cases):
            if i and deadline is not None and time.perf_counter() > deadline:
                cases = cases[:i]  # the table is of the cases timed
                break
            t0 = time.perf_counter()
            pre = base.preprocess(cd.channels, cd.geometry)
            prep = time.perf_counter() - t0
            done: dict[tuple[object, ...], tuple[np.ndarray, float]] = {}
            for k, pred in enumerate(runs):
                work = pred.work(pre)
                if work in done:
                    reused[k] += 1
                else:
                    t0 = time.perf_counter()
                    res = pred.predict_preprocessed(pre, cd.channels, cd.geometry)
                    done[work] = (res.labels, prep + time.perf_counter() - t0)
                labels[k].append(done[work][0])
                seconds[k].append(done[work][1])
                timed()
    ids = ids[: len(cases)]
    rows = []
    for k, (tta, mirror_set, step) in enumerate(settings):
        per_case = []
        for pred_labels, cd in zip(labels[k], cases, strict=True):
            assert cd.label is not None
            per_case.append(dice_table(pred_labels, cd.label, values))
        s = dice_summary(per_case, values)
        rows.append(
            {
                "tta": tta,
                "mirrors": mirror_set if tta else "none",
                "step": step,
                "folds": 1,
                "candidate": mirror_set == mirrors,
                "dice": s["foreground_mean"],
                "seconds_per_case": float(np.mean(seconds[k])),
                "reused_cases": reused[k],
            }
        )
    fold_times = {n: float(np.mean(seconds[len(settings) + i])) for i, n in enumerate(counts)}
    return {"cases": ids, "settings": rows, "fold_seconds_per_case": fold_times, "base_folds": 1}


def mirror_label(row: dict[str, Any]) -> str:
    """A cost-table row's mirroring in words (tables of the model card and ``automed select``); nnU-Net's
    all-mirrors reference row is timed as the latency cap but is not a candidate."""
    m = str(row.get("mirrors", "all" if row["tta"] else "none"))
    return m if row.get("candidate", True) else f"{m} (reference, not a candidate)"


def single_model_seconds(table: dict[str, Any]) -> float:
    """Seconds per case of one fold network with nnU-Net's default inference (all eight mirrorings, window step
    0.5): the time ``nnUNetv2_predict`` of a single fold takes with a network of this size on this machine."""
    ref = [r for r in table["settings"] if r["tta"] and r["step"] == 0.5 and r.get("mirrors", "all") == "all"]
    return float(ref[0]["seconds_per_case"])


def choose(
    table: dict[str, Any], n_folds: int, latency_target: float | None = None, tolerance: float = 0.005
) -> dict[str, Any]:
    """Pick tta, step and the number of folds from :func:`measure`'s table."""
    # fold 0's cases may hold no structure at all (Dice undefined for every setting): then only time decides
    rows = [{**r, "dice": score(r["dice"])} for r in table["settings"] if r.get("candidate", True)]
    best = max(r["dice"] for r in rows)
    one_fold = {int(k): float(v) for k, v in table["fold_seconds_per_case"].items()}

    def scaled(r: dict[str, Any], n: int) -> float:  # setting r's time with n fold networks
        return float(r["seconds_per_case"] * one_fold[n] / max(one_fold[1], 1e-9))

    if latency_target is None:
        ok = [r for r in rows if r["dice"] >= best * (1 - tolerance)]
        pick = min(ok, key=lambda r: r["seconds_per_case"])
        n = n_folds
        reason = f"cheapest setting within {tolerance:.1%} of the best CV Dice ({best:.4f}); all {n_folds} folds kept"
    else:
        options = [
            (r, n) for r in rows for n in sorted(one_fold, reverse=True) if scaled(r, n) <= latency_target
        ]
        if not options:
            pick, n = min(((r, 1) for r in rows), key=lambda rn: scaled(*rn))
            reason = f"no setting meets {latency_target:.2f} s per case; the fastest one is used"
        else:
            pick, n = max(options, key=lambda rn: (rn[0]["dice"], rn[1], -scaled(*rn)))
            reason = f"most accurate setting within {latency_target:.2f} s per case"
    return {
        "tta": pick["tta"],
        # the training's mirror set stays whatever the pick (a later --tta, select or --folds all uses it)
        "mirrors": next((r.get("mirrors", "all") for r in rows if r["tta"]), "all"),
        "step": pick["step"],
        "folds": n,
        "expected_seconds_per_case": scaled(pick, n),
        "cv_dice_fold0": pick["dice"],
        "best_cv_dice_fold0": best,
        "reason": reason,
    }
