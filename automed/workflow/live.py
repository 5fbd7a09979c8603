"""What a running fold shows: on a terminal a live bar per fold (epochs and iterations of the planned schedule,
elapsed and remaining budget, the latest pseudo-Dice and its EMA, data waiting); elsewhere (CI, log files, folds in
worker processes) one plain line per epoch.

The live bar is two lines, so an 80-column terminal shows it whole: the fold's label (never cut), the bar (40
columns, fewer when the label leaves less) and the elapsed time; under them the epoch's status, on a second line
where the first is full."""

from __future__ import annotations

import time
from collections.abc import Iterable
from types import TracebackType
from typing import Literal

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.padding import Padding
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Column
from rich.text import Text

from automed.train.state import EpochLog
from automed.train.trainer import Callback

Mode = Literal["off", "plain", "live"]


def clock(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def epoch_line(
    label: str, log: EpochLog, elapsed: float, budget_s: float | None, score_label: str = "pseudo-Dice"
) -> str:
    """One epoch in words: ``3d_fullres fold 0  epoch 3/10  it 450/1500  1m12s (3m05s left)  pseudo-Dice ...``
    (``score_label``: the task's name for its epoch score)."""
    left = f" ({clock(budget_s - elapsed)} left)" if budget_s is not None else ""
    score = "n/a" if log.val_score != log.val_score else f"{log.val_score:.3f}"
    return (
        f"{label}  epoch {log.epoch}/{log.planned_epochs or '?'}  it {log.iterations}/{log.planned_iterations or '?'}"
        f"  {clock(elapsed)}{left}  {score_label} {score} (EMA {log.val_score_ema:.3f})"
        f"  loss {log.train_loss:.3f}  data wait {100 * log.data_wait_fraction:.0f}%"
    )


class _Status:
    """An epoch's status under its bar, indented: its items (``epoch 3/10``, ``it 450/1500``... two spaces apart)
    fill each line and move whole to the next one when the line is full."""

    def __init__(self, text: str) -> None:
        self.items = text.split("  ")

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width, lines = max(1, options.max_width - 2), [""]
        for item in self.items:
            if lines[-1] and len(lines[-1]) + 2 + len(item) > width:
                lines.append(item)
            else:
                lines[-1] = f"{lines[-1]}  {item}" if lines[-1] else item
        for line in lines:  # an item wider than the whole line is wrapped there
            yield Padding(Text(line), (0, 0, 0, 2), expand=False)


class _TwoLineProgress(Progress):
    """A :class:`Progress` whose tasks' ``status`` field is shown under the bars (see :class:`_Status`)."""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        for task in self.tasks:
            if task.visible:
                yield _Status(str(task.fields.get("status", "")))


class FoldDisplay:
    """A callback (and context manager) showing one fold's epochs; ``mode`` ``live`` falls back to plain lines when
    the console is not a terminal."""

    def __init__(
        self,
        label: str,
        budget_s: float | None,
        mode: Mode,
        console: Console | None = None,
        score_label: str = "pseudo-Dice",
    ) -> None:
        self.label, self.budget_s, self.mode, self.score_label = label, budget_s, mode, score_label
        self.console = console or Console()
        self.t0 = time.perf_counter()
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> FoldDisplay:
        if self.mode == "live" and self.console.is_terminal:
            self.progress = _TwoLineProgress(
                TextColumn(
                    "{task.description}", table_column=Column(no_wrap=True, min_width=len(self.label))
                ),
                BarColumn(bar_width=None, table_column=Column(max_width=40)),
                TimeElapsedColumn(),
                console=self.console,
            )
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=None, status="starting")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.progress is not None:
            self.progress.stop()

    def on_epoch_end(self, fold: int, log: EpochLog) -> None:
        elapsed = time.perf_counter() - self.t0
        if self.mode == "off":
            return
        if self.progress is not None and self.task is not None:
            line = epoch_line("", log, elapsed, self.budget_s, self.score_label).strip()
            self.progress.update(
                self.task,
                completed=log.iterations,
                total=log.planned_iterations or None,
                status=line,
            )
            return
        line = epoch_line(self.label, log, elapsed, self.budget_s, self.score_label)
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)  # a log line is never wrapped


class Both:
    """Two callbacks in a row (the fold's tracking, then its display)."""

    def __init__(self, first: Callback, second: Callback) -> None:
        self.first, self.second = first, second

    def on_epoch_end(self, fold: int, log: EpochLog) -> None:
        self.first.on_epoch_end(fold, log)
        self.second.on_epoch_end(fold, log)
