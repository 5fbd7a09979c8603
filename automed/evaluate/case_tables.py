"""The per-case tables of image-level runs (``cv/metrics.csv`` of a training, ``automed metrics``' ``metrics.csv``):
one row per case with its target and prediction, and for classification one ``probability_<class>`` column per
class."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

PREFIX = "probability_"  # a classification table's column of one class's probability


def read_case_table(path: Path, kind: str) -> pd.DataFrame:
    """A per-case table as written: case IDs, and for classification the target and predicted class names, stay
    text; only empty cells are missing. pandas' defaults would read a class ``None`` or ``NA`` and a case ``null`` as
    missing, and a case ``007`` as the number 7."""
    text = {"case": str} | ({"target": str, "prediction": str} if kind == "classification" else {})
    return pd.read_csv(path, dtype=text, keep_default_na=False, na_values=[""])
