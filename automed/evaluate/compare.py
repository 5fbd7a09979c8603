"""Scoring predictions against references outside training (``automed metrics``): the problem type, per-case rows
and their summary for label maps (segmentation), class labels (classification) and values (regression).

Segmentation rows: one per case and label (every foreground label of ``labels``) and per region (a union of labels,
e.g. BraTS' whole tumour ``1,2,4``), with the metrics and empty-mask rules of :mod:`automed.evaluate.metrics`,
spacing-aware (the reference's spacing). A missing prediction is an error unless ``missing_value`` is given: then
every metric of that case is that value; or, with ``missing_empty``, it is scored as an empty label map (Dice 0 and
the worst-case distances where the reference holds the label: the empty-mask rules). Either way the case is counted
in ``n_missing``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from automed.data.io import Geometry, read_image
from automed.errors import DatasetError
from automed.evaluate.cells import check_voxels, refuse_partial_probabilities
from automed.evaluate.grid import on_reference_grid
from automed.evaluate.image_level import classification_metrics, regression_metrics
from automed.evaluate.metrics import METRIC_DEFINITIONS, label_metrics
from automed.evaluate.summary import METRICS, summarize
from automed.parallel import progress_bar
from automed.runtime.entry import as_class

log = logging.getLogger("automed")
Kind = Literal["segmentation", "classification", "regression", "synthesis"]
KINDS: tuple[Kind, ...] = ("segmentation", "classification", "regression", "synthesis")
MAX_CLASSES = 20  # integer values with more distinct values than this are a regression target
MAX_LABELS = 64  # an integer reference image with more distinct values than this is an intensity image


@dataclass(frozen=True)
class Pair:
    """One case: its reference (a path or a value), its prediction (``None``: missing) and, for classification,
    optional class probabilities."""

    case: str
    target: str
    prediction: str | None
    probabilities: dict[str, float] = field(default_factory=dict)
    mask: str | None = None  # synthesis: where to score
    where: str = ""  # the CSV row it came from (``file:row``), named in errors
    filled: bool = False  # the prediction is ``--missing-value``'s, not the model's


def _number(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def detect_kind(pairs: list[Pair]) -> Kind:
    """Images when the targets are files (label maps when the first reference holds few integer values, else
    synthesized intensities), else classes (text, or few distinct integers) or values."""
    targets = [p.target for p in pairs]
    if all(Path(t).suffix or "/" in t for t in targets) and all(_number(t) is None for t in targets):
        if any(p.mask is not None for p in pairs):  # a Mask column says where to score intensities
            return "synthesis"
        ref, _ = load_image(targets[0], pairs[0].case, "reference")
        integer = np.issubdtype(ref.dtype, np.integer) or bool(np.all(ref == np.round(ref)))
        n_values = np.unique(ref).size
        if integer and n_values <= MAX_LABELS:
            return "segmentation"
        if (
            integer and ref.min() >= 0
        ):  # a label map of many structures (TotalSegmentator's 117) looks the same
            log.warning(
                "%s: scored as synthesized intensity images (its %d integer values are more than a label map's %d); "
                "label maps of more structures: pass --problem segmentation (or --labels)",
                targets[0], n_values, MAX_LABELS,
            )  # fmt: skip
        return "synthesis"
    numbers = [_number(t) for t in targets]
    if any(v is None for v in numbers) or any(p.probabilities for p in pairs):
        # a table with class probabilities is a classifier's, whatever its classes' count (22 integer classes had
        # been scored as a regression: MAE instead of accuracy and AUC)
        return "classification"
    values = [v for v in numbers if v is not None]
    if all(float(v).is_integer() for v in values) and len(set(values)) <= MAX_CLASSES:
        return "classification"
    return "regression"


def image_channels(path: str, case: str, what: str) -> tuple[list[np.ndarray], Geometry]:
    """Every channel of an image (an RGB picture's three) and its geometry."""
    try:
        arrays, geo = read_image(Path(path))
    except DatasetError:  # already names the file, the rule and the fix
        raise
    except Exception as exc:
        raise DatasetError.single(
            path, f"the {what} of {case} must be a readable image", str(exc)[:200], "fix the path"
        ) from exc
    return list(arrays), geo


def load_image(path: str, case: str, what: str, *, labels: bool = False) -> tuple[np.ndarray, Geometry]:
    """The image's first channel and geometry; ``labels``: a label map, its voxels checked
    (:func:`automed.evaluate.cells.check_voxels`)."""
    arrays, geo = image_channels(path, case, what)
    if labels:
        check_voxels(arrays[0], path, f"{what} of {case}", labels=True)
    return arrays[0], geo


def _prediction(p: Pair, ref_geo: Geometry, *, labels: bool) -> np.ndarray:
    """The prediction's voxels on the reference's grid (:func:`automed.evaluate.grid.on_reference_grid`)."""
    assert p.prediction is not None
    pred, geo = load_image(p.prediction, p.case, "prediction", labels=labels)
    return on_reference_grid(pred, geo, ref_geo, p.prediction)


def segmentation_rows(
    pairs: list[Pair],
    labels: dict[int, str] | None,
    regions: dict[str, list[int]],
    *,
    tolerance: float = 1.0,
    missing_value: float | None = None,
    missing_empty: bool = False,
    show_progress: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, list[int]]]:
    """Per case, label and region: the metrics of :func:`automed.evaluate.metrics.label_metrics`, and the values
    predictions and references hold that were not scored (``{"prediction": [...], "reference": [...]}``). Without
    ``labels`` every foreground value found in a reference or a prediction is a label (one only predicted scores
    Dice 0 where the prediction has it: the one-empty rule); with ``labels``, values outside them and the regions
    are not scored and returned. One case in memory at a time."""
    names = labels or {
        int(v): str(int(v))
        for p in pairs
        for v in np.unique(load_image(p.target, p.case, "reference", labels=True)[0]).tolist()
        if int(v) != 0
    }
    missing: float | Literal["empty"] | None = "empty" if missing_empty else missing_value
    rows, extra = _label_rows(pairs, names, regions, tolerance, missing, show_progress)
    if labels is None and extra["prediction"]:  # a value only predictions hold: a second pass for those alone
        more, _ = _label_rows(
            pairs, {v: str(v) for v in sorted(extra["prediction"])}, {}, tolerance, missing, show_progress
        )
        return rows + more, {"prediction": [], "reference": []}
    in_regions = {v for vals in regions.values() for v in vals}
    return rows, {k: sorted(v - in_regions) for k, v in extra.items()}


