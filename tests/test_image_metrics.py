"""Image-level (classification and regression) metrics and figures, checked against scikit-learn and scipy."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure
from scipy.stats import pearsonr
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

from automed.evaluate.image_level import (
    calibration_bins,
    classification_metrics,
    classification_score,
    epoch_auc,
    epoch_r2,
    regression_metrics,
    regression_score,
)
from automed.evaluate.image_plots import (
    calibration_figure,
    confusion_figure,
    regression_figure,
    roc_pr_figure,
)

# binary: 8 cases, two mistakes (cases 3 and 6)
Y_BIN = np.array([0, 0, 0, 0, 1, 1, 1, 1])
P1_BIN = np.array([0.1, 0.3, 0.45, 0.7, 0.8, 0.6, 0.4, 0.95])
P_BIN = np.stack([1 - P1_BIN, P1_BIN], axis=1)

# three classes: 9 cases, three of each
Y_3 = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
P_3 = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.5, 0.3, 0.2],
        [0.2, 0.6, 0.2],  # 0 predicted as 1
        [0.1, 0.8, 0.1],
        [0.3, 0.4, 0.3],
        [0.2, 0.3, 0.5],  # 1 predicted as 2
        [0.1, 0.1, 0.8],
        [0.4, 0.2, 0.4],  # tie 0/2: argmax takes class 0
        [0.2, 0.2, 0.6],
    ]
)

# three classes, class 2 never occurs in y_true but is predicted once
Y_ABSENT = np.array([0, 0, 0, 1, 1, 1])
P_ABSENT = np.array(
    [
        [0.8, 0.1, 0.1],
        [0.6, 0.3, 0.1],
        [0.2, 0.3, 0.5],  # 0 predicted as 2
        [0.3, 0.6, 0.1],
        [0.5, 0.4, 0.1],  # 1 predicted as 0
        [0.1, 0.7, 0.2],
    ]
)
NAMES_3 = ["benign", "malignant", "normal"]


def _check_against_sklearn(y: np.ndarray, p: np.ndarray, names: list[str]) -> dict[str, Any]:
    m = classification_metrics(y, p, names)
    pred = p.argmax(axis=1)
    assert m["n_cases"] == len(y)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    with warnings.catch_warnings():  # sklearn warns when a class is predicted but absent from y_true
        warnings.simplefilter("ignore", UserWarning)
        assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["confusion_matrix"] == confusion_matrix(y, pred, labels=list(range(len(names)))).tolist()
    json.dumps(m, allow_nan=False)  # JSON-safe: no NaN, no numpy scalars
    return m


def test_binary_matches_sklearn() -> None:
    m = _check_against_sklearn(Y_BIN, P_BIN, ["negative", "positive"])
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["auc_macro"] == pytest.approx(roc_auc_score(Y_BIN, P1_BIN))
    pc = m["per_class"]
    assert pc["positive"]["n"] == 4
    assert pc["positive"]["sensitivity"] == pytest.approx(3 / 4)  # case 6 (0.4) missed
    assert pc["positive"]["specificity"] == pytest.approx(3 / 4)  # case 3 (0.7) false positive
    assert pc["positive"]["precision"] == pytest.approx(3 / 4)
    assert pc["positive"]["f1"] == pytest.approx(f1_score(Y_BIN, P_BIN.argmax(axis=1)))
    assert pc["positive"]["auc"] == pytest.approx(roc_auc_score(Y_BIN, P1_BIN))
    assert pc["negative"]["sensitivity"] == pytest.approx(pc["positive"]["specificity"])
    assert epoch_auc(Y_BIN, P_BIN) == pytest.approx(m["auc_macro"])
    assert epoch_auc(Y_BIN, P1_BIN) == pytest.approx(m["auc_macro"])  # (n,) = probability of class 1
    assert classification_score(m) == pytest.approx(m["auc_macro"])


def test_three_classes_match_sklearn() -> None:
    m = _check_against_sklearn(Y_3, P_3, NAMES_3)
    assert m["auc_macro"] == pytest.approx(roc_auc_score(Y_3, P_3, multi_class="ovr", average="macro"))
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 2, 1], [1, 0, 2]]
    for k, name in enumerate(NAMES_3):
        pc = m["per_class"][name]
        assert pc["n"] == 3
        assert pc["auc"] == pytest.approx(roc_auc_score(np.equal(Y_3, k), P_3[:, k]))
        assert pc["f1"] == pytest.approx(f1_score(Y_3, P_3.argmax(axis=1), labels=[k], average="macro"))
        assert pc["specificity"] == pytest.approx(
            5 / 6
        )  # every class has one false positive among 6 negatives


def test_class_absent_from_y_true() -> None:
    m = _check_against_sklearn(Y_ABSENT, P_ABSENT, NAMES_3)
    expected = np.mean([roc_auc_score(np.equal(Y_ABSENT, k), P_ABSENT[:, k]) for k in (0, 1)])
    assert m["auc_macro"] == pytest.approx(expected)
    assert epoch_auc(Y_ABSENT, P_ABSENT) == pytest.approx(expected)
    absent = m["per_class"]["normal"]
    assert absent["n"] == 0
    assert absent["sensitivity"] is None
    assert absent["auc"] is None
    assert absent["specificity"] == pytest.approx(5 / 6)  # predicted once among 6 negatives
    assert absent["precision"] == 0.0
    assert absent["f1"] == 0.0
    assert m["confusion_matrix"][2] == [0, 0, 0]
    # a class neither present nor predicted: precision and F1 are undefined too
    p = P_ABSENT.copy()
    p[2] = [0.4, 0.5, 0.1]
    never = classification_metrics(Y_ABSENT, p, NAMES_3)["per_class"]["normal"]
    assert never["precision"] is None and never["f1"] is None and never["sensitivity"] is None


def test_single_class_in_y_true_auc_undefined_and_score_falls_back() -> None:
    y = np.array([1, 1, 1])
    p = np.array([[0.2, 0.8], [0.6, 0.4], [0.1, 0.9]])
    m = classification_metrics(y, p, ["no", "yes"])
    assert m["auc_macro"] is None
    assert m["per_class"]["yes"]["specificity"] is None  # no negatives
    assert m["per_class"]["no"]["sensitivity"] is None  # no true cases
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)
    assert classification_score(m) == pytest.approx(2 / 3)
    assert math.isnan(epoch_auc(y, p))
    json.dumps(m, allow_nan=False)


def test_classification_score_fallbacks() -> None:
    assert classification_score({"auc_macro": 0.8, "balanced_accuracy": 0.6}) == 0.8
    assert classification_score({"auc_macro": None, "balanced_accuracy": 0.6}) == 0.6
    assert classification_score({"auc_macro": float("nan"), "balanced_accuracy": None}) == 0.0
    assert classification_score({}) == 0.0


def test_perfect_predictor() -> None:
    y = np.array([0, 1, 2, 0, 1, 2])
    p = np.full((6, 3), 0.005)
    p[np.arange(6), y] = 0.99
    m = classification_metrics(y, p, NAMES_3)
    assert m["auc_macro"] == 1.0
    assert m["accuracy"] == 1.0 and m["balanced_accuracy"] == 1.0 and m["f1_macro"] == 1.0
    assert m["ece"] == pytest.approx(0.01)  # always right at confidence 0.99
    assert all(m["per_class"][n]["sensitivity"] == 1.0 for n in NAMES_3)
    one_hot = np.eye(3)[y]
    assert classification_metrics(y, one_hot, NAMES_3)["ece"] == pytest.approx(0.0)


def test_ece_by_hand() -> None:
    # confidence 0.95 right, 0.92 wrong -> bin (0.9, 1]: 2 cases, accuracy 0.5, confidence 0.935
    # confidence 0.65 right -> bin (0.6, 0.7]; confidence 0.55 wrong -> bin (0.5, 0.6]
    y = np.array([1, 0, 0, 0])
    p = np.array([[0.05, 0.95], [0.08, 0.92], [0.65, 0.35], [0.45, 0.55]])
    expected = 2 / 4 * abs(0.5 - 0.935) + 1 / 4 * abs(1 - 0.65) + 1 / 4 * abs(0 - 0.55)
    assert expected == pytest.approx(0.4425)
    assert classification_metrics(y, p, ["a", "b"])["ece"] == pytest.approx(expected)
    b = calibration_bins(y, p)
    assert b["count"] == [0, 0, 0, 0, 0, 1, 1, 0, 0, 2]
    # bins are (lo, hi]: a confidence of exactly 0.6 belongs to (0.5, 0.6]
    assert calibration_bins(np.array([1]), np.array([[0.4, 0.6]]))["count"][5] == 1


def test_bad_classification_input() -> None:
    with pytest.raises(ValueError):
        classification_metrics(np.array([0, 1]), np.array([[0.5, 0.5]]), ["a", "b"])
    with pytest.raises(ValueError):
        classification_metrics(np.array([0, 3]), np.array([[0.5, 0.5], [0.5, 0.5]]), ["a", "b"])
    with pytest.raises(ValueError):
        classification_metrics(np.array([0, 1]), np.array([[0.5, 0.5], [0.5, 0.5]]), ["a", "b", "c"])
    with pytest.raises(ValueError):
        classification_metrics(np.array([], dtype=int), np.zeros((0, 2)), ["a", "b"])


Y_REG = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
P_REG = np.array([1.5, 1.8, 3.4, 3.9, 5.6, 5.5])


def test_regression_matches_sklearn_and_scipy() -> None:
    m = regression_metrics(Y_REG, P_REG)
    assert m["n_cases"] == 6
    assert m["mae"] == pytest.approx(mean_absolute_error(Y_REG, P_REG))
    assert m["rmse"] == pytest.approx(math.sqrt(mean_squared_error(Y_REG, P_REG)))
    assert m["r2"] == pytest.approx(r2_score(Y_REG, P_REG))
    assert m["pearson_r"] == pytest.approx(pearsonr(Y_REG, P_REG).statistic)
    assert m["mean_error"] == pytest.approx((0.5 - 0.2 + 0.4 - 0.1 + 0.6 - 0.5) / 6)
    assert regression_score(m) == pytest.approx(m["r2"])
    assert epoch_r2(Y_REG, P_REG) == pytest.approx(m["r2"])
    json.dumps(m, allow_nan=False)


def test_regression_undefined_values() -> None:
    const = regression_metrics(np.array([3.0, 3.0, 3.0]), np.array([2.0, 3.0, 4.5]))
    assert const["r2"] is None and const["pearson_r"] is None
    assert const["mae"] == pytest.approx(2.5 / 3)
    assert regression_score(const) == -1.0
    assert math.isnan(epoch_r2(np.array([3.0, 3.0, 3.0]), np.array([2.0, 3.0, 4.5])))
    flat_pred = regression_metrics(Y_REG, np.full(6, 3.5))
    assert flat_pred["pearson_r"] is None
    assert flat_pred["r2"] == pytest.approx(r2_score(Y_REG, np.full(6, 3.5)))
    single = regression_metrics(np.array([2.0]), np.array([2.5]))
    assert single["r2"] is None and single["pearson_r"] is None and single["mean_error"] == pytest.approx(0.5)
    assert math.isnan(epoch_r2(np.array([2.0]), np.array([2.5])))
    json.dumps(const, allow_nan=False)
    with pytest.raises(ValueError):
        regression_metrics(np.array([1.0, 2.0]), np.array([1.0, float("nan")]))


def test_regression_score_clipped_and_fallback() -> None:
    awful = regression_metrics(Y_REG, -10 * Y_REG)
    assert awful["r2"] is not None and awful["r2"] < -1.0
    assert regression_score(awful) == -1.0
    assert regression_score({"r2": None}) == -1.0
    assert regression_score({"r2": 0.42}) == 0.42


def _legend_labels(fig: Figure, panel: int) -> list[str]:
    legend = fig.axes[panel].get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path)
    plt.close(fig)
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_roc_pr_figure(tmp_path: Path) -> None:
    fig = roc_pr_figure(Y_3, P_3, NAMES_3)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    roc_labels = _legend_labels(fig, 0)
    assert len(roc_labels) == 4 and roc_labels[0].startswith("benign (AUC")
    _save(fig, tmp_path / "roc.png")
    fig = roc_pr_figure(Y_ABSENT, P_ABSENT, NAMES_3)  # the absent class gets no curve
    pr_labels = _legend_labels(fig, 1)
    assert len(pr_labels) == 2 and not any(label.startswith("normal") for label in pr_labels)
    _save(fig, tmp_path / "roc_absent.png")


def test_confusion_figure(tmp_path: Path) -> None:
    cm = classification_metrics(Y_3, P_3, NAMES_3)["confusion_matrix"]
    fig = confusion_figure(cm, NAMES_3)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    assert sorted(t.get_text() for t in fig.axes[0].texts) == sorted(str(v) for row in cm for v in row)
    _save(fig, tmp_path / "cm.png")
    with pytest.raises(ValueError):
        confusion_figure(cm, NAMES_3[:2])


def test_calibration_figure(tmp_path: Path) -> None:
    fig = calibration_figure(Y_3, P_3, NAMES_3)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ece = classification_metrics(Y_3, P_3, NAMES_3)["ece"]
    assert f"ECE {ece:.3f}" in fig.axes[0].get_title()
    _save(fig, tmp_path / "calibration.png")


def test_regression_figure(tmp_path: Path) -> None:
    fig = regression_figure(Y_REG, P_REG)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert "MAE" in fig.axes[0].get_title() and "R²" in fig.axes[0].get_title()
    _save(fig, tmp_path / "regression.png")
    fig = regression_figure(np.array([3.0, 3.0]), np.array([3.0, 3.0]))  # degenerate: R² undefined, no range
    assert "undefined" in fig.axes[0].get_title()
    _save(fig, tmp_path / "regression_const.png")
