"""The Ray engine's Tune hooks as module-level classes: the scheduler that records its stops (:class:`RecordingStops`),
the searcher that tells TPE only what trials showed (:class:`TruthfulSearch`), the time budget's stopper and marks
(:class:`BudgetStopper`, :class:`BudgetMarks`), and the progress bar with trial times (:class:`TrialProgress`).

Tune pickles its hooks into the experiment state when a search first starts and restores them from there on
``--resume``. Classes made inside functions were pickled by value, their code with them: a sweep started by one
automed and resumed by a newer one kept the old hooks' code, so fixes never reached it. These are pickled by
reference (module and name); only their state, in plain attributes, is saved. This module imports Ray at its top:
only the Ray engine imports it, when it runs a stage, so ``import automed`` and the optuna engine never load Ray.
What the hooks read and write lies under the sweep dir of the driver that runs them (:mod:`automed.search.ray_hooks`).
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

import optuna
from ray.tune import Callback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch
from ray.tune.stopper import Stopper

from automed.artifacts import write_json_atomic
from automed.search.ray_hooks import (
    _budget_s,
    _duplicate_of,
    _read_times,
    budget_files,
    mark_budget_stops,
    sweep_path,
)
from automed.search.report import mark_stopped


class RecordingStops(ASHAScheduler):
    """ASHA that writes ``stopped.json`` (``by: scheduler``) into the folder of each trial it stops before the trial
    validated its folds: Tune ends those trials as it ends the ones its time budget stops."""

    def __init__(self, sweep_dir: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sweep_dir = sweep_dir

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        action = str(super().on_trial_result(tune_controller, trial, result))
        td = sweep_path(self.sweep_dir, "trials", str(trial.trial_id))
        if action == "STOP" and not result.get("validated") and td.is_dir():
            mark_stopped(td, "scheduler", result.get("epoch"))
        return action


class TruthfulSearch(OptunaSearch):
    """Ray's OptunaSearch telling TPE only what a trial showed. A trial the scheduler stopped early is PRUNED, as the
    optuna engine does (Ray's own told it COMPLETE with its last per-epoch EMA, so TPE fitted early proxies mixed
    with final fold scores). A duplicate (:mod:`automed.workflow.trial_claim`) trained nothing: it is told its
    original's score once the original has one, and is no observation otherwise (FAIL, which TPE skips). Ray told
    a duplicate of a running trial PRUNED with no intermediate value, which TPE ranks below every other trial: a
    config judged worst before its own trial ended. Its slot is still freed at once: only the Optuna trial waits
    (RUNNING, which TPE ignores) for the original."""

    def __init__(self, sweep_dir: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sweep_dir = sweep_dir
        self.told: dict[str, float | None] = {}  # trials told so far: their score, None: no score
        self.waiting: dict[str, list[str]] = {}  # original -> its duplicates not told yet
        self.steps: dict[str, int] = {}  # the last epoch told of each trial

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """The per-epoch score as the trial's intermediate value at its epoch (ASHA's time): Ray's reported it at
        Tune's training_iteration, which a trial restarted by a retry or a restored search counts from 1 again, so
        Optuna ignored its values (step already reported) until it passed its old count; a fold's validated score
        is no intermediate value (it is told when the trial completes)."""
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
        study = self._ot_study
        assert study is not None  # made by the searcher's setup, before any trial starts
        for dup in self.waiting.pop(original, []):
            ot_trial = self._ot_trials[dup]
            if score is None:
                study.tell(ot_trial, None, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(ot_trial, score)
            self._completed_trials.add(dup)


class BudgetStopper(Stopper):
    """Tune's stopper of a stage's time budget (``RunConfig(stop=...)``, in place of ``time_budget_s``). Its budget is
    read from the stage's budget file (:func:`~automed.search.ray_hooks.budget_files`, this driver's) at its first
    check and counted from there: Tune restores a search with the stopper it pickled when the search first started,
    so ``time_budget_s`` gave a resumed sweep the first run's whole search budget again, whatever ``--budget`` the
    resume was given (or none), and none at all to one whose first run had no budget. When the budget runs out it
    writes the signal for :class:`BudgetMarks` (Tune copies the stopper and the callbacks apart on a restore, so they
    share a file, not an object); a signal left by a killed driver is removed at the first check. No budget file to
    read: the budget it was made with."""

    def __init__(self, sweep_dir: str, stage: str) -> None:
        self.sweep_dir = sweep_dir
        self.stage = stage
        self.deadline: float | None = None
        self.made_with = _budget_s(budget_files(sweep_dir, stage)[0], None)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, deadline=None)  # a restored copy counts this driver's budget

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        budget_file, signal = budget_files(self.sweep_dir, self.stage)
        if self.deadline is None:  # the first check of this driver
            signal.unlink(missing_ok=True)
            budget = _budget_s(budget_file, self.made_with)
            self.deadline = math.inf if budget is None else time.monotonic() + float(budget)
        reached = time.monotonic() >= self.deadline
        if reached and not signal.is_file():
            with contextlib.suppress(OSError):  # not written: the trials it stops are not marked
                write_json_atomic(signal, {"reached": True})
        return reached


class BudgetMarks(Callback):
    """Records, in the stage's signal, the trials the search's time budget stopped before they validated their folds
    (the trials that ran when the step began in which the :class:`BudgetStopper` stopped the experiment, and ended
    in it) and marks their folders (:func:`~automed.search.ray_hooks.mark_budget_stops`). Tune stops them without
    telling callbacks or the searcher that they completed, so this is the one place their stop is known; their
    outcome (:func:`~automed.search.ray_hooks.budget_outcomes`) and status in trials.csv come from the mark, never
    from the driver's clock (a restored search counts its budget with the stopper Tune restores)."""

    def __init__(self, sweep_dir: str, stage: str) -> None:
        self.sweep_dir = sweep_dir
        self.stage = stage
        self.running: set[str] = set()
        self.marked = False

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self.running = {t.trial_id for t in trials if t.status == "RUNNING"}

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        signal = budget_files(self.sweep_dir, self.stage)[1]
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
        mark_budget_stops(str(sweep_path(self.sweep_dir)), signal)


