"""The workflow's seams: a task without an implementation is refused with a clear error; the model metadata records the
values a config resolved to; selection records its choice beside model.json and never rewrites it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from automed import api
from automed._version import __version__
from automed.errors import DatasetError
from automed.plan.schema import Plan
from automed.testing.synthetic import make_dataset
from automed.train.config import TrainConfig
from automed.train.meta import InferenceChoice, load_model, read_meta, resolve_training


def test_a_task_without_an_implementation_is_refused_with_file_rule_and_fix(tmp_path: Path) -> None:
    from automed.tasks.registry import TASKS, task_for

    assert sorted(TASKS.names()) == ["classification", "regression", "segmentation"]
    with pytest.raises(DatasetError) as err:
        task_for("synthesis", tmp_path / "d.csv")
    (p,) = err.value.problems
    assert p.file == str(tmp_path / "d.csv") and "synthesis" in p.value
    assert "segmentation" in p.rule and "ValueToPredict" in p.fix


def test_resolved_values_and_overrides(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "d", n_cases=3, shape=(16, 32, 32))
    plan = api.plan_dataset(ds, tmp_path / "W", preset="cpu", run_preprocess=False, show_progress=False).plan
    cfgp = plan.configurations["3d_fullres"]
    plain = resolve_training(plan, TrainConfig())
    assert plain.patch_size == list(cfgp.patch_size) and plain.batch_size == cfgp.batch_size
    assert plain.foreground_oversample == cfgp.foreground_oversample
    div = cfgp.network.divisor
    forced = TrainConfig(patch_size=[d * 2 for d in div], batch_size=3, foreground_oversample=0.5)
    res = resolve_training(plan, forced)
    assert res.patch_size == [d * 2 for d in div] and res.batch_size == 3 and res.foreground_oversample == 0.5
    from automed.errors import ConfigError

    with pytest.raises(ConfigError, match="divisible"):
        resolve_training(plan, TrainConfig(patch_size=[d + 1 for d in div]))
    # an explicit override equal to the plan's value resolves to the same training
    same = TrainConfig(patch_size=list(cfgp.patch_size), batch_size=cfgp.batch_size)
    assert resolve_training(plan, same) == plain
    assert isinstance(Plan.load(tmp_path / "W" / "plan.json"), Plan)


@pytest.mark.slow
def test_train_records_resolved_values_and_select_leaves_model_json(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "d", n_cases=4, shape=(12, 24, 24), seed=2)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("epochs: 1\niterations_per_epoch: 2\nval_iterations: 1\nnum_workers: 0\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = api.train(ds, tmp_path / "W", config=cfg, folds=2, tracking_uri=uri, workers=0, show_progress=False)
    wd = res.workdir
    plan = Plan.load(wd / "plan.json")
    meta = json.loads((wd / "model.json").read_text())
    assert meta["schema_version"] == 2 and "registered" not in meta
    assert meta["resolved"]["patch_size"] == list(plan.configurations["3d_fullres"].patch_size)
    assert json.loads((wd / "tracking.json").read_text())["registered"]["version"] == "1"
    before = (wd / "model.json").read_bytes()
    sel = api.select([wd], tmp_path / "S", tracking_uri=uri, max_cases=1)
    assert (wd / "model.json").read_bytes() == before
    choice = InferenceChoice.model_validate_json((wd / "inference.json").read_text())
    assert choice.inference.postprocessing == sel["postprocessing"]
    assert choice.selection == str((tmp_path / "S").resolve())
    assert load_model(wd).inference == choice.inference  # predict, export and registration apply the choice
    assert (
        read_meta(wd / "model_bundle" / "model.json").inference == choice.inference
    )  # registered again with it
    assert sel["registered"]["version"] == "2"
    # a later selection of the same training replaces its settings: the first selection folder says so instead of
    # predicting with settings it did not choose
    from automed.errors import ArtifactError
    from automed.workflow.predict import model_dir

    assert model_dir(tmp_path / "S") == wd
    api.select([wd], tmp_path / "S2", tracking_uri=uri, inference=False)
    with pytest.raises(ArtifactError, match=r"chosen since by another selection \(S2\)"):
        model_dir(tmp_path / "S")
    assert model_dir(tmp_path / "S2") == wd


def test_a_resumed_budgeted_training_gives_unstarted_folds_their_share_in_every_placement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``automed train --resume`` without ``--budget`` after a budgeted run: folds that had not started get their
    share of the original budget (``fallback``) whether they run here, in parallel processes or on a Ray cluster
    (the last two trained them without any budget)."""
    from automed.workflow import fold_runs
    from automed.workflow.fold import FoldJob

    def job(fold: int, resume: bool) -> FoldJob:
        return FoldJob(str(tmp_path), "DS", {}, fold, [], [], None, None, resume, 0, "r", "u", "e", 0, False)

    (tmp_path / "train_config.json").write_text(json.dumps({"dataset": "DS"}))
    seen: dict[str, list[float | None]] = {}
    monkeypatch.setattr(
        fold_runs,
        "run_jobs_on_ray",
        lambda jobs, *a: seen.setdefault("ray", [j.budget_s for j in jobs]) and [],
    )
    monkeypatch.setattr(
        fold_runs,
        "_run_parallel",
        lambda jobs, *a: seen.setdefault("parallel", [j.budget_s for j in jobs]) and [],
    )
    jobs = [job(0, True), job(1, False)]  # fold 0 resumes from its checkpoint (its schedule is in it)
    fold_runs.run_fold_jobs(jobs, fold_runs.Placement(ray_address="auto"), tmp_path, None, 600.0)
    fold_runs.run_fold_jobs(jobs, fold_runs.Placement(parallel_folds=2), tmp_path, None, 600.0)
    assert seen == {"ray": [None, 600.0], "parallel": [None, 600.0]}


