"""What a running sweep shows: its trials as they progress, read from the trial folders every engine writes
(``trials/<key>/trial.json`` and ``result.json`` on the shared file system, so Ray trials on other nodes show too).
On a terminal a live table (trial, sampled values, folds done, score, compute time); elsewhere (CI, log files) one
plain line each time a trial finishes a fold."""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from automed.errors import ArtifactError
from automed.search.report import FAILED, stopped_by
from automed.search.trial_records import RESULT, read_result, read_trial
from automed.workflow.live import Mode, clock


def live_status(td: Path, trial: dict[str, Any], result: dict[str, Any]) -> str:
    """What the live view says of a trial that ended without a score: ``duplicate of KEY`` (it takes that trial's),
    ``failed``, ``stopped early`` (the scheduler), ``timed out`` (the budget); "" otherwise (running, or scored)."""
    if trial.get("duplicate_of"):
        return f"duplicate of {trial['duplicate_of']}"
    if "score" in result:
        return ""
    if (td / FAILED).is_file():
        return "failed"
    return {"scheduler": "stopped early", "budget": "timed out"}.get(stopped_by(td), "")


def read_trials(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per trial folder: key, sampled values, folds done, score (absent until a fold finished), status
    (:func:`live_status`)."""
    rows = []
    for tfile in sorted((sweep_dir / "trials").glob("*/trial.json")):
        try:
            trial = read_trial(tfile)
        except (
            ArtifactError
        ):  # damaged: the sweep refuses it where it reads it; the view shows the other trials
            continue
        result = read_result(tfile.parent / RESULT, quiet=True) or {}  # damaged: none, as the sweep reads it
        rows.append(
            {
                "key": trial["key"],
                "values": trial["values"],
                "folds": len(result.get("folds", {})),
                "score": result.get("score"),
                "compute_s": float(result.get("compute_s", 0.0)),
                "status": live_status(tfile.parent, trial, result),
            }
        )
    return rows


def _values(values: dict[str, Any]) -> str:
    return (
        " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        or "default"
    )


def trial_line(row: dict[str, Any], n_folds: int, score_label: str) -> str:
    """``trial 3f2a  lr=0.003 batch=2  folds 1/5  Dice 0.8123  compute 2m10s`` (and the status, if any)."""
    score = "n/a" if row["score"] is None else f"{row['score']:.4f}"
    status = f"  {row['status']}" if row.get("status") else ""
    return (
        f"trial {row['key']}  {_values(row['values'])}  folds {row['folds']}/{n_folds}  {score_label} {score}"
        f"  compute {clock(row['compute_s'])}{status}"
    )


class TrialsDisplay:
    """A context manager that polls the sweep's trial folders every ``interval`` seconds while the engine runs."""

    def __init__(
        self,
        sweep_dir: Path,
        n_folds: int,
        mode: Mode,
        *,
        score_label: str = "Dice",
        console: Console | None = None,
        interval: float = 2.0,
    ) -> None:
        self.sweep_dir, self.n_folds, self.mode, self.score_label = sweep_dir, n_folds, mode, score_label
        self.console = console or Console()
        self.interval = interval
        self.seen: dict[str, int] = {}  # folds already reported per trial (lines mode)
        self.said: dict[str, str] = {}  # the status reported per trial (lines mode)
        self.live: Live | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def table(self, rows: list[dict[str, Any]]) -> Table:
        t = Table(title="trials")
        # on a narrow terminal only the values wrap (a name=value too long for its column folds, never cut)
        for col in ("trial", "values", "folds", self.score_label, "compute", "status"):
            t.add_column(col, no_wrap=col not in ("values", "status"), overflow="fold")
        for r in rows:
            score = "" if r["score"] is None else f"{r['score']:.4f}"
            t.add_row(
                r["key"],
                _values(r["values"]),
                f"{r['folds']}/{self.n_folds}",
                score,
                clock(r["compute_s"]),
                r.get("status", ""),
            )
        return t

    def poll(self) -> None:
        """Show what changed since the last poll."""
        rows = read_trials(self.sweep_dir)
        if self.live is not None:
            self.live.update(self.table(rows))
            return
        for r in rows:
            # a new fold, or a new status (a failure is said once, with its error, at the end of the sweep)
            news = r["status"] != self.said.get(r["key"], "") and r["status"] not in ("", "failed")
            if r["folds"] > self.seen.get(r["key"], 0) or news:
                self.seen[r["key"]], self.said[r["key"]] = r["folds"], r["status"]
                self.console.print(
                    trial_line(r, self.n_folds, self.score_label),
                    markup=False,
                    highlight=False,
                    soft_wrap=True,
                )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def __enter__(self) -> TrialsDisplay:
        if self.mode == "off":
            return self
        if self.mode == "live" and self.console.is_terminal:
            self.live = Live(self.table([]), console=self.console, refresh_per_second=1)
            self.live.start()
        rows = read_trials(self.sweep_dir)  # a resumed sweep: only news
        self.seen = {r["key"]: r["folds"] for r in rows}
        self.said = {r["key"]: r["status"] for r in rows}
        self._thread = threading.Thread(target=self._loop, name="automed-trials", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self.poll()  # the last trials that ended between two polls
        if self.live is not None:
            self.live.stop()