def _label_rows(
    pairs: list[Pair],
    names: dict[int, str],
    regions: dict[str, list[int]],
    tolerance: float,
    missing: float | Literal["empty"] | None,
    show_progress: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, set[int]]]:
    """The rows of ``names`` and ``regions``, and the foreground values predictions and references hold outside
    ``names``."""
    groups = {str(v): ([v], n) for v, n in sorted(names.items()) if v != 0}
    groups.update({f"region:{n}": (vals, n) for n, vals in regions.items()})
    rows: list[dict[str, Any]] = []
    extra: dict[str, set[int]] = {"prediction": set(), "reference": set()}
    with progress_bar(disable=not show_progress) as bar:  # HD95/ASSD/NSD of large volumes take seconds a case
        task = bar.add_task("metrics", total=len(pairs))
        for p in pairs:
            rows += _case_rows(p, groups, names, tolerance, missing, extra)
            bar.advance(task)
    return rows, extra


def _case_rows(
    p: Pair,
    groups: dict[str, tuple[list[int], str]],
    names: dict[int, str],
    tolerance: float,
    missing: float | Literal["empty"] | None,
    extra: dict[str, set[int]],
) -> list[dict[str, Any]]:
    """One case's rows (``extra`` takes the foreground values its prediction and reference hold outside
    ``names``). A missing prediction scores ``missing`` per metric, or as an empty label map (``"empty"``)."""
    rows: list[dict[str, Any]] = []
    ref, geo = load_image(p.target, p.case, "reference", labels=True)
    pred = None if p.prediction is None else _prediction(p, geo, labels=True)
    empty = pred is None and missing == "empty"
    if empty:
        pred = np.zeros_like(ref)
    for side, image in (("prediction", pred), ("reference", ref)):
        if image is not None:
            extra[side] |= {int(v) for v in np.unique(image).tolist() if int(v) != 0 and int(v) not in names}
    for key, (values, name) in groups.items():
        row: dict[str, Any] = {"case": p.case, "label": key, "name": name}
        if pred is None:
            assert missing is not None, "the caller refuses missing predictions without a value"
            row.update({m: missing for m in METRICS}, missing=True)
        else:
            m = label_metrics(np.isin(ref, values), np.isin(pred, values), geo.spacing_zyx, tolerance)
            row.update(m.to_dict(), missing=empty)
        rows.append(row)
    return rows


