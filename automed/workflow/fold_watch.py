"""What the driver shows of folds that run as Ray tasks on a cluster (``--ray-address``), whose own output stays on
their nodes: one plain line per epoch as each fold's ``progress.json`` records it (the line a local training shows
where there is no terminal, :func:`~automed.workflow.live.epoch_line`), and one line per fold when its task ends:
its epochs and validation score, or that it failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from automed.errors import AutomedError
from automed.plan.schema import Plan
from automed.records import PROGRESS, read_progress
from automed.tasks.registry import task_for
from automed.train.state import EpochLog, epoch_log
from automed.workdir import WorkDir, fold_name
from automed.workflow.fold import FoldJob, FoldOutcome
from automed.workflow.live import epoch_line


def _history(folder: Path) -> list[EpochLog]:
    """The epochs ``progress.json`` holds now; none while it is not there (the fold has not ended an epoch) or not
    readable yet (a shared file system that has not shown the write)."""
    try:
        return [epoch_log(h) for h in read_progress(folder / PROGRESS).get("history", [])]
    except (OSError, ValueError, TypeError, AutomedError):
        return []


class FoldWatch:
    """Called with the folds' tasks that have ended (their index in ``jobs``: the outcome, or the exception its
    task raised), again every few seconds while any runs; prints what is new since the last call."""

    def __init__(self, jobs: list[FoldJob], console: Console | None = None) -> None:
        self.jobs, self.console = jobs, console or Console()
        plan = Plan.load(WorkDir(Path(jobs[0].workdir)).plan) if jobs else None
        task = task_for(plan.task_type, Path(jobs[0].workdir)) if plan is not None else None
        self.score_label = task.epoch_label if task is not None else "score"
        self.score_name = task.score_name.removeprefix("cv_") if task is not None else "score"
        self.folders, self.labels = [], []
        for job in jobs:
            configuration = str(job.config["configuration"])
            self.folders.append(WorkDir(Path(job.workdir)).fold(configuration, job.fold))
            self.labels.append(f"{configuration} {fold_name(job.fold).replace('_', ' ')}")
        # a resumed or extended fold's earlier epochs were shown by the run that trained them
        self.shown = [max((h.epoch for h in _history(f)), default=0) for f in self.folders]
        self.start = list(self.shown)
        self.ended: set[int] = set()

    def _say(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)  # a log line is never wrapped

    def __call__(self, done: dict[int, Any]) -> None:
        for i, job in enumerate(self.jobs):
            if i in self.ended:
                continue
            history = _history(self.folders[i])
            if history and history[-1].epoch < self.shown[i]:  # trained again from its start
                self.shown[i] = self.start[i] = 0
            for log in history:
                if log.epoch > self.shown[i]:
                    # the training time of this run's epochs (a fold waiting for a node has not started)
                    took = sum(h.epoch_seconds for h in history if self.start[i] < h.epoch <= log.epoch)
                    self._say(epoch_line(self.labels[i], log, took, job.budget_s, self.score_label))
                    self.shown[i] = log.epoch
            if i not in done:
                continue
            self.ended.add(i)
            out = done[i]
            if isinstance(out, FoldOutcome):
                self._say(f"{self.labels[i]}  finished: {out.epochs} epochs, validation {self.score_name} "
                          f"{out.score:.3f}")  # fmt: skip
            else:
                # a RayTaskError's text is its traceback (ANSI-coloured): the error it wraps says what went wrong
                cause = getattr(out, "cause", None) or out
                said = " ".join(str(cause).split())[:200]
                self._say(f"{self.labels[i]}  failed on the cluster: {type(cause).__name__}: {said}")
