"""``optimizer: auto`` is compared as it trains: AdamW on a short schedule, SGD on a long one. The duplicate check
compared configs before ``auto`` was resolved, so a trial with ``optimizer: adamw`` and one with ``auto`` that became
AdamW trained twice. Without a fold budget ``auto`` resolves at the claim; a budgeted fold resolves it after its timed
probe, and the trial is checked again then: a duplicate stops and takes its original's score (TPE is told it, or
FAIL when the original has none)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from automed.plan.schema import Plan
from automed.records import PROGRESS, PROGRESS_VERSION, stamped
from automed.search.context import SweepContext
from automed.search.space import SearchSpace
from automed.train.config import TrainConfig
from tests.test_sweep_dedupe import planned  # noqa: F401  (the module's planned sweep dir)

SPACE = {"optimizer": {"type": "categorical", "choices": ["auto", "sgd", "adamw"]}}
AUTO = {"optimizer": "auto"}


def _ctx(sweep_dir: Path, plan_dir: Path, base: TrainConfig, fold_budget_s: float | None) -> SweepContext:
    shutil.copy(plan_dir / "plan.json", sweep_dir / "plan.json")
    space = SearchSpace.model_validate({"name": "t", "parameters": SPACE})
    return SweepContext(
        str(sweep_dir), "ds", base.model_dump(mode="json"), space.model_dump(mode="json"), AUTO, 2,
        "sqlite:///x.db", "e", "r", fold_budget_s=fold_budget_s,
    )  # fmt: skip


def _training(monkeypatch: pytest.MonkeyPatch, scores: dict[str, float], resolves_to: str) -> list[str]:
    """Trials "train" fold 0 to the score given; a budgeted ``auto`` one first lays out its schedule (its
    progress.json names the optimizer ``auto`` became) and runs the trial's check after its first epoch."""
    import automed.workflow.trial as trial

    trained: list[str] = []

    def train(
        ctx: Any, key: str, values: Any, folds: Any, report: Any, plan: Any, td: Path, config: Any
    ) -> Any:
        trained.append(key)
        if config.optimizer == "auto" and ctx.fold_budget_s is not None:
            fold = td / "train" / config.configuration / "fold_0"
            fold.mkdir(parents=True)
            progress = {"optimizer": f"{resolves_to} lr 0.003", "epochs": []}
            (fold / PROGRESS).write_text(json.dumps(stamped(progress, PROGRESS_VERSION)))
            trial._settle(ctx, key, fold)
        result = {"key": key, "folds": {"0": {"score": scores[key], "epochs": 2}}, "n_folds_done": 1}
        result["score"] = scores[key]
        (td / "result.json").write_text(json.dumps(result))
        return result

    monkeypatch.setattr(trial, "_train", train)
    return trained


def _saved(sweep_dir: Path, key: str) -> dict[str, Any]:
    return dict(json.loads((sweep_dir / "trials" / key / "trial.json").read_text()))


@pytest.mark.parametrize(("epochs", "becomes"), [(3, "adamw"), (1000, "sgd")])
def test_an_auto_trial_without_a_budget_is_the_duplicate_of_the_optimizer_it_becomes(
    tmp_path: Path,
    planned: tuple[Path, Plan],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    epochs: int,
    becomes: str,
) -> None:
    from automed.workflow.trial import run_trial

    ctx = _ctx(tmp_path, planned[0], TrainConfig(epochs=epochs, iterations_per_epoch=250), None)
    other = "sgd" if becomes == "adamw" else "adamw"
    trained = _training(monkeypatch, {"early": 0.7, "other": 0.5}, becomes)
    reports: list[dict[str, float]] = []
    run_trial(ctx, "early", {"optimizer": becomes}, [0])
    run_trial(ctx, "other", {"optimizer": other}, [0])
    out = run_trial(ctx, "planner", AUTO, [0], reports.append)  # the planner default, drawn last
    assert trained == ["early", "other"]  # auto was never trained: it is the earlier trial's training
    assert out["duplicate_of"] == "early" and out["score"] == 0.7
    assert reports == [{"epoch": 0.0, "score": 0.7, "validated": 1.0}]  # TPE is told the original's score
    # the trial that trains the planner default's training is the default
    assert [k for k in ("early", "other", "planner") if _saved(tmp_path, k)["is_default"]] == ["early"]


