"""What the Ray engine adds to Tune in the driver: a progress bar and trial times (:func:`progress_callback`), an early
stopping scheduler that records the trials it stops (:func:`recording_scheduler`), a searcher that tells TPE only
what trials showed (:func:`truthful_search`), and a time budget (this driver's) that marks the trials it stops
(:func:`budget_stopper`, :func:`budget_marks`), so trials.csv tells the scheduler's stops from the budget's.

Tune pickles these hooks when a search first starts and restores them from that pickle: their paths are taken, at
use, under the sweep dir of the driver that runs them (:func:`sweep_place`), not the one they were made in."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from automed.artifacts import write_json_atomic
from automed.search.context import SweepContext, trial_dir
from automed.search.engine import TrialOutcome
from automed.search.report import STOPPED, mark_stopped, stopped_by

_PLACE: dict[str, Path] = {}  # "sweep_dir": the sweep dir of the search this driver runs now


@contextlib.contextmanager
def sweep_place(sweep_dir: str | Path) -> Iterator[None]:
    """Within it, every hook of this module reads and writes under ``sweep_dir``, the sweep dir this driver runs,
    whatever sweep dir it was made with. Tune pickles the hooks (with the first run's absolute paths) when a search
    first starts and restores them from that pickle, the searcher's from its own checkpoint: a sweep dir moved
    before ``--resume`` had its scheduler marks and trial times written to the old place (its folders made again)
    or lost, its searcher look for duplicates there, and its budget read from there; a sweep dir copied whole had
    them written into the original."""
    _PLACE["sweep_dir"] = Path(sweep_dir)
    try:
        yield
    finally:
        _PLACE.pop("sweep_dir", None)


def sweep_path(made_in: str | Path, *parts: str) -> Path:
    """``parts`` under the sweep dir of this driver (:func:`sweep_place`); outside one, under ``made_in``. A
    module-level function, so a hook Tune pickled calls this module's (cloudpickle pickles it by name), not a copy
    of its state."""
    return _PLACE.get("sweep_dir", Path(made_in)).joinpath(*parts)


def budget_files(sweep_dir: str | Path, stage: str) -> tuple[Path, Path]:
    """A stage's budget (``{"budget_s": seconds or null}``, written by the driver before each fit) and its signal
    (written when the budget runs out), under the sweep dir of this driver."""
    return sweep_path(sweep_dir, "ray", f"{stage}_budget.json"), sweep_path(
        sweep_dir, "ray", f"{stage}_budget_reached.json"
    )


@functools.cache  # one class per base (Tune's make() is called again on resume)
def recording_scheduler(base: type) -> type:
    """``base`` (ASHA) that writes ``stopped.json`` (``by: scheduler``) into the folder of each trial it stops before
    the trial validated its folds: Tune ends those trials as it ends the ones its time budget stops."""

    class RecordingStops(base):  # type: ignore[misc]
        def __init__(self, sweep_dir: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.sweep_dir = sweep_dir

        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
            action = str(super().on_trial_result(tune_controller, trial, result))
            td = sweep_path(self.sweep_dir, "trials", str(trial.trial_id))
            if action == "STOP" and not result.get("validated") and td.is_dir():
                mark_stopped(td, "scheduler", result.get("epoch"))
            return action

    return RecordingStops


@functools.cache  # one class per base (Tune's make() is called again on resume)
def truthful_search(base: type) -> type:
    """``base`` (Ray's OptunaSearch) telling TPE only what a trial showed. A trial the scheduler stopped early is
    PRUNED, as the optuna engine does (Ray's own told it COMPLETE with its last per-epoch EMA, so TPE fitted early
    proxies mixed with final fold scores). A duplicate (:mod:`automed.workflow.trial_claim`) trained nothing: it
    is told its original's score once the original has one, and is no observation otherwise (FAIL, which TPE
    skips). Ray told a duplicate of a running trial PRUNED with no intermediate value, which TPE ranks below every
    other trial: a config judged worst before its own trial ended. Its slot is still freed at once: only the
    Optuna trial waits (RUNNING, which TPE ignores) for the original."""
    import optuna

    class TruthfulSearch(base):  # type: ignore[misc]
        def __init__(self, sweep_dir: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.sweep_dir = sweep_dir
            self.told: dict[str, float | None] = {}  # trials told so far: their score, None: no score
            self.waiting: dict[str, list[str]] = {}  # original -> its duplicates not told yet
            self.steps: dict[str, int] = {}  # the last epoch told of each trial

        def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
            """The per-epoch score as the trial's intermediate value at its epoch (ASHA's time): Ray's reported it
            at Tune's training_iteration, which a trial restarted by a retry or a restored search counts from 1
            again, so Optuna ignored its values (step already reported) until it passed its old count; a fold's
            validated score is no intermediate value (it is told when the trial completes)."""
            step = int(result.get("epoch", 0))
            if result.get("validated") or trial_id in self._completed_trials or "epoch" not in result:
                return
            if step > self.steps.get(trial_id, 0) and self.metric in result:
                self.steps[trial_id] = step
                self._ot_trials[trial_id].report(float(result[self.metric]), step)

        def on_trial_complete(
            self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
        ) -> None:
            result = result or {}
            score = result.get(self.metric) if result.get("validated") and not error else None
            original = _duplicate_of(sweep_path(self.sweep_dir, "trials", trial_id, "trial.json"))
            if original and score is None and not error:
                self.waiting.setdefault(original, []).append(trial_id)
                self._tell_duplicates(original)
                return
            if not original:
                self.told[trial_id] = None if score is None else float(score)
            if score is None:  # no value: PRUNED (FAIL on an error)
                result = {k: v for k, v in result.items() if k != self.metric}
            super().on_trial_complete(trial_id, result, error)
            self._tell_duplicates(trial_id)

        def _tell_duplicates(self, original: str) -> None:
            if original not in self.told:  # it still runs
                return
            score = self.told[original]
            for dup in self.waiting.pop(original, []):
                ot_trial = self._ot_trials[dup]
                if score is None:
                    self._ot_study.tell(ot_trial, None, state=optuna.trial.TrialState.FAIL)
                else:
                    self._ot_study.tell(ot_trial, score)
                self._completed_trials.add(dup)

    return TruthfulSearch


def budget_stopper(sweep_dir: str, stage: str) -> Any:
    """Tune's stopper of a stage's time budget (``RunConfig(stop=...)``, in place of ``time_budget_s``). Its budget
    is read from the stage's budget file (:func:`budget_files`, this driver's) at its first check and counted from
    there: Tune restores a search with the stopper it pickled when the search first started, so ``time_budget_s``
    gave a resumed sweep the first run's whole search budget again, whatever ``--budget`` the resume was given (or
    none), and none at all to one whose first run had no budget. When the budget runs out it writes the signal for
    :func:`budget_marks` (Tune copies the stopper and the callbacks apart on a restore, so they share a file, not
    an object); a signal left by a killed driver is removed at the first check. No budget file to read: the budget
    it was made with."""
    import math
    import time

    from ray.tune.stopper import Stopper

    class BudgetStopper(Stopper):
        def __init__(self) -> None:
            self.deadline: float | None = None
            self.made_with = _budget_s(budget_files(sweep_dir, stage)[0], None)

        def __setstate__(self, state: dict[str, Any]) -> None:
            self.__dict__.update(state, deadline=None)  # a restored copy counts this driver's budget

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return False

        def stop_all(self) -> bool:
            budget_file, signal = budget_files(sweep_dir, stage)
            if self.deadline is None:  # the first check of this driver
                signal.unlink(missing_ok=True)
                budget = _budget_s(budget_file, self.made_with)
                self.deadline = math.inf if budget is None else time.monotonic() + float(budget)
            reached = time.monotonic() >= self.deadline
            if reached and not signal.is_file():
                with contextlib.suppress(OSError):  # not written: the trials it stops are not marked
                    write_json_atomic(signal, {"reached": True})
            return reached

    return BudgetStopper()


def _budget_s(budget_file: Path, otherwise: float | None) -> float | None:
    try:
        budget = json.loads(budget_file.read_text())["budget_s"]
    except (OSError, ValueError, KeyError, TypeError):
        return otherwise
    return None if budget is None else float(budget)


def budget_marks(sweep_dir: str, stage: str) -> Any:
    """A Tune callback that records, in the stage's signal (:func:`budget_files`), the trials the search's time
    budget stopped before they validated their folds (the trials that ran when the step began in which the
    :func:`budget_stopper` stopped the experiment, and ended in it) and marks their folders (:func:`mark_budget_stops`). Tune stops them without
    telling callbacks or the searcher that they completed, so this is the one place their stop is known; their
    outcome (:func:`budget_outcomes`) and status in trials.csv come from the mark, never from the driver's clock (a
    restored search counts its budget with the stopper Tune restores, not the one the new driver made)."""
    from ray.tune import Callback

    class BudgetMarks(Callback):
        def __init__(self) -> None:
            self.running: set[str] = set()
            self.marked = False

        def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
            self.running = {t.trial_id for t in trials if t.status == "RUNNING"}

        def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
            signal = budget_files(sweep_dir, stage)[1]
            if self.marked or not signal.is_file():
                return
            self.marked = True
            stopped = [
                str(t.trial_id)
                for t in trials
                if t.trial_id in self.running
                and t.status == "TERMINATED"
                and not (t.last_result or {}).get("validated")
            ]
            with contextlib.suppress(OSError):  # not written: the trials it stopped are not marked
                write_json_atomic(signal, {"reached": True, "trials": stopped})
            mark_budget_stops(str(sweep_path(sweep_dir)), signal)

    return BudgetMarks()


def mark_budget_stops(sweep_dir: str, signal: Path) -> None:
    """``stopped.json`` (``by: budget``) in the folder of each trial ``signal`` lists, unless the scheduler stopped
    it first or it is a duplicate. Again after the search: a trial whose process had not yet claimed its config
    when Tune stopped it (it claims it while its actor stops) is marked once it has."""
    try:
        listed = json.loads(signal.read_text()).get("trials", [])
    except (OSError, ValueError):
        return
    for key in listed:
        td = Path(sweep_dir) / "trials" / str(key)
        tfile = td / "trial.json"  # none: stopped before it claimed its config
        if tfile.is_file() and not (td / STOPPED).is_file() and not _duplicate(tfile):
            mark_stopped(td, "budget")


def budget_outcomes(ctx: SweepContext, outcomes: list[TrialOutcome], signal: Path) -> list[TrialOutcome]:
    """A stopped trial whose folder the budget marked (:func:`budget_marks`, :func:`mark_budget_stops`) timed out."""
    mark_budget_stops(ctx.sweep_dir, signal)
    return [
        replace(o, status="timed out")
        if o.status == "stopped" and stopped_by(trial_dir(ctx, o.key)) == "budget"
        else o
        for o in outcomes
    ]


def _no_incomplete_trials(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Trials did not complete")


def quiet_incomplete_trials() -> None:
    """Tune's closing "Trials did not complete: [...]" error names the failed trials again: left out (once)."""
    logger = logging.getLogger("ray.tune.tune")
    if _no_incomplete_trials not in logger.filters:
        logger.addFilter(_no_incomplete_trials)


