"""Regression from the whole image (:class:`automed.tasks.image_level.ImageLevelTask`): R² ranks, the CV summary
has MAE, RMSE, Pearson's r and the mean error, drawn as predicted against true; runs are compared by Wilcoxon tests
on the absolute errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from automed.evaluate.image_level import regression_metrics, regression_score
from automed.tasks.image_level import ImageLevelTask


class Regression(ImageLevelTask):
    name = "regression"
    score_name = "cv_r2"
    epoch_metric = "val_r2"
    epoch_label = "R²"
    summary_figures_title = "predicted vs true"

    def summarize(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        y = np.array([float(r["target"]) for r in rows])
        return regression_metrics(y, np.array([float(r["prediction"]) for r in rows]))

    def score(self, summary: dict[str, Any]) -> float:
        return regression_score(summary)

    def summary_metrics(self, summary: dict[str, Any]) -> dict[str, float | None]:
        return {
            self.score_name: summary["r2"],
            "cv_mae": summary["mae"],
            "cv_rmse": summary["rmse"],
            "cv_pearson_r": summary["pearson_r"],
            "cv_mean_error": summary["mean_error"],
        }

    def summary_figures(
        self, rows: list[dict[str, Any]], summary: dict[str, Any]
    ) -> list[tuple[str, Figure]]:
        from automed.evaluate.image_plots import regression_figure

        y = np.array([float(r["target"]) for r in rows])
        return [("regression.png", regression_figure(y, np.array([float(r["prediction"]) for r in rows])))]

    def summarizable(self, rows: list[dict[str, Any]]) -> bool:
        return True

    def case_outcomes(self, table: pd.DataFrame) -> pd.DataFrame:
        return table.assign(
            abs_error=(table["prediction"].astype(float) - table["target"].astype(float)).abs()
        )

    def paired_tests(self, table: pd.DataFrame) -> list[dict[str, Any]]:
        """Wilcoxon signed-rank on the absolute errors."""
        from automed.evaluate.report import paired_error_tests

        return paired_error_tests(table)
