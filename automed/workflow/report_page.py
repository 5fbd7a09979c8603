"""The HTML of ``automed report``: inlined PNG figures, tables and the page around them (no scripts, no network)."""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from automed.privacy import PREFIX


def png(fig: Figure, path: Path) -> str:
    """Save ``fig`` as ``path`` and return it as an inlined ``<img>``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    path.write_bytes(buf.getvalue())
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="n/a", border=0, escape=True)


def page(names: list[str], sections: list[tuple[str, str]]) -> str:
    body = "".join(f"<h2>{html.escape(t)}</h2>{content}" for t, content in sections)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>automed report</title><style>"
        "body{font-family:sans-serif;max-width:1300px}table{border-collapse:collapse;font-size:12px}"
        "td,th{padding:3px 6px;border-bottom:1px solid #ddd}img{max-width:100%}</style></head><body>"
        f"<h1>automed report: {html.escape(', '.join(names))}</h1>{body}</body></html>\n"
    )


def not_compared(cases: pd.DataFrame) -> list[tuple[str, str]]:
    """A page section naming the runs that share no case ID (so no paired test between them), or none; the likely
    cause is said per pair: pseudonyms (an MLflow run's CV table) or cases of their own (another dataset, or one
    dataset's images under other IDs)."""
    from automed.evaluate.report import unpaired_runs

    apart = unpaired_runs(cases)
    if not apart:
        return []
    shape = re.compile(rf"{re.escape(PREFIX)}[0-9a-f]{{12}}")
    keyed = {
        str(r) for r, g in cases.groupby("run", sort=False) if all(shape.fullmatch(str(c)) for c in g["case"])
    }
    said = []
    for a, b in apart:
        why = (
            "An MLflow run's CV table carries its training's pseudonyms; compare work dirs (real IDs) or runs of "
            "one sweep (one pseudonym key)."
            if {a, b} & keyed
            else "They were validated on different cases: trainings of different datasets, or of one dataset's "
            "images under other case IDs (a CSV's SubjectIDs and a folder-per-class tree's <class>_<file> "
            "differ); train both on one dataset to compare them case by case."
        )
        said.append(f"<p>{html.escape(f'{a} / {b}: no case ID in common, so no paired test. {why}')}</p>")
    return [("Not compared", "".join(said))]
