"""Metrics for image-level tasks: classification (one label per image) and regression (one number per image).

Inputs are numpy arrays; outputs are JSON-safe dicts (plain ``int``/``float``/``list``/``dict``, never NaN).

Classification: ``y_true`` holds class indices ``0..K-1`` (shape ``(n,)``), ``proba`` the class probabilities
(shape ``(n, K)``, rows summing to 1); the predicted class is the argmax of each row.

Undefined values are ``None`` (they never become 0 or NaN in the output):

- per-class AUC (one-vs-rest): ``None`` when the class has no true cases or no other cases in ``y_true``;
- ``auc_macro``: for K = 2 the AUC of class 1's probability; for K > 2 the mean of the per-class AUCs that are
  defined (classes absent from ``y_true`` are left out); ``None`` when no per-class AUC is defined (a single class
  in ``y_true``);
- per-class sensitivity: ``None`` without true cases; specificity: ``None`` without negatives; precision: ``None``
  when the class is never predicted; F1 = 2TP / (2TP + FP + FN): ``None`` when the class is neither present nor
  predicted. ``f1_macro`` averages over the classes present in ``y_true`` or predicted (scikit-learn's default);
- ``balanced_accuracy`` is the mean sensitivity over the classes present in ``y_true`` (scikit-learn's definition);
- regression ``r2``: ``None`` for fewer than 2 cases or a constant ``y_true``; ``pearson_r``: ``None`` for fewer
  than 2 cases or when either side is constant.

ECE: top-class confidence in 10 equal-width bins ``[0, 0.1], (0.1, 0.2], ..., (0.9, 1]``, the sum over non-empty
bins of ``(bin count / n) * |accuracy in bin - mean confidence in bin|``.

Empty inputs, mismatched shapes, out-of-range labels and non-finite values raise ``ValueError``.
The ranking scores (``classification_score``, ``regression_score``) are always finite; the per-epoch helpers
(``epoch_auc``, ``epoch_r2``) return NaN when undefined.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)

N_CALIBRATION_BINS = 10


def _opt(x: float | None) -> float | None:
    """A finite float, or None for None/NaN/inf."""
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def _ratio(num: int, den: int) -> float | None:
    return num / den if den > 0 else None


def _check_classification(y_true: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim == 1:  # a binary task given as the probability of class 1
        p = np.stack([1.0 - p, p], axis=1)
    if y.ndim != 1 or p.ndim != 2 or p.shape[0] != y.shape[0]:
        raise ValueError(f"y_true must be (n,) and proba (n, K); got {y.shape} and {p.shape}")
    if y.shape[0] == 0:
        raise ValueError("no cases to evaluate")
    if not np.all(np.isfinite(p)):
        raise ValueError("proba contains NaN or infinite values")
    if not np.all(np.equal(np.mod(y, 1), 0)):
        raise ValueError("y_true must hold integer class indices")
    yi = y.astype(np.int64)
    if yi.min() < 0 or yi.max() >= p.shape[1]:
        raise ValueError(f"class indices must lie in 0..{p.shape[1] - 1}; got {yi.min()}..{yi.max()}")
    return yi, p


def _check_regression(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in size: {t.shape} vs {p.shape}")
    if t.size == 0:
        raise ValueError("no cases to evaluate")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p))):
        raise ValueError("y_true or y_pred contains NaN or infinite values")
    return t, p


def _class_auc(y: np.ndarray, p: np.ndarray, k: int) -> float | None:
    """One-vs-rest AUC of class k; None without positives or without negatives."""
    pos = y == k
    if pos.all() or not pos.any():
        return None
    return float(roc_auc_score(pos.astype(np.int64), p[:, k]))


def _macro_auc(y: np.ndarray, p: np.ndarray) -> float | None:
    if p.shape[1] == 2:
        return _class_auc(y, p, 1)
    aucs = [a for k in range(p.shape[1]) if (a := _class_auc(y, p, k)) is not None]
    return float(np.mean(aucs)) if aucs else None


def calibration_bins(
    y_true: np.ndarray, proba: np.ndarray, n_bins: int = N_CALIBRATION_BINS
) -> dict[str, list[float]]:
    """Per-bin count, accuracy and mean top-class confidence (empty bins: count 0, accuracy/confidence NaN)."""
    y, p = _check_classification(y_true, proba)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    inner_edges = np.arange(1, n_bins) / n_bins  # bins are (lo, hi], the first also holds 0
    idx = np.searchsorted(inner_edges, conf, side="left")
    counts = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(idx, weights=correct, minlength=n_bins) / counts
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / counts
    return {
        "lower": [i / n_bins for i in range(n_bins)],
        "upper": [(i + 1) / n_bins for i in range(n_bins)],
        "count": counts.tolist(),
        "accuracy": acc.tolist(),
        "confidence": mean_conf.tolist(),
    }


def expected_calibration_error(
    y_true: np.ndarray, proba: np.ndarray, n_bins: int = N_CALIBRATION_BINS
) -> float:
    """ECE of the top-class confidence in ``n_bins`` equal-width bins, weighted by bin counts."""
    b = calibration_bins(y_true, proba, n_bins)
    n = sum(b["count"])
    return float(
        sum(
            c / n * abs(a - f)
            for c, a, f in zip(b["count"], b["accuracy"], b["confidence"], strict=True)
            if c > 0
        )
    )


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, class_names: list[str], decisions: np.ndarray | None = None
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro AUC and F1, ECE, the confusion matrix and per-class metrics.
    ``decisions``: the predicted class indices when they are not the most probable class (a tuned threshold);
    accuracy, the confusion matrix, sensitivity, specificity and F1 count them, AUC and ECE the probabilities."""
    y, p = _check_classification(y_true, proba)
    n_classes = p.shape[1]
    if len(class_names) != n_classes:
        raise ValueError(f"{len(class_names)} class names for {n_classes} probability columns")
    pred = p.argmax(axis=1) if decisions is None else np.asarray(decisions, dtype=np.int64)
    labels = list(range(n_classes))
    cm = confusion_matrix(y, pred, labels=labels)
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": documented, not an error
        warnings.simplefilter("ignore", UserWarning)
        bal = float(balanced_accuracy_score(y, pred))
    n = int(y.shape[0])
    per_class: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(class_names):
        tp = int(cm[k, k])
        fn = int(cm[k, :].sum()) - tp
        fp = int(cm[:, k].sum()) - tp
        tn = n - tp - fn - fp
        per_class[name] = {
            "n": tp + fn,
            "sensitivity": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp),
            "precision": _ratio(tp, tp + fp),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "auc": _class_auc(y, p, k),
        }
    return {
        "n_cases": n,
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": _opt(bal),
        "auc_macro": _macro_auc(y, p),
        "f1_macro": _opt(float(f1_score(y, pred, average="macro", zero_division=0))),
        "ece": _opt(expected_calibration_error(y, p)),
        "confusion_matrix": [[int(v) for v in row] for row in cm],
        "per_class": per_class,
    }