def test_a_resumed_sweep_refuses_options_it_would_ignore(tmp_path: Path) -> None:
    from dataclasses import asdict

    from automed.data.dataset import load_dataset
    from automed.errors import ConfigError
    from automed.workflow.prepare import dataset_source
    from automed.workflow.sweep_resume import resume_state
    from automed.workflow.sweep_stages import STATE_FILE, SweepOptions
    from tests.test_sweep_state import saved_parts

    ds = make_dataset(tmp_path / "data", n_cases=4, shape=(8, 12, 12), seed=3)
    other = make_dataset(tmp_path / "other", n_cases=4, shape=(8, 12, 12), seed=4)
    wd = tmp_path / "S"
    api.plan_dataset(ds, wd, workers=1, show_progress=False, folds=2, run_preprocess=True)
    saved = SweepOptions(space="space.yaml", trials=20, seed=3)
    source = dataset_source(load_dataset(ds))
    state = {**saved_parts(), "automed_version": __version__, "options": asdict(saved), "dataset": source}
    (wd / STATE_FILE).write_text(json.dumps(state))
    # options left at their defaults, and those a resume takes (budget, device, workers): accepted
    _, opts = resume_state(wd, SweepOptions(budget_s=60.0, device="cpu", workers=1), ds)
    assert (opts.trials, opts.seed, opts.space, opts.budget_s, opts.device, opts.workers) == (
        20, 3, "space.yaml", 60.0, "cpu", 1,
    )  # fmt: skip
    with pytest.raises(ConfigError) as e:
        resume_state(wd, SweepOptions(trials=30, sampler="random"), other)
    text = str(e.value)
    assert "keeps its own trials" in text and "30 asked, 20 saved" in text and "keeps its own sampler" in text
    assert "a resumed sweep keeps its dataset" in text and "-o NEW_WORKDIR" in text
    # an option typed with its default value (--trials 8 over a saved 20) is another value all the same: refused
    # (compared with the defaults, it went through and was ignored)
    with pytest.raises(ConfigError, match="8 asked, 20 saved"):
        resume_state(wd, SweepOptions(trials=8), ds, asked={"trials"})
    resume_state(wd, SweepOptions(trials=20), ds, asked={"trials"})  # the same value again: accepted
    # the command line passes what was typed (None otherwise): --trials 8, the default value, reaches the check
    from typer.testing import CliRunner

    from automed.cli import app

    r = CliRunner().invoke(app, ["sweep", "--resume", str(wd), "--trials", "8"])
    assert isinstance(r.exception, ConfigError) and "8 asked, 20 saved" in str(r.exception)