def _duplicate(tfile: Path) -> bool:
    return bool(_duplicate_of(tfile))


def _duplicate_of(tfile: Path) -> str:
    """The trial a trial repeats ("": none, or no trial.json: it failed before it claimed its config)."""
    try:
        return str(json.loads(tfile.read_text()).get("duplicate_of") or "")
    except (OSError, ValueError):
        return ""


def _read_times(path: Path) -> dict[str, dict[str, Any]]:
    """The trial times recorded so far (a file cut short by a kill starts them afresh)."""
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def progress_callback(stage: str, total: int, show: bool, sweep_dir: str) -> Any:
    """A Tune callback that moves a rich progress bar as trials end (``show=False``: counts only) and records, in the
    driver, how long each trial ran (``ray/<stage>_trial_times.json`` under this driver's sweep dir, for the
    orchestration-overhead benchmark): per trial ``wall_s``,
    the seconds from Tune starting each of its ``attempts`` to its end, summed, measured on the monotonic clock (a
    wall-clock step changes nothing), and ``start``/``end``, the wall-clock times of its first start and last end
    (for reading only: a difference of them is no duration). The file is written as each trial ends, and read again
    when a restored search starts, so a killed driver's finished trials keep their times; an attempt the kill cut
    short is not counted."""
    import time

    from ray.tune import Callback

    class _Progress(Callback):
        def __init__(self) -> None:
            self.done = 0
            self.bar: Any = None
            self.times: dict[str, dict[str, Any]] = {}
            self.began: dict[str, float] = {}  # trials running now: when their attempt began (monotonic)

        def setup(self, *args: Any, **info: Any) -> None:
            # not the copy Tune pickled with the callback at the first start
            self.times = _read_times(self.times_file())
            self.began = {}
            if show:
                from rich.progress import Progress

                self.bar = Progress(transient=False)
                self.bar.start()
                self.task = self.bar.add_task(f"sweep {stage}", total=total)

        def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            unit = trial.config.get("__trial")
            entry = self.times.setdefault(
                trial.trial_id, {"start": time.time(), "wall_s": 0.0, "attempts": 0}
            )
            entry.update(key=unit[0] if unit else trial.trial_id, folds=unit[2] if unit else None)
            entry["attempts"] = int(entry.get("attempts", 0)) + 1
            self.began[trial.trial_id] = time.monotonic()

        def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self._ended(trial.trial_id)  # a failed attempt Tune starts again: its time counts

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self._step(trial)

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self._step(trial)

        def times_file(self) -> Path:
            return sweep_path(sweep_dir, "ray", f"{stage}_trial_times.json")

        def _ended(self, trial_id: str) -> None:
            began = self.began.pop(trial_id, None)
            if began is not None:
                entry = self.times.setdefault(trial_id, {"key": trial_id})
                entry["wall_s"] = float(entry.get("wall_s", 0.0)) + time.monotonic() - began
                entry["end"] = time.time()

        def _step(self, trial: Any) -> None:
            self.done += 1
            self._ended(trial.trial_id)
            write_json_atomic(self.times_file(), self.times)
            if self.bar is not None:
                self.bar.update(self.task, completed=self.done)

        def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
            for trial_id in list(self.began):  # stopped by the time budget: Tune says no trial ended
                self._ended(trial_id)
            write_json_atomic(self.times_file(), self.times)
            if self.bar is not None:
                self.bar.stop()

    return _Progress()