def segmentation_summary(rows: list[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """:func:`automed.evaluate.summary.summarize` (means over defined cases, foreground mean over the labels; regions
    reported apart), with the missing-case count and the definitions."""
    plain = [r for r in rows if not str(r["label"]).startswith("region:")]
    regions = [r for r in rows if str(r["label"]).startswith("region:")]
    out = summarize(plain)
    if regions:
        out["regions"] = summarize(regions)["mean"]
    out["n_cases"] = len({r["case"] for r in rows})
    out["n_missing"] = len({r["case"] for r in rows if r.get("missing")})
    out["nsd_tolerance_mm"] = tolerance
    out["definitions"] = METRIC_DEFINITIONS
    return out


def _named_classes(p: Pair) -> Pair:
    """One spelling per class (:func:`automed.runtime.entry.as_class`: ``1``, ``1.0`` and `` 1`` are class ``1``)."""
    return replace(
        p,
        target=as_class(p.target),
        prediction=None if p.prediction is None else as_class(p.prediction),
        probabilities={as_class(k): v for k, v in p.probabilities.items()},
    )


def _classes(pairs: list[Pair]) -> list[str]:
    found = {p.target for p in pairs} | {p.prediction for p in pairs if p.prediction is not None}
    named = {k for p in pairs for k in p.probabilities}
    return sorted(found | named, key=lambda c: (_number(c) is None, _number(c) or 0.0, c))


def _fraction(text: str) -> bool:
    """A number with a fractional part (``180.2``): a regression model's value, never an automed class."""
    v = _number(text)
    return v is not None and not v.is_integer()


def _refuse_or_warn_foreign(scored: list[Pair]) -> None:
    """Predicted labels the reference never holds. The tables do not belong together (refused) when the model's
    classes (its predicted labels and probability columns) share none with the reference's (another task's classes,
    class indices against class names, a regression model's values), or when a label the reference lacks is a
    number with a fraction while no reference class is (a regression model's value). A few cases predicted as a
    class the reference has no case of (a test set without that class) are scored as wrong, and said."""
    own = [p for p in scored if not p.filled]
    predicted = {str(p.prediction) for p in own}
    reference = {p.target for p in scored}
    foreign = sorted(predicted - reference, key=lambda c: (_number(c) is None, _number(c) or 0.0, c))
    if not foreign:
        return
    model = predicted | {c for p in own for c in p.probabilities}
    values = [c for c in foreign if _fraction(c)] if not any(map(_fraction, reference)) else []
    n = sum(str(p.prediction) in foreign for p in own)
    numbers = all(_number(c) is not None for c in reference)

    def kind(c: str) -> bool:
        return _number(c) is not None

    # a test set of one class, predicted as another class of the same kind by a model with hard labels only, is a
    # score (0), said below; disjoint classes of two or more, or of another kind (names against indices), are not
    other_kind = {kind(c) for c in model} != {kind(c) for c in reference}
    if values or (not model & reference and (len(reference) > 1 or other_kind)):
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        classes = sorted(reference, key=lambda c: (_number(c) is None, _number(c) or 0.0, c))
        where = next((p.where for p in scored if p.where), "")
        raise DatasetError.single(
            where.rsplit(":", 1)[0] or scored[0].case,
            "the predictions' labels must be classes of this reference"
            + (" (a number with a fraction is a regression model's value, not a class)" if values else ""),
            f"prediction(s) {shown} in {n} of {len(own)} case(s); the reference's classes "
            + ", ".join(classes[:10])
            + (f" and {len(classes) - 10} more" if len(classes) > 10 else ""),
            "the reference's targets are numbers: score them as values with --problem regression"
            if values and numbers
            else "score a regression model's predictions against a reference of numbers (the dataset CSV it was "
            "trained on), and these classes with the predictions of a model trained on them"
            if values
            else "score the predictions of a model trained on these classes, each class spelled as the reference "
            "spells it (its name, not its index); a model that knows these classes but predicted none of them: "
            "add its probability_<class> columns",
        )
    log.warning(
        "the predictions name class(es) %s that the reference never holds (%d of %d case(s)): scored as wrong, as "
        "for a test set without cases of a class the model predicts; if they are spellings of the reference's "
        "classes, write them as the reference does",
        ", ".join(foreign),
        n,
        len(own),
    )


def _refuse_or_warn_uncovered(scored: list[Pair], uncovered: list[str]) -> None:
    """Classes without a probability column. One the Prediction column names is refused (its AUC would come from
    zeros); one only references hold is a class the model does not predict (a reference of more classes than the
    model's own ``predictions.csv``): it is scored with probability 0, and said."""
    predicted = {p.prediction for p in scored}
    if named_but_missing := [c for c in uncovered if c in predicted]:
        raise DatasetError.single(
            scored[0].where.split(":")[0] or scored[0].case,
            "probability columns cover every predicted class, or there are none",
            f"no probability_{named_but_missing[0]}"
            + (f" (and {len(named_but_missing) - 1} more)" if len(named_but_missing) > 1 else ""),
            "add the missing probability columns, or leave out all of them (AUC from hard labels)",
        )
    n = sum(p.target in uncovered for p in scored)
    log.warning(
        "the predictions never name class(es) %s of the reference (no probability column, never predicted; %d "
        "case(s)): scored as predicted with probability 0, so their AUC is 0.5 and every such case is wrong",
        ", ".join(uncovered),
        n,
    )


def classification_result(pairs: list[Pair]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-case rows (target, prediction, correct) and the classification metrics: accuracy, confusion and the
    per-class rates count the Prediction column (it may come from a tuned threshold), AUC and calibration the
    probability columns. Two classes with one probability column: the other is its complement. Without
    probability columns the predicted class counts as probability 1 (AUC from hard labels, said in the summary)."""
    pairs = [_named_classes(p) for p in pairs]
    scored = [p for p in pairs if p.prediction is not None]  # the caller filled or refused missing ones
    _refuse_or_warn_foreign(scored)
    classes = _classes(scored)
    index = {c: i for i, c in enumerate(classes)}
    proba = np.zeros((len(scored), len(classes)))
    refuse_partial_probabilities(scored)
    soft = bool(scored) and all(p.probabilities for p in scored)
    if not soft and any(p.probabilities for p in scored):  # only --missing-value's rows lack them
        log.warning(
            "AUC and calibration from hard labels: %d prediction(s) --missing-value filled in have no probabilities "
            "(the others' probability columns are not used)",
            sum(not p.probabilities for p in scored),
        )
    named = {c for p in scored for c in p.probabilities}
    uncovered = [c for c in classes if c not in named]
    if soft and uncovered and not (len(classes) == 2 and len(named) == 1):
        _refuse_or_warn_uncovered(scored, uncovered)
    for i, p in enumerate(scored):
        if soft:
            given = dict(p.probabilities)
            if len(classes) == 2 and len(given) == 1:  # binary with only probability_<positive>
                other = next(c for c in classes if c not in given)
                given[other] = 1.0 - next(iter(given.values()))
            proba[i] = [given.get(c, 0.0) for c in classes]
        else:
            proba[i, index[str(p.prediction)]] = 1.0
    y = np.array([index[p.target] for p in scored])
    decisions = np.array([index[str(p.prediction)] for p in scored])
    summary = classification_metrics(y, proba, classes, decisions)
    summary.update(classes=classes, auc_from="probabilities" if soft else "hard labels")
    if soft:  # scores that are not probabilities (per-class sigmoids, percentages) make ECE meaningless
        off = int((np.abs(proba.sum(axis=1) - 1.0) > 0.01).sum())
        summary["rows_whose_probabilities_do_not_sum_to_1"] = off
    rows = [
        {"case": p.case, "target": p.target, "prediction": p.prediction, "correct": p.prediction == p.target}
        for p in pairs
    ]
    return rows, summary


def regression_result(pairs: list[Pair]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-case rows (target, prediction, error) and the regression metrics."""
    t, p, rows = [], [], []
    for pair in pairs:
        target = _number(pair.target)
        pred = _number(pair.prediction) if pair.prediction is not None else None
        if target is None or pred is None:
            raise DatasetError.single(
                pair.where or pair.case,
                "regression targets and predictions are finite numbers",
                f"case {pair.case}: target {pair.target!r}, prediction {pair.prediction!r}",
                "write a finite number in both columns, or drop the row",
            )
        t.append(target)
        p.append(pred)
        rows.append({"case": pair.case, "target": target, "prediction": pred, "error": pred - target})
    return rows, regression_metrics(np.array(t), np.array(p))