def test_a_sweep_whose_dataset_moved_resumes_from_its_new_place(tmp_path: Path) -> None:
    """Like a training: the missing saved place is named with the command that gives the new one; the new place
    (the cases of the split) is taken and recorded in sweep.json and in the finished trials' train_config.json."""
    import shutil
    from dataclasses import asdict

    from automed.data.dataset import load_dataset
    from automed.errors import ArtifactError
    from automed.workflow.prepare import dataset_source
    from automed.workflow.sweep_resume import resume_state
    from automed.workflow.sweep_stages import STATE_FILE, SweepOptions
    from tests.test_sweep_state import saved_parts

    ds = make_dataset(tmp_path / "data", n_cases=4, shape=(8, 12, 12), seed=3)
    wd = tmp_path / "S"
    api.plan_dataset(ds, wd, workers=1, show_progress=False, folds=2, run_preprocess=True)
    source = dataset_source(load_dataset(ds))
    state = {
        **saved_parts(),
        "automed_version": __version__,
        "options": asdict(SweepOptions(trials=4)),
        "dataset": source,
    }
    (wd / STATE_FILE).write_text(json.dumps(state))
    trial = wd / "trials" / "t1" / "train_config.json"
    trial.parent.mkdir(parents=True)
    trial.write_text(json.dumps({"dataset": source, "config": {}, "options": {}}))
    moved = tmp_path / "elsewhere"
    shutil.move(ds, moved)
    with pytest.raises(ArtifactError) as e:
        resume_state(wd, SweepOptions())
    assert "moved or deleted" in str(e.value) and f"automed sweep NEW_PLACE --resume {wd}" in str(e.value)
    state, _ = resume_state(wd, SweepOptions(), moved)
    now = dataset_source(load_dataset(moved))
    assert state["dataset"] == now and json.loads((wd / STATE_FILE).read_text())["dataset"] == now
    assert json.loads(trial.read_text())["dataset"] == now
    assert resume_state(wd, SweepOptions())[0]["dataset"] == now  # recorded: no need to repeat it


def test_mirror_tta_only_for_networks_trained_on_mirrored_images() -> None:
    assert TrainConfig().mirror_tta(True)
    assert not TrainConfig.model_validate({"augmentation": {"flip_p": 0}}).mirror_tta(True)
    assert not TrainConfig().mirror_tta(False)


def test_an_unstarted_fold_resumed_without_a_budget_gets_the_share_its_wave_had() -> None:
    """Five folds of a 1,000 s budget: one after another 200 s each; two at once (three waves) 333 s; five at
    once (one wave) all of it - not the sequential 200 s the parallel run never gave them."""
    from automed.workflow.train_start import unstarted_share

    assert unstarted_share(1000.0, 5, 1) == 200.0
    assert round(unstarted_share(1000.0, 5, 2), 1) == 333.3
    assert unstarted_share(1000.0, 5, 5) == 1000.0 and unstarted_share(1000.0, 5, 8) == 1000.0


def test_an_unstarted_fold_resumed_without_a_budget_gets_the_share_a_started_fold_was_given(
    tmp_path: Path,
) -> None:
    """The highest-numbered fold that started recorded its share wherever it ran (Ray: the first run's concurrency
    is known only through it); a screened fold 0's screening share is not a fold's; none recorded: None."""
    from automed.workflow.train_start import recorded_share

    def started(fold: int, budget: float | None) -> None:
        folder = tmp_path / "train" / "3d_fullres" / f"fold_{fold}"
        folder.mkdir(parents=True)
        (folder / "progress.json").write_text(json.dumps({"budget_s": budget, "history": []}))

    assert recorded_share(tmp_path, "3d_fullres", [0, 1, 2], screened=False) is None
    started(0, 120.0)
    assert recorded_share(tmp_path, "3d_fullres", [0, 1, 2], screened=False) == 120.0
    assert recorded_share(tmp_path, "3d_fullres", [0, 1, 2], screened=True) is None
    started(1, 300.0)
    assert recorded_share(tmp_path, "3d_fullres", [0, 1, 2], screened=True) == 300.0
    assert recorded_share(tmp_path, "2d", [0, 1, 2], screened=False) is None
    started(2, None)  # a fold written before folds recorded their budget
    assert recorded_share(tmp_path, "3d_fullres", [0, 1, 2], screened=False) == 300.0