def _is_constant(a: np.ndarray) -> bool:
    return bool(np.all(a == a[0]))


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """MAE, RMSE, R², Pearson r and the mean error (bias, predicted minus true)."""
    t, p = _check_regression(y_true, y_pred)
    n = int(t.size)
    r2 = None if n < 2 or _is_constant(t) else _opt(float(r2_score(t, p)))
    pearson = None
    if n >= 2 and not _is_constant(t) and not _is_constant(p):
        pearson = _opt(float(stats.pearsonr(t, p).statistic))
    return {
        "n_cases": n,
        "mae": float(mean_absolute_error(t, p)),
        "rmse": math.sqrt(float(mean_squared_error(t, p))),
        "r2": r2,
        "pearson_r": pearson,
        "mean_error": float(np.mean(p - t)),
    }


def _finite(x: Any) -> float | None:
    return _opt(float(x)) if isinstance(x, int | float) and not isinstance(x, bool) else None


def classification_score(m: dict[str, Any]) -> float:
    """Ranking score: macro AUC, else balanced accuracy, else 0.0 (always finite)."""
    for key in ("auc_macro", "balanced_accuracy"):
        v = _finite(m.get(key))
        if v is not None:
            return v
    return 0.0


def regression_score(m: dict[str, Any]) -> float:
    """Ranking score: R² clipped below at -1.0; -1.0 when R² is undefined (always finite)."""
    v = _finite(m.get("r2"))
    return -1.0 if v is None else max(v, -1.0)


def epoch_auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    """The macro AUC of ``classification_metrics`` (``proba`` (n, K), or (n,) for class 1 of a binary task); NaN
    when undefined."""
    y, p = _check_classification(y_true, proba)
    v = _macro_auc(y, p)
    return float("nan") if v is None else v


def epoch_r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """R² as in ``regression_metrics``; NaN when undefined (fewer than 2 cases, constant ``y_true``)."""
    t, p = _check_regression(y_true, y_pred)
    if t.size < 2 or _is_constant(t):
        return float("nan")
    return float(r2_score(t, p))
