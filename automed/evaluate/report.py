"""The pieces of ``automed report`` for segmentation runs: per-case tables, paired Wilcoxon signed-rank tests between
runs per structure with Holm's correction, outliers, and the figures (boxplots, run-vs-run scatter, training curves
of every fold on shared axes). Pure functions over pandas tables; :mod:`automed.workflow.report` reads the runs and
writes the page."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from automed.errors import ArtifactError

HIGHER_IS_BETTER = {
    "dice": True,
    "iou": True,
    "nsd": True,
    "sensitivity": True,
    "precision": True,
    "hd95": False,
    "assd": False,
}
# read as text: a label named by its value in one run (1) and by a name in another (outer) made the structure names
# a mix of numbers and strings that could not be sorted; a case ID 007 stays 007
TEXT_COLUMNS = {"case": str, "label": str, "name": str}


def read_case_table(path: Path, *, required: bool = True) -> pd.DataFrame:
    """A per-case table (``cv/metrics.csv``, ``automed metrics``' ``metrics.csv``) as every run of a report reads it:
    case, label and name as text, so that the runs' rows of one structure group together. An empty, cut or foreign
    one is refused naming it (pandas' EmptyDataError had no file; a table without the columns dropped its run's rows
    from the page without a word)."""
    fix = "write it again: `automed train --resume WORKDIR` (a training's cv/) or `automed metrics` (its metrics.csv)"
    try:
        table = pd.read_csv(path, dtype=TEXT_COLUMNS)
    except (
        OSError,
        ValueError,
        pd.errors.EmptyDataError,
    ) as exc:  # ParserError and UnicodeDecodeError: ValueError
        raise ArtifactError.single(path, "a per-case table is a readable CSV", f"{type(exc).__name__}: {exc}"[:200],
                                   fix) from exc  # fmt: skip
    if required and (missing := [c for c in ("case", "label", "dice") if c not in table.columns]):
        raise ArtifactError.single(path, "a per-case table has case, label and dice columns",
                                   f"no {', '.join(missing)} (columns {list(table.columns)[:6]})", fix)  # fmt: skip
    return table


def _label(value: Any) -> Any:
    """A label as the tables read it (text) given back as its value where it is one (``"2"`` -> 2)."""
    return int(value) if isinstance(value, str) and value.isdigit() else value


def _structures(table: pd.DataFrame, by: list[str]) -> list[tuple[Any, pd.DataFrame]]:
    """``table`` grouped by ``by`` (ending in label and name), labels in the order of their values (2 before 10)."""
    groups = list(table.groupby(by, sort=False))
    return sorted(groups, key=lambda kg: [(0, _label(k), "") if isinstance(_label(k), int) else (1, 0, str(k))
                                          for k in kg[0]])  # fmt: skip


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), in the input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def paired_tests(table: pd.DataFrame, metric: str = "dice") -> list[dict[str, Any]]:
    """For every structure and every pair of runs: the Wilcoxon signed-rank test on the cases both scored (metric
    defined in both), the median difference (second minus first) and which run is better; Holm's correction over
    all tests of the report."""
    rows: list[dict[str, Any]] = []
    runs = list(dict.fromkeys(table["run"]))
    for (label, name), g in _structures(table, ["label", "name"]):
        wide = g.pivot_table(index="case", columns="run", values=metric, aggfunc="first")
        for a, b in itertools.combinations([r for r in runs if r in wide], 2):
            both = wide[[a, b]].dropna()
            if both.empty:  # no case scored by both (e.g. MLflow copies under different pseudonyms)
                continue
            diff = (both[b] - both[a]).to_numpy()
            entry: dict[str, Any] = {
                "label": _label(label),
                "name": name,
                "run_a": a,
                "run_b": b,
                "n_cases": len(both),
            }
            entry["median_difference"] = float(np.median(diff)) if len(diff) else math.nan
            if len(diff) == 0 or not np.any(diff != 0):
                entry.update(statistic=math.nan, p_value=1.0)
            else:
                res = stats.wilcoxon(both[a], both[b])
                entry.update(statistic=float(res.statistic), p_value=float(res.pvalue))
            up = HIGHER_IS_BETTER.get(metric, True)
            med = entry["median_difference"]
            entry["better"] = "-" if not med or math.isnan(med) else (b if (med > 0) == up else a)
            rows.append(entry)
    for entry, adj in zip(rows, holm([r["p_value"] for r in rows]), strict=True):
        entry["p_holm"] = adj
    return rows


def unpaired_runs(table: pd.DataFrame) -> list[tuple[str, str]]:
    """The pairs of runs that share no case ID (a paired test needs the same cases under the same names)."""
    cases = {str(run): set(g["case"].astype(str)) for run, g in table.groupby("run", sort=False)}
    return [(a, b) for a, b in itertools.combinations(cases, 2) if not cases[a] & cases[b]]


def outliers(table: pd.DataFrame, metric: str = "dice", worst: int = 3) -> list[dict[str, Any]]:
    """Per run and structure: the ``worst`` cases and every case beyond 1.5 IQR on the bad side."""
    up = HIGHER_IS_BETTER.get(metric, True)
    out: list[dict[str, Any]] = []
    for (run, label, name), g in _structures(table, ["run", "label", "name"]):
        vals = g[["case", metric]].dropna()
        if vals.empty:
            continue
        q1, q3 = np.percentile(vals[metric], [25, 75])
        fence = q1 - 1.5 * (q3 - q1) if up else q3 + 1.5 * (q3 - q1)
        ranked = vals.sort_values(metric, ascending=up)
        beyond = set(vals[(vals[metric] < fence) if up else (vals[metric] > fence)]["case"])
        for i, (case, value) in enumerate(zip(ranked["case"], ranked[metric], strict=True)):
            if i < worst or case in beyond:
                out.append(
                    {"run": run, "label": _label(label), "name": name, "case": case, metric: float(value),
                     "why": "beyond 1.5 IQR" if case in beyond else f"worst {worst}"}
                )  # fmt: skip
    return out


def boxplots(table: pd.DataFrame, metrics: tuple[str, ...] = ("dice", "hd95")) -> Figure:
    """One panel per metric and structure: a box per run over its cases."""
    names = sorted(table["name"].dropna().unique().tolist())
    runs = list(dict.fromkeys(table["run"]))
    fig = Figure(figsize=(3.4 * max(1, len(names)), 3.0 * len(metrics)))
    for i, metric in enumerate(metrics):
        for j, name in enumerate(names):
            ax = fig.add_subplot(len(metrics), max(1, len(names)), i * max(1, len(names)) + j + 1)
            data = [
                table[(table["run"] == r) & (table["name"] == name)][metric].dropna().to_numpy() for r in runs
            ]
            ax.boxplot(data, tick_labels=[str(k + 1) for k in range(len(runs))], showmeans=True)
            ax.set_title(f"{name}: {metric}", fontsize=9)
    fig.suptitle("runs: " + ", ".join(f"{k + 1}={r}" for k, r in enumerate(runs)), fontsize=8)
    fig.tight_layout()
    return fig


def scatter(table: pd.DataFrame, a: str, b: str, metric: str = "dice") -> Figure:
    """Per case and structure, run ``a``'s metric against run ``b``'s (points above the diagonal: ``b`` better)."""
    fig = Figure(figsize=(4.2, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    for name, g in table.groupby("name", sort=True):
        wide = g.pivot_table(index="case", columns="run", values=metric, aggfunc="first").dropna()
        if a in wide and b in wide:
            ax.scatter(wide[a], wide[b], s=12, label=str(name))
    lo, hi = ax.get_xlim()
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
    ax.set_xlabel(f"{a} ({metric})")
    ax.set_ylabel(f"{b} ({metric})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _number(value: Any) -> float:
    """A history value as a plotted number: missing or non-numeric (an undefined score) is a gap."""
    return float(value) if isinstance(value, int | float) else math.nan


def curves(histories: dict[str, list[dict[str, Any]]]) -> Figure:
    """Training loss, validation loss, epoch score (and its EMA) and learning rate of every fold on shared axes
    (``histories``: label ``run fold k`` -> ``progress.json`` history)."""
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(12, 3.2))
    # per panel: the solid line's key, the dashed one's (same colour: the same fold), the title
    panels = (
        ("train_loss", "val_loss", "loss (solid: training, dashed: validation)"),
        ("val_score", "val_score_ema", "epoch score (dashed: its moving average)"),
        ("learning_rate", None, "learning rate"),
    )
    axes = [fig.add_subplot(1, 3, i + 1) for i in range(3)]
    for label, hist in histories.items():
        epochs = [h["epoch"] for h in hist]
        dots: dict[str, Any] = {"marker": "o", "ms": 2.5} if len(epochs) <= 30 else {}  # (one epoch: no line)
        for ax, (key, dashed, _) in zip(axes, panels, strict=True):
            (line,) = ax.plot(epochs, [_number(h.get(key)) for h in hist], label=label, lw=1, **dots)
            if dashed is not None and any(h.get(dashed) is not None for h in hist):
                ax.plot(epochs, [_number(h.get(dashed)) for h in hist], lw=1, ls="--", color=line.get_color(),
                        **dots)  # fmt: skip
    for ax, (_, _, title) in zip(axes, panels, strict=True):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no 1.2, 1.4 ticks
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    return fig


def _paired(table: pd.DataFrame, value: str) -> list[tuple[str, str, pd.DataFrame]]:
    """Every two runs with the per-case ``value`` of the cases both predicted (runs sharing none left out)."""
    runs = list(dict.fromkeys(table["run"]))
    wide = table.pivot_table(index="case", columns="run", values=value, aggfunc="first")
    pairs = [
        (a, b, wide[[a, b]].dropna()) for a, b in itertools.combinations([r for r in runs if r in wide], 2)
    ]
    return [(a, b, both) for a, b, both in pairs if not both.empty]  # empty: no case under one name in both


def _holm_corrected(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for entry, adj in zip(rows, holm([r["p_value"] for r in rows]), strict=True):
        entry["p_holm"] = adj
    return rows


def paired_correct_tests(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Every pair of classification runs on the cases both predicted (``correct``: 1 or 0 per case): the exact
    McNemar test on the cases one run got right and the other wrong (binomial, scipy), the run with more right, Holm
    over all pairs."""
    rows: list[dict[str, Any]] = []
    for a, b, both in _paired(table, "correct"):
        only_a = int(((both[a] > 0) & (both[b] == 0)).sum())
        only_b = int(((both[b] > 0) & (both[a] == 0)).sum())
        n = only_a + only_b
        p = float(stats.binomtest(min(only_a, only_b), n, 0.5).pvalue) if n else 1.0
        rows.append({"run_a": a, "run_b": b, "n_cases": len(both), "test": "McNemar (exact)",
                     "only_a_right": only_a, "only_b_right": only_b, "p_value": p,
                     "better": "-" if only_a == only_b else (a if only_a > only_b else b)})  # fmt: skip
    return _holm_corrected(rows)


def paired_error_tests(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Every pair of regression runs on the cases both predicted (``abs_error`` per case): the Wilcoxon signed-rank
    test on the absolute errors, the run with the smaller median absolute error, Holm over all pairs."""
    rows: list[dict[str, Any]] = []
    for a, b, both in _paired(table, "abs_error"):
        diff = (both[b] - both[a]).to_numpy()
        p = float(stats.wilcoxon(both[a], both[b]).pvalue) if len(diff) and np.any(diff != 0) else 1.0
        med = float(np.median(diff)) if len(diff) else math.nan
        rows.append({"run_a": a, "run_b": b, "n_cases": len(both), "test": "Wilcoxon (absolute errors)",
                     "median_difference": med, "p_value": p,
                     "better": "-" if not med or math.isnan(med) else (a if med > 0 else b)})  # fmt: skip
    return _holm_corrected(rows)


def reference_mismatches(cases: pd.DataFrame, keys: list[str], column: str) -> list[str]:
    """The ``keys`` (a case, or a case and structure) whose reference ``column`` (a target, a reference volume)
    differs between runs: two runs scored against other references under the same case IDs, whose paired tests
    would compare nothing alike. Each as ``key: value per run``."""
    if column not in cases or "run" not in cases or cases["run"].nunique() < 2:
        return []
    known = cases.dropna(subset=[column])
    numbers = pd.to_numeric(known[column], errors="coerce")
    # numbers as numbers (an int column beside a float one: 1234 and 1234.0), to 6 decimals as written to CSV
    ref = numbers.round(6).astype(str) if numbers.notna().all() else known[column].astype(str)
    values = known.assign(_ref=ref).groupby(keys)
    out = []
    for key, group in values:
        if group["_ref"].nunique() > 1:
            per_run = ", ".join(
                f"{r} {v}" for r, v in group.drop_duplicates("run")[["run", "_ref"]].to_numpy()
            )
            out.append(f"{'/'.join(str(k) for k in (key if isinstance(key, tuple) else (key,)))}: {per_run}")
    return out
