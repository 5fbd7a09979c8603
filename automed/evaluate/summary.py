"""Per-case metric tables and their cross-validation summary (CSV + JSON), and the rule for absent structures.

Absent structures (one rule for the whole chain; README "Absent structures"):

- A label missing from both the reference and the prediction of a case is *undefined* for that case (NaN in
  memory, null in JSON artifacts, never logged to MLflow) and counted (``n_both_empty``). Missing from one of them
  only is a real error and stays in every mean (Dice 0, worst-case HD95).
- A label's mean is over the cases where it is defined; a label defined in no case has no mean (null) and is listed
  in ``foreground_mean.labels_undefined``.
- The foreground mean is the plain mean of the defined label means (nnU-Net's), with the number of labels it covers.
- A *score* (early stopping, sweep objective and ASHA reports, selection, registry aliases) must be a number:
  :func:`score` gives the foreground mean Dice, or 0.0 when nothing is defined (no evidence is never better than
  some evidence).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automed.artifacts import write_json_atomic
from automed.evaluate.metrics import METRIC_DEFINITIONS, LabelMetrics
from automed.records import CV_SUMMARY_VERSION, stamped

METRICS = ("dice", "iou", "sensitivity", "precision", "hd95", "assd", "nsd", "volume_diff_mm3")


def metrics_rows(
    case_id: str, fold: int, per_label: dict[int, LabelMetrics], names: dict[int, str]
) -> list[dict[str, Any]]:
    return [
        {"case": case_id, "fold": fold, "label": lab, "name": names.get(lab, str(lab)), **m.to_dict()}
        for lab, m in per_label.items()
    ]


def _mean(values: Any) -> float:
    """Mean of the defined (finite) values; NaN when there are none."""
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else math.nan


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean of every metric per label over the cases where it is defined, the foreground mean over the labels
    that have one, and the counts of what was excluded (module docstring). Rows read back from JSON may hold None
    where a metric was undefined."""
    df = pd.DataFrame(rows)
    per_label: dict[str, dict[str, float]] = {}
    if df.empty:
        return {
            "mean": {},
            "foreground_mean": {**dict.fromkeys(METRICS, math.nan), "n_labels": 0, "labels_undefined": []},
            "label_names": {},
            "definitions": METRIC_DEFINITIONS,
        }
    for m in (*METRICS, "n_ref", "n_pred"):
        if m in df:
            df[m] = pd.to_numeric(df[m], errors="coerce")
    for lab, g in df.groupby("label"):
        entry: dict[str, float] = {
            m: _mean(g[m]) if m in g else math.nan for m in METRICS
        }  # older rows lack some
        entry["n_cases"] = len(g)
        entry["n_both_empty"] = int(g["dice"].isna().sum())
        entry["n_missed_or_spurious"] = int(((g["n_ref"] == 0) ^ (g["n_pred"] == 0)).sum())
        per_label[str(lab)] = entry
    fg: dict[str, Any] = {m: _mean(v[m] for v in per_label.values()) for m in METRICS}
    fg["n_labels"] = sum(1 for v in per_label.values() if math.isfinite(v["dice"]))
    fg["labels_undefined"] = [k for k, v in per_label.items() if not math.isfinite(v["dice"])]
    names = dict(zip(df["label"].astype(str), df["name"], strict=False)) if len(df) else {}
    return {"mean": per_label, "foreground_mean": fg, "label_names": names, "definitions": METRIC_DEFINITIONS}


def score(value: float | None) -> float:
    """A metric as a score that can be compared and reported: the value, or 0.0 when it is undefined."""
    return float(value) if value is not None and math.isfinite(value) else 0.0


def cv_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """CV rows by fold and case (a stable sort keeps each case's labels in order): folds finished before a resume,
    or in another order by parallel workers, give the same table as one uninterrupted run."""
    return sorted(rows, key=lambda r: (int(r.get("fold", 0)), str(r.get("case", ""))))


def write_summary(rows: list[dict[str, Any]], csv_path: Path, json_path: Path) -> dict[str, Any]:
    """Write the per-case CSV (in :func:`cv_order`) and the summary JSON (NaN as null); return the summary."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = csv_path.with_name(f".{csv_path.name}.tmp")
    pd.DataFrame(cv_order(rows)).to_csv(tmp, index=False)
    tmp.replace(csv_path)
    summary = summarize(rows)
    write_json_atomic(json_path, stamped(summary, CV_SUMMARY_VERSION))
    return summary