class TrialProgress(Callback):
    """Moves a rich progress bar as trials end (``show=False``: counts only) and records, in the driver, how long each
    trial ran (``ray/<stage>_trial_times.json`` under this driver's sweep dir, for the orchestration-overhead
    benchmark): per trial ``wall_s``, the seconds from Tune starting each of its ``attempts`` to its end, summed,
    measured on the monotonic clock (a wall-clock step changes nothing), and ``start``/``end``, the wall-clock times
    of its first start and last end (for reading only: a difference of them is no duration). The file is written as
    each trial ends, and read again when a restored search starts, so a killed driver's finished trials keep their
    times; an attempt the kill cut short is not counted."""

    def __init__(self, stage: str, total: int, show: bool, sweep_dir: str) -> None:
        self.stage = stage
        self.total = total
        self.show = show
        self.sweep_dir = sweep_dir
        self.done = 0
        self.bar: Any = None
        self.times: dict[str, dict[str, Any]] = {}
        self.began: dict[str, float] = {}  # trials running now: when their attempt began (monotonic)

    def setup(self, *args: Any, **info: Any) -> None:
        # not the copy Tune pickled with the callback at the first start
        self.times = _read_times(self.times_file())
        self.began = {}
        if self.show:
            from rich.progress import Progress

            self.bar = Progress(transient=False)
            self.bar.start()
            self.task = self.bar.add_task(f"sweep {self.stage}", total=self.total)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        unit = trial.config.get("__trial")
        entry = self.times.setdefault(trial.trial_id, {"start": time.time(), "wall_s": 0.0, "attempts": 0})
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
        return sweep_path(self.sweep_dir, "ray", f"{self.stage}_trial_times.json")

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