def test_a_budgeted_auto_trial_is_checked_again_once_its_optimizer_is_resolved(
    tmp_path: Path,
    planned: tuple[Path, Plan],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from automed.search.report import trials_table
    from automed.workflow.trial import run_trial

    ctx = _ctx(tmp_path, planned[0], TrainConfig(epochs=3, iterations_per_epoch=3), 60.0)
    trained = _training(monkeypatch, {"early": 0.7, "planner": 0.6, "late": 0.5}, "adamw")
    run_trial(ctx, "early", {"optimizer": "adamw"}, [0])
    reports: list[dict[str, float]] = []
    out = run_trial(ctx, "planner", AUTO, [0], reports.append)
    # it started (its schedule, so its optimizer, comes from the timed probe), then stopped as early's duplicate
    assert trained == ["early", "planner"]
    assert out == {"key": "planner", "duplicate_of": "early", "folds": {}, "n_folds_done": 0, "score": 0.7}
    assert reports == [{"epoch": 0.0, "score": 0.7, "validated": 1.0}]
    assert _saved(tmp_path, "planner")["duplicate_of"] == "early"
    assert _saved(tmp_path, "early")["is_default"] and not _saved(tmp_path, "planner")["is_default"]
    table = trials_table(tmp_path, 2).set_index("trial")
    assert table.loc["planner", "status"] == "duplicate" and table.loc["planner", "folds_done"] == 0
    # a restarted duplicate stays one and trains nothing
    assert run_trial(ctx, "planner", AUTO, [0])["duplicate_of"] == "early" and trained == ["early", "planner"]


def test_an_explicit_trial_after_an_auto_one_resolved_the_same_is_its_duplicate(
    tmp_path: Path,
    planned: tuple[Path, Plan],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from automed.workflow.trial import run_trial

    ctx = _ctx(tmp_path, planned[0], TrainConfig(epochs=3, iterations_per_epoch=3), 60.0)
    trained = _training(monkeypatch, {"planner": 0.6, "late": 0.5, "sgd": 0.4}, "adamw")
    run_trial(ctx, "planner", AUTO, [0])  # resolved to AdamW after its probe: recorded
    assert _saved(tmp_path, "planner")["identity"]["optimizer"] == "adamw"
    assert run_trial(ctx, "late", {"optimizer": "adamw"}, [0])["duplicate_of"] == "planner"
    assert run_trial(ctx, "sgd", {"optimizer": "sgd"}, [0]).get("duplicate_of") is None
    assert trained == ["planner", "sgd"] and _saved(tmp_path, "planner")["is_default"]


def test_a_settled_duplicate_hands_its_own_duplicates_to_its_original(
    tmp_path: Path,
    planned: tuple[Path, Plan],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its duplicates would repeat a trial that trains nothing (no score to take); another fold of it, running at
    once, settles to the same original."""
    import contextlib

    from automed.workflow.trial import run_trial
    from automed.workflow.trial_claim import claim, settle

    ctx = _ctx(tmp_path, planned[0], TrainConfig(epochs=3, iterations_per_epoch=3), 60.0)
    _training(monkeypatch, {"early": 0.7}, "adamw")
    run_trial(ctx, "early", {"optimizer": "adamw"}, [0])
    with contextlib.ExitStack() as running:
        assert claim(ctx, "planner", AUTO, planned[1], running)[2] is None  # it starts training
        assert claim(ctx, "again", AUTO, planned[1], running)[2] == "planner"  # a re-draw while it runs
        assert settle(ctx, "planner", "adamw") == "early"  # its first fold's first epoch
        assert settle(ctx, "planner", "adamw") == "early"  # its other fold, started at the same time
    assert _saved(tmp_path, "again")["duplicate_of"] == "early"


class _Runs:
    """Stands in for the MLflow store a trial's ``Tracker`` talks to: runs by id, with their parent, tags, status
    and metrics; ``client.search_runs`` answers the parent filter that ends a duplicate's fold runs."""

    experiment_id = "0"

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.client = self

    def find_or_start_run(
        self, name: str, key: str, *, parent: str | None = None, tags: dict[str, str] | None = None
    ) -> tuple[str, bool]:
        if name in self.runs:
            self.runs[name]["status"] = "RUNNING"
            return name, False
        self.runs[name] = {"parent": parent, "tags": dict(tags or {}), "status": "RUNNING", "metrics": []}
        return name, True

    def found_down(self) -> None:  # the store always answers
        return None

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        assert run_id in self.runs

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        assert path.is_file()

    def log_metrics(self, run_id: str, metrics: dict[str, float | None], step: int | None = None) -> None:
        self.runs[run_id]["metrics"].append(metrics)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.runs[run_id]["tags"].update(tags)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.runs[run_id]["status"] = status

    def search_runs(self, experiment_ids: list[str], filter_string: str) -> list[Any]:
        import re
        from types import SimpleNamespace

        found = re.fullmatch(r"tags\.`mlflow\.parentRunId` = '([^']+)'", filter_string)
        assert experiment_ids == [self.experiment_id] and found is not None, filter_string
        children = [k for k, run in self.runs.items() if run["parent"] == found[1]]
        return [SimpleNamespace(info=SimpleNamespace(run_id=k)) for k in children]


def test_a_budgeted_auto_trial_stops_as_a_duplicate_at_its_first_epoch(
    tmp_path: Path,
    planned: tuple[Path, Plan],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through the trial's own wiring (only run_fold and MLflow stood in for): its first fold's first epoch runs the
    check with the optimizer the fold resolved, and the trial ends as the earlier AdamW trial's duplicate."""
    from types import SimpleNamespace

    import automed.workflow.trial as trial
    from automed.train.state import EpochLog

    runs = _Runs()
    folds: list[str] = []

    def run_fold(job: Any, callback: Any) -> Any:  # as the trainer: the schedule first, then the epochs
        folds.append(Path(job.workdir).name)
        folder = Path(job.workdir) / "train" / job.config["configuration"] / f"fold_{job.fold}"
        folder.mkdir(parents=True, exist_ok=True)
        progress = {"optimizer": "adamw lr 0.003", "epochs": []}
        (folder / PROGRESS).write_text(json.dumps(stamped(progress, PROGRESS_VERSION)))
        for epoch in (1, 2):
            callback.on_epoch_end(job.fold, EpochLog(epoch, 1.0, 1.0, [0.7], 0.7, 0.7, 0.003, 1.0, 0.0, 3))
        rows = [{"case": c, "fold": job.fold, "label": 1, "name": "fg", "dice": 0.7, "n_ref": 1, "n_pred": 1}
                for c in job.val_ids]  # fmt: skip
        (folder / "validation_metrics.json").write_text(json.dumps(rows))
        return SimpleNamespace(score=0.7, epochs=2)

    monkeypatch.setattr(trial, "run_fold", run_fold)
    monkeypatch.setattr(trial, "Tracker", lambda *args: runs)
    ctx = _ctx(tmp_path, planned[0], TrainConfig(epochs=3, iterations_per_epoch=3), 60.0)
    cases = [f"case_{i}" for i in range(4)]
    splits = [{"train": cases[:2], "val": cases[2:]}, {"train": cases[2:], "val": cases[:2]}]
    (tmp_path / "splits.json").write_text(json.dumps({"n_folds": 2, "folds": splits}))
    assert trial.run_trial(ctx, "early", {"optimizer": "adamw"}, [0])["score"] == 0.7
    reports: list[dict[str, float]] = []
    out = trial.run_trial(ctx, "planner", AUTO, [0], reports.append)
    assert folds == ["early", "planner"]  # it started: its optimizer comes from its fold's timed probe
    assert out == {"key": "planner", "duplicate_of": "early", "folds": {}, "n_folds_done": 0, "score": 0.7}
    # no epoch of its own told to the engine: the original's score, as validated
    assert reports == [{"epoch": 0.0, "score": 0.7, "validated": 1.0}]
    saved = _saved(tmp_path, "planner")
    assert saved["duplicate_of"] == "early" and saved["identity"]["optimizer"] == "adamw"
    # its MLflow runs (the trial's, its fold's) end FINISHED, tagged with the trial it repeats, with no epoch logged
    mine = {k: run for k, run in runs.runs.items() if k.startswith("trial-planner")}
    assert sorted(mine) == ["trial-planner", "trial-planner-fold0"]
    for run in mine.values():
        assert run["status"] == "FINISHED" and run["tags"]["duplicate_of"] == "early" and run["metrics"] == []
    early = runs.runs["trial-early"]
    assert early["status"] == "FINISHED" and "duplicate_of" not in early["tags"]
