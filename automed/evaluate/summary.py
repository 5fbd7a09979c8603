"""Per-case metric tables and their cross-validation summary (CSV + JSON)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automed.artifacts import write_json_atomic
from automed.evaluate.metrics import METRIC_DEFINITIONS, LabelMetrics

METRICS = ("dice", "iou", "sensitivity", "hd95", "nsd")


def metrics_rows(
    case_id: str, fold: int, per_label: dict[int, LabelMetrics], names: dict[int, str]
) -> list[dict[str, Any]]:
    return [
        {"case": case_id, "fold": fold, "label": lab, "name": names.get(lab, str(lab)), **m.to_dict()}
        for lab, m in per_label.items()
    ]


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean of every metric per label over cases (NaN, i.e. both masks empty, excluded and counted) and the
    foreground mean (the plain mean of the per-label means, as nnU-Net)."""
    df = pd.DataFrame(rows)
    per_label: dict[str, dict[str, float]] = {}
    if df.empty:
        return {
            "mean": {},
            "foreground_mean": dict.fromkeys(METRICS, math.nan),
            "label_names": {},
            "definitions": METRIC_DEFINITIONS,
        }
    for lab, g in df.groupby("label"):
        entry: dict[str, float] = {
            m: float(np.nanmean(g[m])) if g[m].notna().any() else math.nan for m in METRICS
        }
        entry["n_cases"] = len(g)
        entry["n_both_empty"] = int(g["dice"].isna().sum())
        entry["n_missed_or_spurious"] = int(((g["n_ref"] == 0) ^ (g["n_pred"] == 0)).sum())
        per_label[str(lab)] = entry
    fg = {
        m: float(np.nanmean([v[m] for v in per_label.values()])) if per_label else math.nan for m in METRICS
    }
    names = dict(zip(df["label"].astype(str), df["name"], strict=False)) if len(df) else {}
    return {"mean": per_label, "foreground_mean": fg, "label_names": names, "definitions": METRIC_DEFINITIONS}


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    return obj


def write_summary(rows: list[dict[str, Any]], csv_path: Path, json_path: Path) -> dict[str, Any]:
    """Write the per-case CSV and the summary JSON (NaN as null); return the summary."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = csv_path.with_name(f".{csv_path.name}.tmp")
    pd.DataFrame(rows).to_csv(tmp, index=False)
    tmp.replace(csv_path)
    summary = summarize(rows)
    write_json_atomic(json_path, _clean(summary))
    return summary
