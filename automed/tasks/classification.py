"""Classification from the whole image (:class:`automed.tasks.image_level.ImageLevelTask`): macro AUC ranks, the CV
summary has accuracy, balanced accuracy, F1, calibration and per-class sensitivity/specificity/AUC, drawn as ROC/PR
curves, a confusion matrix and a calibration plot; runs are compared by exact McNemar tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from automed.evaluate.case_tables import PREFIX
from automed.evaluate.image_level import classification_metrics, classification_score
from automed.tasks.base import metric_keys
from automed.tasks.image_level import ImageLevelTask


def class_arrays(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """True class indices, probabilities and class names of classification rows."""
    names = [k.removeprefix(PREFIX) for k in rows[0] if k.startswith(PREFIX)]
    proba = np.array([[float(r[PREFIX + n]) for n in names] for r in rows])
    y = np.array([names.index(str(r["target"])) for r in rows], dtype=np.int64)
    return y, proba, names


class Classification(ImageLevelTask):
    name = "classification"
    score_name = "cv_auc"
    epoch_metric = "val_auc"
    epoch_label = "AUC"
    summary_figures_title = "ROC / PR, confusion, calibration"

    def summarize(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        y, proba, names = class_arrays(rows)
        return classification_metrics(y, proba, names)

    def score(self, summary: dict[str, Any]) -> float:
        return classification_score(summary)

    def summary_metrics(self, summary: dict[str, Any]) -> dict[str, float | None]:
        out: dict[str, float | None] = {
            self.score_name: summary["auc_macro"],
            "cv_accuracy": summary["accuracy"],
            "cv_balanced_accuracy": summary["balanced_accuracy"],
            "cv_f1_macro": summary["f1_macro"],
            "cv_ece": summary["ece"],
        }
        per_class = summary["per_class"]
        for name, m in zip(metric_keys(list(per_class)), per_class.values(), strict=True):
            for key in ("sensitivity", "specificity", "auc"):
                out[f"cv_{key}_{name}"] = m[key]
        return out

    def summary_figures(
        self, rows: list[dict[str, Any]], summary: dict[str, Any]
    ) -> list[tuple[str, Figure]]:
        from automed.evaluate.image_plots import calibration_figure, confusion_figure, roc_pr_figure

        y, proba, names = class_arrays(rows)
        return [
            ("roc_pr.png", roc_pr_figure(y, proba, names)),
            ("confusion_matrix.png", confusion_figure(summary["confusion_matrix"], names)),
            ("calibration.png", calibration_figure(y, proba, names)),
        ]

    def summarizable(self, rows: list[dict[str, Any]]) -> bool:
        return any(k.startswith(PREFIX) for k in rows[0])

    def case_outcomes(self, table: pd.DataFrame) -> pd.DataFrame:
        return table.assign(
            correct=(table["prediction"].astype(str) == table["target"].astype(str)).astype(float)
        )

    def paired_tests(self, table: pd.DataFrame) -> list[dict[str, Any]]:
        """Exact McNemar on the cases one run gets right and the other wrong."""
        from automed.evaluate.report import paired_correct_tests

        return paired_correct_tests(table)
