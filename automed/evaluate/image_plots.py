"""Figures for image-level tasks: ROC and precision-recall curves, the confusion matrix, a reliability diagram
(classification), and predicted-vs-true with residuals (regression).

Every function returns a ``matplotlib.figure.Figure`` built without pyplot (no backend, no global figure
registry); the caller saves it (``fig.savefig``) and may drop it or pass it to ``plt.close``.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from automed.evaluate.image_level import (
    _check_classification,
    _check_regression,
    calibration_bins,
    expected_calibration_error,
    regression_metrics,
)


def roc_pr_figure(y_true: np.ndarray, proba: np.ndarray, class_names: list[str]) -> Figure:
    """Two panels: one-vs-rest ROC (AUC in the legend) and precision-recall (average precision) per class.

    A class without true cases is left out of both panels; one without other cases is left out of the ROC panel.
    """
    y, p = _check_classification(y_true, proba)
    fig = Figure(figsize=(11, 5))
    ax_roc, ax_pr = fig.subplots(1, 2)
    for k, name in enumerate(class_names):
        pos = (y == k).astype(np.int64)
        if not pos.any():
            continue
        if not pos.all():
            fpr, tpr, _ = roc_curve(pos, p[:, k])
            ax_roc.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(pos, p[:, k]):.3f})")
        precision, recall, _ = precision_recall_curve(pos, p[:, k])
        ax_pr.step(
            recall, precision, where="post", label=f"{name} (AP {average_precision_score(pos, p[:, k]):.3f})"
        )
    ax_roc.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    ax_roc.set(
        xlabel="False positive rate (1 - specificity)",
        ylabel="True positive rate (sensitivity)",
        title="ROC curves (one class vs rest)",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax_pr.set(
        xlabel="Recall (sensitivity)",
        ylabel="Precision",
        title="Precision-recall curves (one class vs rest)",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    for ax in (ax_roc, ax_pr):
        ax.legend(loc="lower right", fontsize="small")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def confusion_figure(cm: list[list[int]], class_names: list[str]) -> Figure:
    """Confusion matrix with the count in every cell (rows: true class, columns: predicted class)."""
    m = np.asarray(cm, dtype=np.int64)
    k = len(class_names)
    if m.shape != (k, k):
        raise ValueError(f"confusion matrix of shape {m.shape} for {k} classes")
    side = max(4.0, 1.0 + 0.7 * k)
    fig = Figure(figsize=(side + 1, side))
    ax = fig.subplots()
    ax.imshow(m, cmap="Blues", vmin=0, vmax=max(int(m.max()), 1))
    threshold = m.max() / 2 if m.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(int(m[i, j])),
                ha="center",
                va="center",
                color="white" if m[i, j] > threshold else "black",
            )
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set(xlabel="Predicted class", ylabel="True class", title=f"Confusion matrix ({int(m.sum())} cases)")
    fig.tight_layout()
    return fig


def calibration_figure(y_true: np.ndarray, proba: np.ndarray, class_names: list[str]) -> Figure:
    """Reliability diagram of the top-class confidence in 10 bins, with the diagonal and the ECE in the title."""
    y, p = _check_classification(y_true, proba)
    if len(class_names) != p.shape[1]:
        raise ValueError(f"{len(class_names)} class names for {p.shape[1]} probability columns")
    b = calibration_bins(y, p)
    ece = expected_calibration_error(y, p)
    lower = np.asarray(b["lower"])
    width = np.asarray(b["upper"]) - lower
    count = np.asarray(b["count"])
    filled = count > 0
    fig = Figure(figsize=(6, 6))
    ax = fig.subplots()
    ax.bar(
        lower[filled],
        np.asarray(b["accuracy"])[filled],
        width=width[filled],
        align="edge",
        edgecolor="black",
        alpha=0.7,
        label="accuracy in bin",
    )
    ax.plot(
        np.asarray(b["confidence"])[filled],
        np.asarray(b["accuracy"])[filled],
        "o",
        color="C1",
        label="accuracy at mean bin confidence",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    for lo, w, c in zip(lower[filled], width[filled], count[filled], strict=True):
        ax.text(lo + w / 2, 0.02, str(int(c)), ha="center", va="bottom", fontsize="x-small")
    ax.set(
        xlabel="Confidence of the predicted class",
        ylabel="Fraction correct",
        title=f"Reliability diagram (ECE {ece:.3f}, {len(y)} cases)",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _fmt(x: float | None) -> str:
    return "undefined" if x is None else f"{x:.3g}"


def regression_figure(y_true: np.ndarray, y_pred: np.ndarray) -> Figure:
    """Two panels: predicted vs true with the identity line (MAE and R² in the title), and a residual histogram."""
    t, p = _check_regression(y_true, y_pred)
    m = regression_metrics(t, p)
    fig = Figure(figsize=(11, 5))
    ax_sc, ax_res = fig.subplots(1, 2)
    ax_sc.scatter(t, p, s=16, alpha=0.7, edgecolors="none")
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    ax_sc.plot([lo - pad, hi + pad], [lo - pad, hi + pad], linestyle="--", color="grey", label="identity")
    ax_sc.set(
        xlabel="True value",
        ylabel="Predicted value",
        title=f"Predicted vs true (MAE {_fmt(m['mae'])}, R² {_fmt(m['r2'])})",
        xlim=(lo - pad, hi + pad),
        ylim=(lo - pad, hi + pad),
    )
    ax_sc.set_aspect("equal")
    ax_sc.legend(loc="upper left", fontsize="small")
    ax_sc.grid(alpha=0.3)
    residuals = p - t
    ax_res.hist(residuals, bins=min(30, max(5, t.size // 3)), edgecolor="black", alpha=0.7)
    ax_res.axvline(0.0, linestyle="--", color="grey")
    ax_res.set(
        xlabel="Residual (predicted - true)",
        ylabel="Number of cases",
        title=f"Residuals (mean error {_fmt(m['mean_error'])})",
    )
    ax_res.grid(alpha=0.3)
    fig.tight_layout()
    return fig