def test_a_resumed_training_refuses_options_it_would_ignore(tmp_path: Path) -> None:
    """``automed train --resume W`` continues W's saved dataset, config and options: another --folds, --epochs,
    --config value, dataset, ... would be silently ignored, so they are refused (each named, with the fix) before
    anything runs; the saved values typed again, and the options a resume takes, are accepted."""
    from automed.data.dataset import load_dataset
    from automed.errors import ConfigError
    from automed.workflow.prepare import dataset_source
    from automed.workflow.resume_checks import refuse_ignored_on_resume

    ds = make_dataset(tmp_path / "data", n_cases=3, shape=(8, 12, 12), seed=1)
    other = make_dataset(tmp_path / "other", n_cases=3, shape=(8, 12, 12), seed=2)
    wd = tmp_path / "W"
    api.plan_dataset(
        ds, wd, workers=1, show_progress=False, run_preprocess=False
    )  # the fingerprint a resume checks
    options = {"folds": 5, "only_folds": [0], "folds_auto": True, "preset": "cpu", "register": True,
               "parallel_folds": 1, "keep_case_ids": False, "overlays": 0, "cv_workdir": None,
               "previous_workdir": None, "fold_resources": {"cpu": 1.0, "gpu": 0.0}, "latency_cap": True,
               "task": None, "tracking_uri": "sqlite:////x/mlflow.db"}  # fmt: skip
    config = TrainConfig.model_validate({"configuration": "3d_fullres", "epochs": 40}).model_dump(mode="json")
    source = dataset_source(load_dataset(ds))
    (wd / "train_config.json").write_text(
        json.dumps({"dataset": source, "config": config, "options": options})
    )
    same_cfg, other_cfg = tmp_path / "same.yaml", tmp_path / "other.yaml"
    same_cfg.write_text("epochs: 40\n")
    other_cfg.write_text("epochs: 80\n")
    refuse_ignored_on_resume(wd, {"--budget": None, "--folds": None})  # nothing asked: fine
    # options whose typed value looks like a default: compared too (the CLI passes None when they are not typed)
    refuse_ignored_on_resume(wd, {"--register": True, "--parallel-folds": 1, "--task": "auto"})
    with pytest.raises(ConfigError) as e:
        refuse_ignored_on_resume(wd, {"--register": False, "--parallel-folds": 1, "--task": "regression"})
    assert len(e.value.problems) == 2
    refuse_ignored_on_resume(  # the saved values typed again
        wd,
        {"DATASET": ds, "--folds": "auto", "--preset": "cpu", "--epochs": 40, "--configuration": "3d_fullres",
         "--config": same_cfg, "--tracking-uri": "sqlite:////x/mlflow.db"},
    )  # fmt: skip
    with pytest.raises(ConfigError) as e:
        refuse_ignored_on_resume(
            wd,
            {"DATASET": other, "--folds": "3", "--fold": [0, 1], "--epochs": 10, "--config": other_cfg,
             "--parallel-folds": 2, "--full-ensemble": True, "--task": "regression", "--preset": "default"},
        )  # fmt: skip
    text = str(e.value)
    assert len(e.value.problems) == 9 and "train_config.json" in text
    assert (
        "10 asked, 40 saved" in text and "'regression' asked, 'segmentation' saved" in text
    )  # what was saved
    # a training saved without --task took its data's task: typing that task is no change
    refuse_ignored_on_resume(wd, {"--task": "segmentation"})
    for name in ("DATASET", "folds", "fold ", "epochs", "config ", "parallel-folds", "full-ensemble", "task"):
        assert f"keeps its own {name}" in text
    assert "only --budget, --device, --workers, --ray-address and --trial-resources apply" in text
    assert "new --output" in text
    # a config file typed again with the -c/--epochs it was given with; the store a run without one logged to
    other_cfg.write_text("epochs: 10\n")
    refuse_ignored_on_resume(wd, {"--config": other_cfg, "--epochs": 40})
    options.update(tracking_uri=None, folds_auto=False, budget_s=600.0)  # --budget 10m --folds auto --fold 0
    (wd / "train_config.json").write_text(
        json.dumps({"dataset": source, "config": config, "options": options})
    )
    (wd / "tracking.json").write_text(json.dumps({"uri": "sqlite:////y/mlflow.db"}))
    refuse_ignored_on_resume(
        wd, {"--tracking-uri": "sqlite:////y/mlflow.db", "--folds": "auto", "--fold": [0]}
    )
    with pytest.raises(ConfigError, match="keeps its own tracking-uri"):
        refuse_ignored_on_resume(wd, {"--tracking-uri": "sqlite:////z/mlflow.db"})
    # what a resume takes: a cluster's resources (none typed: the saved ones; typed, even as the default's values:
    # those) and the store's credentials
    from automed.workflow.train_options import TrainOptions
    from automed.workflow.train_start import restore_training

    options["fold_resources"] = {"cpu": 4.0, "gpu": 0.0}
    (wd / "train_config.json").write_text(
        json.dumps({"dataset": source, "config": config, "options": options})
    )
    assert restore_training(wd, TrainOptions())[2].fold_resources == {"cpu": 4.0, "gpu": 0.0}
    typed_default = TrainOptions(fold_resources={"cpu": 1.0, "gpu": 0.0})  # --trial-resources cpu=1,gpu=0
    assert restore_training(wd, typed_default)[2].resources() == {"cpu": 1.0, "gpu": 0.0}
    asked = TrainOptions(fold_resources={"cpu": 2.0, "gpu": 1.0}, tracking_uri="sqlite:////y/mlflow.db")
    restored = restore_training(wd, asked)[2]
    assert (
        restored.fold_resources == {"cpu": 2.0, "gpu": 1.0}
        and restored.tracking_uri == "sqlite:////y/mlflow.db"
    )


