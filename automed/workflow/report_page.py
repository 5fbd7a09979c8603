"""The HTML of ``automed report``: inlined PNG figures, tables and the page around them (no scripts, no network)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure


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
    """A page section naming the runs that share no case ID (so no paired test between them), or none."""
    from automed.evaluate.report import unpaired_runs

    apart = unpaired_runs(cases)
    if not apart:
        return []
    pairs = html.escape(", ".join(f"{a} / {b}" for a, b in apart))
    return [("Not compared", f"<p>{pairs}: no case ID in common, so no paired test. An MLflow run's CV table "
             "carries its training's pseudonyms; compare work dirs (real IDs) or runs of one sweep (one pseudonym "
             "key).</p>")]  # fmt: skip
