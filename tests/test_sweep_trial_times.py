"""The Ray engine's ``ray/<stage>_trial_times.json`` (read by ``bench/sweep_overhead.py`` for each Ray trial's wall
time). It held wall-clock ``start``/``end`` stamps, written once when the experiment ended: a clock step made a
negative or inflated duration, a killed driver lost every trial's times (a restored search rewrote the file with the
restored run's trials only), a retried trial counted only its last attempt, and a trial the time budget stopped had
no end. Now each trial has ``wall_s``, its attempts' monotonic durations summed, written as each trial ends."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest


class _Trial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id
        self.config: dict[str, Any] = {}


class _Clocks:
    """time.monotonic advanced by hand; time.time stepped back an hour (NTP) after the first reading."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.mono = 1000.0
        self.wall = [1.8e9]
        monkeypatch.setattr(time, "monotonic", lambda: self.mono)
        monkeypatch.setattr(time, "time", self._time)

    def _time(self) -> float:
        now = self.wall[0]
        self.wall[0] = now - 3600.0
        return now


def _times(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def test_a_trials_wall_time_is_a_monotonic_duration_over_its_attempts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from automed.search.ray_tune_hooks import TrialProgress

    clocks = _Clocks(monkeypatch)
    path = tmp_path / "ray" / "search_trial_times.json"
    cb = TrialProgress("search", 3, False, str(tmp_path))
    cb.setup(stop=None, num_samples=3, total_num_samples=3)
    a, b = _Trial("a"), _Trial("b")
    cb.on_trial_start(0, [], a)
    cb.on_trial_start(0, [], b)
    clocks.mono += 5.0
    cb.on_trial_complete(1, [], a)
    assert _times(path)["a"]["wall_s"] == 5.0  # written as it ends, a clock step notwithstanding
    cb.on_trial_recover(2, [], b)  # its first attempt failed after 5 s; Tune starts it again
    cb.on_trial_start(3, [], b)
    clocks.mono += 2.0
    cb.on_trial_complete(4, [], b)
    c = _Trial("c")
    cb.on_trial_start(5, [], c)
    clocks.mono += 4.0
    cb.on_experiment_end([])  # the budget stopped c: Tune told no callback it ended
    got = _times(path)
    assert {k: (v["wall_s"], v["attempts"]) for k, v in got.items()} == {
        "a": (5.0, 1),
        "b": (7.0, 2),
        "c": (4.0, 1),
    }


def test_a_restored_search_keeps_the_killed_drivers_finished_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tune restores the callback from the pickle it made when the first run started (no trial times in it)."""
    import ray.cloudpickle as pickle

    from automed.search.ray_tune_hooks import TrialProgress

    clocks = _Clocks(monkeypatch)
    path = tmp_path / "ray" / "search_trial_times.json"
    pickled = pickle.dumps(TrialProgress("search", 2, False, str(tmp_path)))  # Tune's tuner.pkl
    first = pickle.loads(pickled)
    first.setup()
    first.on_trial_start(0, [], _Trial("a"))
    first.on_trial_start(0, [], _Trial("b"))
    clocks.mono += 3.0
    first.on_trial_complete(1, [], _Trial("a"))
    clocks.mono += 1.0  # the driver is killed while b runs: no on_experiment_end
    restored = pickle.loads(pickled)
    restored.setup()
    restored.on_trial_start(0, [], _Trial("b"))  # resumed
    clocks.mono += 6.0
    restored.on_trial_complete(1, [], _Trial("b"))
    restored.on_experiment_end([])
    got = _times(path)
    assert {k: (v["wall_s"], v["attempts"]) for k, v in got.items()} == {"a": (3.0, 1), "b": (6.0, 2)}