def test_a_copied_work_dir_does_not_resume_into_the_originals_runs(tmp_path: Path) -> None:
    import shutil

    from automed.errors import ArtifactError
    from automed.workflow.resume_checks import refuse_a_copy
    from automed.workflow.train_options import TrackingState

    (tmp_path / "W").mkdir()
    TrackingState(tmp_path / "W" / "tracking.json", "sqlite:///m.db", "e", "run1").save()
    saved = json.loads((tmp_path / "W" / "tracking.json").read_text())
    assert saved["workdir"] == str((tmp_path / "W").resolve())
    refuse_a_copy(tmp_path / "W", saved)  # itself: fine
    shutil.copytree(tmp_path / "W", tmp_path / "C")
    with pytest.raises(ArtifactError, match=r"a copy of .*W, whose runs it shares"):
        refuse_a_copy(tmp_path / "C", saved)
    shutil.rmtree(tmp_path / "W")  # moved, not copied: the runs are its own
    refuse_a_copy(tmp_path / "C", saved)


def test_only_a_missing_run_counts_as_gone_when_the_same_training_runs_again(tmp_path: Path) -> None:
    """A deleted or unknown parent run is gone (a new one is opened); a store failing for a moment is raised, not
    taken as a reason for a second parent run."""
    from types import SimpleNamespace

    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from automed.workflow.train import _live_run

    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    run = client.create_run(client.create_experiment("e")).info.run_id
    tracker = SimpleNamespace(client=client)
    assert _live_run(tracker, run)  # type: ignore[arg-type]
    client.delete_run(run)
    assert not _live_run(tracker, run)  # type: ignore[arg-type]
    assert not _live_run(tracker, "0123456789abcdef0123456789abcdef")  # type: ignore[arg-type]

    class Down:
        def get_run(self, run_id: str) -> None:
            raise MlflowException("database is locked", error_code="INTERNAL_ERROR")

    with pytest.raises(MlflowException, match="locked"):
        _live_run(SimpleNamespace(client=Down()), run)  # type: ignore[arg-type]


