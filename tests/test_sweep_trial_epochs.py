"""The time axis a sweep trial reports to its engine (ASHA's ``epoch``, TPE's intermediate steps) runs on over the
trial's folds (``--no-screen``: a trial trains every fold). A restored or retried trial skipped the folds it had
finished and numbered the next fold's epochs from 0 again, below what the finished folds had reported: ASHA saw the
trial go back in time and Optuna dropped its values as steps already reported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from automed import api
from automed.search.context import SweepContext
from automed.testing.synthetic import make_dataset
from automed.train.config import TrainConfig
from automed.train.state import EpochLog

EPOCHS = 3  # per fold


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("epochs")
    ds = make_dataset(root / "ds", n_cases=4, shape=(8, 12, 12), seed=3)
    api.plan_dataset(ds, root / "W", preset="cpu", run_preprocess=False, show_progress=False)
    return root / "W"


class _Tracker:
    """Stands in for MLflow: runs are names, nothing is stored."""

    def __init__(self, *args: Any) -> None:
        pass

    def find_or_start_run(self, name: str, key: str, **kw: Any) -> tuple[str, bool]:
        return name, False

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **kw: None


class _Folds:
    """Stands in for run_fold: EPOCHS epochs a fold, resumed after the last one a killed attempt finished (its
    checkpoint); ``kill_at`` (fold, epoch): the attempt dies after that epoch."""

    def __init__(self) -> None:
        self.finished: dict[int, int] = {}  # fold -> epochs its checkpoint holds
        self.kill_at: tuple[int, int] | None = None

    def __call__(self, job: Any, callback: Any) -> Any:
        start = self.finished.get(job.fold, 0) if job.resume else 0
        folder = Path(job.workdir) / "train" / job.config["configuration"] / f"fold_{job.fold}"
        folder.mkdir(parents=True, exist_ok=True)
        for epoch in range(start + 1, EPOCHS + 1):
            callback.on_epoch_end(
                job.fold, EpochLog(epoch, 1.0, 1.0, [0.5], 0.5, 0.1 * epoch, 0.01, 1.0, 0.0, 1)
            )
            self.finished[job.fold] = epoch
            (folder / "checkpoint_latest.pt").write_text("")
            if self.kill_at == (job.fold, epoch):
                raise KeyboardInterrupt  # the driver's kill: Tune restores the trial later
        (folder / "validation_metrics.json").write_text("[]")
        return SimpleNamespace(score=0.5, epochs=EPOCHS)


def _aggregate(td: Path, key: str, values: Any, config: TrainConfig, *args: Any) -> tuple[Any, Any]:
    folds = {}
    for done in (td / "train" / config.configuration).glob("fold_*/fold_result.json"):
        r = json.loads(done.read_text())
        folds[done.parent.name[5:]] = {"score": r["score"], "epochs": r["epochs"]}
    return {"key": key, "folds": folds, "score": 0.5} if folds else {"key": key, "folds": {}}, {}


def _ctx(sweep: Path, planned: Path) -> SweepContext:
    shutil.copy(planned / "plan.json", sweep / "plan.json")
    cases = [f"case_{i}" for i in range(4)]
    splits = {
        "n_folds": 2,
        "folds": [{"train": cases[:2], "val": cases[2:]}, {"train": cases[2:], "val": cases[:2]}],
    }
    (sweep / "splits.json").write_text(json.dumps(splits))
    base = TrainConfig().model_dump(mode="json")
    return SweepContext(
        str(sweep), "ds", base, {"name": "t", "parameters": {}}, {}, 2, "sqlite:///x", "e", "r"
    )


@pytest.mark.parametrize("kill_at", [(1, 1), (0, 2)])
def test_a_restored_trial_reports_its_later_folds_after_its_earlier_ones(
    tmp_path: Path, planned: Path, monkeypatch: pytest.MonkeyPatch, kill_at: tuple[int, int]
) -> None:
    import automed.workflow.trial as trial

    folds = _Folds()
    monkeypatch.setattr(trial, "run_fold", folds)
    monkeypatch.setattr(trial, "_aggregate", _aggregate)
    monkeypatch.setattr(trial, "Tracker", _Tracker)
    ctx = _ctx(tmp_path, planned)
    reports: list[dict[str, float]] = []
    folds.kill_at = kill_at
    with pytest.raises(KeyboardInterrupt):
        trial.run_trial(ctx, "t", {}, [0, 1], reports.append)
    folds.kill_at = None
    trial.run_trial(
        ctx, "t", {}, [0, 1], reports.append
    )  # restored (or retried): fold 0 done, fold 1 resumed
    epochs = [r["epoch"] for r in reports if not r.get("validated")]
    assert epochs == sorted(set(epochs)), epochs  # never back in time, no epoch told twice
    assert epochs[-1] == 2 * EPOCHS
    validated = [(r["fold"], r["epoch"]) for r in reports if r.get("validated")]
    assert validated == [(0.0, EPOCHS), (1.0, 2 * EPOCHS)]
    # a trial that finished every fold before its driver died is told its score at its last epoch again
    reports.clear()
    trial.run_trial(ctx, "t", {}, [0, 1], reports.append)
    assert reports == [{"epoch": 2 * EPOCHS, "score": 0.5, "validated": 1.0}]
