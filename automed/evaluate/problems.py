"""What ``automed metrics`` does per problem type: one scorer each (label maps, intensity images, classes, values),
looked up by name (:data:`PROBLEMS`), so the verb itself never branches on the problem. A scorer turns matched pairs
into per-case rows and a summary (with the warnings a person should read) and writes the console's one line."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from automed.evaluate.compare import (
    Kind,
    Pair,
    classification_result,
    regression_result,
    segmentation_rows,
    segmentation_summary,
)
from automed.evaluate.synthesis import synthesis_rows, synthesis_summary


@dataclass(frozen=True)
class ScoreOptions:
    labels: dict[int, str] | None = None  # label maps: names of the label values (None: every value found)
    regions: dict[str, list[int]] = field(default_factory=dict)  # label maps: unions of labels
    tolerance: float = 1.0  # label maps: surface distance tolerance (mm)
    missing_value: float | None = None  # label maps and images: every metric of a missing prediction
    missing_empty: bool = False  # label maps: a missing prediction scored as an empty label map
    show_progress: bool = False


@dataclass(frozen=True)
class Scored:
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


class ProblemScorer(Protocol):
    # a missing prediction scores ``missing_value`` per metric (images), or is that value as its prediction (tables)
    missing_per_metric: bool

    def score(self, pairs: list[Pair], options: ScoreOptions) -> Scored: ...

    def headline(self, summary: dict[str, Any]) -> str: ...


def _fmt(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.4f}"


class Segmentation:
    missing_per_metric = True

    def score(self, pairs: list[Pair], options: ScoreOptions) -> Scored:
        rows, unscored = segmentation_rows(
            pairs,
            options.labels,
            options.regions,
            tolerance=options.tolerance,
            missing_value=options.missing_value,
            missing_empty=options.missing_empty,
            show_progress=options.show_progress,
        )
        summary = segmentation_summary(rows, options.tolerance)
        said = []
        for side, values in unscored.items():  # (a reference's structure left out had passed without a word)
            if values:
                summary[f"unscored_{side}_labels"] = values
                said.append(f"{side}s hold label value(s) {values} that --labels does not name: not scored")
        return Scored(rows, summary, said)

    def headline(self, summary: dict[str, Any]) -> str:
        fg = summary["foreground_mean"]
        return (
            f"{summary['n_cases']} cases, foreground mean Dice {_fmt(fg['dice'])}, HD95 {_fmt(fg['hd95'])} mm,"
            f" ASSD {_fmt(fg['assd'])} mm"
        )


class Synthesis:
    missing_per_metric = True

    def score(self, pairs: list[Pair], options: ScoreOptions) -> Scored:
        rows = synthesis_rows(pairs, options.missing_value)
        return Scored(rows, synthesis_summary(rows))

    def headline(self, summary: dict[str, Any]) -> str:
        return (
            f"{summary['n_cases']} cases, PSNR {_fmt(summary['psnr']['mean'])} dB,"
            f" SSIM {_fmt(summary['ssim']['mean'])}, NCC {_fmt(summary['ncc']['mean'])}"
        )


class Classification:
    missing_per_metric = False

    def score(self, pairs: list[Pair], options: ScoreOptions) -> Scored:
        rows, summary = classification_result(pairs)
        n_off = summary.get("rows_whose_probabilities_do_not_sum_to_1")
        said = [f"{n_off} row(s) have probabilities that do not sum to 1: calibration (ECE) assumes they do"]
        return Scored(rows, summary, said if n_off else [])

    def headline(self, summary: dict[str, Any]) -> str:
        return (
            f"{summary['n_cases']} cases, accuracy {_fmt(summary['accuracy'])}, balanced accuracy"
            f" {_fmt(summary['balanced_accuracy'])}, macro AUC {_fmt(summary['auc_macro'])} ({summary['auc_from']})"
        )


class Regression:
    missing_per_metric = False

    def score(self, pairs: list[Pair], options: ScoreOptions) -> Scored:
        rows, summary = regression_result(pairs)
        return Scored(rows, summary)

    def headline(self, summary: dict[str, Any]) -> str:
        return (
            f"{summary['n_cases']} cases, MAE {_fmt(summary['mae'])}, RMSE {_fmt(summary['rmse'])},"
            f" R2 {_fmt(summary['r2'])}"
        )


PROBLEMS: dict[Kind, ProblemScorer] = {
    "segmentation": Segmentation(),
    "classification": Classification(),
    "regression": Regression(),
    "synthesis": Synthesis(),
}