def test_a_screened_only_trial_given_as_a_model_gets_a_fix_that_works(tmp_path: Path) -> None:
    """It said "run `automed train DATASET -o TRIAL` first", which is then refused (the trial's checkpoints)."""
    from automed.errors import ArtifactError
    from automed.workdir import WorkDir

    trial = tmp_path / "S" / "trials" / "t0001"
    trial.mkdir(parents=True)
    (trial / "trial.json").write_text("{}")
    with pytest.raises(ArtifactError) as e:
        WorkDir(trial).require_model()
    assert "did not reach full CV" in str(e.value) and f"-o {trial}" not in str(e.value)


def test_an_unfinished_training_given_as_a_model_gets_the_resume_fix(tmp_path: Path) -> None:
    """predict, select and export said "run `automed train DATASET -o W` first", which is then refused in favour of
    --resume."""
    from automed.errors import ArtifactError
    from automed.workdir import WorkDir

    (tmp_path / "train_config.json").write_text("{}")
    with pytest.raises(ArtifactError) as e:
        WorkDir(tmp_path).require_model()
    assert "the training did not finish" in str(e.value) and f"automed train --resume {tmp_path}" in str(
        e.value
    )


def test_a_resumed_fold_logs_the_epochs_its_mlflow_run_missed(tmp_path: Path) -> None:
    """A kill between the checkpoint and the MLflow call lost that epoch from the run for good."""
    from dataclasses import asdict

    from mlflow.tracking import MlflowClient

    from automed.tasks.segmentation import Segmentation
    from automed.tracking import Tracker
    from automed.train.state import EpochLog
    from automed.workflow.fold import MlflowEpochs, catch_up

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    tracker = Tracker(uri, "e")
    run = tracker.start_run("fold0")
    epochs = MlflowEpochs(tracker, run, Segmentation(), ["a"])
    logs = [EpochLog(e, 1.0 / e, 1.0, [0.5], 0.5, 0.4, 0.01, 1.0, 0.0, 10 * e) for e in (1, 2, 3)]
    for log in (logs[0], logs[2]):  # epoch 2 was checkpointed, then the process was killed before MLflow
        epochs.on_epoch_end(0, log)
    (tmp_path / "progress.json").write_text(json.dumps({"history": [asdict(x) for x in logs]}))
    catch_up(epochs, tmp_path)
    steps = sorted(m.step for m in MlflowClient(uri).get_metric_history(run, "train_loss"))
    assert steps == [1, 2, 3]  # the gap filled, nothing logged twice
    # the checkpoint is what a resume continues from (progress.json is written after it): its epochs count
    from automed.train.state import save_checkpoint

    logs.append(EpochLog(4, 0.2, 1.0, [0.5], 0.5, 0.4, 0.01, 1.0, 0.0, 40))
    save_checkpoint(tmp_path / "checkpoint_latest.pt", {"state": {"history": [asdict(x) for x in logs]}})
    catch_up(epochs, tmp_path)
    assert sorted(m.step for m in MlflowClient(uri).get_metric_history(run, "train_loss")) == [1, 2, 3, 4]
    # a fold that finished while its tracking server was down (epochs 5-6 never logged), then resumed: its whole
    # progress.json counts (its latest checkpoint may be older than its end); run_fold now catches up before
    # it skips the finished training
    logs += [EpochLog(e, 0.1, 1.0, [0.5], 0.5, 0.4, 0.01, 1.0, 0.0, 10 * e) for e in (5, 6)]
    (tmp_path / "progress.json").write_text(
        json.dumps({"history": [asdict(x) for x in logs], "finished": True})
    )
    save_checkpoint(tmp_path / "checkpoint_final.pt", {"state": {"history": [asdict(x) for x in logs]}})
    catch_up(epochs, tmp_path)
    assert sorted(m.step for m in MlflowClient(uri).get_metric_history(run, "train_loss")) == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]
