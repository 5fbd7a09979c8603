"""``--folds auto`` (the default with ``--budget``): a timed probe and the preset's ``budget:`` rule decide how many
folds of a five-fold split the budget trains well; the reason is recorded and shown."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from automed import api
from automed.errors import ConfigError
from automed.select.inference_cost import single_model_seconds
from automed.testing.synthetic import make_dataset
from automed.train.schedule import choose_fold_count, choose_screening, choose_width
from automed.workdir import ALL_DATA
from automed.workflow.shape import fold_count


def test_rule_picks_one_fold_for_a_small_budget_and_five_for_a_large_one() -> None:
    small = choose_fold_count(26 * 60, 0.9, 5, 1500, [1, 5])  # the 26 minutes at 0.9 s per iteration
    assert small.folds == 1 and small.iterations_per_model == int(26 * 60 * 0.75 / 0.9)
    assert "folds auto: 1 of 5" in small.reason and "at least 1500" in small.reason
    large = choose_fold_count(8 * 3600, 0.9, 5, 1500, [1, 5])
    assert large.folds == 5 and large.iterations_per_model >= 1500
    middle = choose_fold_count(3 * 3600, 0.9, 5, 1500, [1, 2, 3, 5])
    assert middle.folds == 5
    assert choose_fold_count(2 * 3600, 0.9, 5, 1500, [1, 2, 3, 5]).folds == 3
    tiny = choose_fold_count(30, 0.9, 5, 1500, [1, 5])
    assert tiny.folds == 1 and "one model gets them all" in tiny.reason
    # what a budget that buys almost nothing would need: 1500 iterations at 0.9 s, a 0.75 share training
    assert "1500 take about 30m of training here" in tiny.reason and "about 30m" in small.reason
    assert "take about" not in large.reason
    assert (
        choose_fold_count(8 * 3600, 0.9, 3, 1500, [1, 5]).folds == 1
    )  # a count beyond the split is not allowed


def test_width_rule_narrows_the_network_only_when_one_model_would_be_short_of_iterations() -> None:
    # the hippocampus volume regression at 15 minutes: 1.6 s per step at 32 base features, 0.43 s at 16
    narrow = choose_width(15 * 60, {32: 1.6, 16: 0.43}, 1, 1500)
    assert narrow.base_features == 16 and narrow.iterations_per_model == int(15 * 60 * 0.75 / 0.43)
    assert "width auto: 16 base features instead of the plan's 32" in narrow.reason
    assert "32: 421" in narrow.reason and "widest that gets them" in narrow.reason
    # both fit: the wider one stays; none fits: the one that trains the most iterations
    assert choose_width(3600, {32: 1.6, 16: 0.43}, 1, 1500).base_features == 32
    short = choose_width(60, {32: 1.6, 16: 0.9, 8: 0.5}, 1, 1500)
    assert short.base_features == 8 and short.reason.endswith(
        "one that gets the most iterations (no width gets them)"
    )
    assert choose_width(15 * 60, {32: 1.6, 16: 0.43}, 2, 1500).iterations_per_model == int(675 / 0.43) // 2


def test_folds_option_parsing() -> None:
    assert fold_count(None, 600.0, None) == (5, True, None)
    assert fold_count(None, None, None) == (5, False, None)
    assert fold_count("auto", 600.0, None) == (5, True, None)
    assert fold_count(None, 600.0, [0, 1]) == (5, False, [0, 1])  # explicit --fold wins
    assert fold_count(3, 600.0, None) == (3, False, None) and fold_count("5", None, None) == (5, False, None)
    assert fold_count("all", 600.0, None) == (5, False, [ALL_DATA])
    with pytest.raises(ConfigError, match="decides from the budget"):
        fold_count("auto", None, None)
    with pytest.raises(ConfigError, match="a number of folds, auto or all"):
        fold_count("many", 60.0, None)
    with pytest.raises(ConfigError, match="one model on every case"):
        fold_count("all", None, [0])


@pytest.mark.slow
# one fold for a tiny budget: tests/test_cli.py's demo (75 s, the default rule) checks it end to end. Five folds
# of at least one iteration each: the 60 s budget affords that even on a loaded machine (5 iterations each failed
# when other tests ran beside it: the probe timed steps slow enough that five folds no longer fit)
@pytest.mark.parametrize(("min_iterations", "expected"), [(1, 5)])
def test_budgeted_training_trains_the_folds_the_rule_picks(
    tmp_path: Path, min_iterations: int, expected: int
) -> None:
    ds = make_dataset(tmp_path / "data", n_cases=5, shape=(12, 24, 24), seed=2)
    preset = tmp_path / "preset.yaml"  # the cpu preset with its budget rule changed (extends)
    preset.write_text(
        yaml.safe_dump(
            {"extends": "cpu", "name": "rule", "budget": {"min_iterations_per_model": min_iterations}},
            sort_keys=False,
        )
    )
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("epochs: 1000\nval_iterations: 1\nnum_workers: 0\n")
    res = api.train(
        ds, tmp_path / "W", config=cfg, budget="60s", preset=str(preset),
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", workers=0, show_progress=False, register=False,
    )  # fmt: skip
    assert sorted(res.fold_epochs) == list(range(expected)) and res.model.folds == list(range(expected))
    assert res.folds_reason.startswith(f"folds auto: {expected} of 5")
    saved = json.loads((res.workdir / "train_config.json").read_text())["options"]
    assert saved["only_folds"] == list(range(expected)) and saved["folds_reason"] == res.folds_reason
    assert json.loads((res.workdir / "splits.json").read_text())["n_folds"] == 5
    for k in range(
        expected
    ):  # each fold records the wall time it was given (a resume's share for unstarted folds)
        given = json.loads((res.workdir / "train" / "3d_fullres" / f"fold_{k}" / "progress.json").read_text())
        assert 0 < given["budget_s"] <= 60
    # five folds predict within one network's time with nnU-Net's default inference, measured on fold 0's cases
    table, choice = (
        json.loads((res.workdir / "selection" / "inference_cost.json").read_text())[k]
        for k in ("table", "choice")
    )
    assert choice["expected_seconds_per_case"] <= single_model_seconds(table) + 1e-9
    assert "nnU-Net's single-fold default" in choice["reason"]
    inf = res.model.inference
    assert inf.folds == list(range(choice["folds"])) and (inf.tta, inf.step) == (
        choice["tta"],
        choice["step"],
    )
    # the preset's even mirror set is what the candidates use; nnU-Net's all-eight is timed only as the cap
    assert inf.mirrors == choice["mirrors"] == "even" or not inf.tta
    (ref,) = [r for r in table["settings"] if not r["candidate"]]
    assert ref["mirrors"] == "all" and ref["step"] == 0.5
    assert {r["mirrors"] for r in table["settings"] if r["candidate"]} == {"even", "none"}


def test_screening_rule_needs_enough_iterations_for_every_model() -> None:
    steps = {"2d": 0.3, "3d_fullres": 0.9}
    tiny = choose_screening(26 * 60, steps, 5, 1500, [1, 5])  # 1,040 iterations of 3d_fullres each: too few
    assert (
        tiny.configurations == [] and "no screening" in tiny.reason and "3d_fullres about 650" in tiny.reason
    )
    assert (
        tiny.steps == steps
    )  # the fold rule then reuses 3d_fullres's measured step instead of timing it again
    middle = choose_screening(2 * 3600, steps, 5, 1500, [1, 5])  # two models fit, six do not
    assert middle.configurations == ["2d", "3d_fullres"] and middle.folds == 1
    assert middle.share_s == pytest.approx(3600) and "screening 2 on fold 0" in middle.reason
    large = choose_screening(12 * 3600, steps, 5, 1500, [1, 5])  # 2 + 4 models of 2 h each
    assert large.folds == 5 and large.share_s == pytest.approx(2 * 3600)
    assert choose_screening(8 * 3600, {"3d_fullres": 0.9}, 5, 1500, [1, 5]).configurations == []


@pytest.mark.slow
def test_folds_the_user_fixes_still_get_a_width_the_budget_can_train(tmp_path: Path) -> None:
    """``--folds 2 --budget``: the folds are the user's, the width is still the budget's (preset rule); a width in
    the config is kept. The training that follows trains ``config`` as the auto path's does (the demo test)."""
    from automed.train.config import TrainConfig
    from automed.workflow.train_options import TrainOptions
    from automed.workflow.train_start import start_training

    ds = make_dataset(tmp_path / "data", n_cases=5, shape=(12, 24, 24), seed=2)
    preset = tmp_path / "preset.yaml"  # no model can get this many iterations: the narrowest width is chosen
    preset.write_text(
        yaml.safe_dump({"extends": "cpu", "name": "w", "budget": {"min_iterations_per_model": 10**7}})
    )
    opts = TrainOptions(folds=2, budget_s=60.0, preset=str(preset), workers=0, auto_configuration=True)
    for given, width in ((None, 16), (32, 32)):
        wd = tmp_path / f"W{given}"
        config = TrainConfig(num_workers=0, base_features=given)
        _, chosen, out = start_training(ds, wd, config, opts, False, time.perf_counter() + 60)
        assert chosen.base_features == width and out.only_folds is None  # the user's folds stay as asked
        saved = json.loads((wd / "train_config.json").read_text())
        assert (
            saved["config"]["base_features"] == width and saved["options"]["folds_reason"] == out.folds_reason
        )
        net = json.loads((wd / "plan.json").read_text())["configurations"]["3d_fullres"]["network"]
        assert net["features_per_stage"][0] == 32  # the plan stays as planned; the training config narrows it
        if given is None:
            assert out.folds_reason.startswith("folds as asked: 2 model(s) of about ")
            assert "width auto: 16 base features instead of the plan's 32" in out.folds_reason
        else:
            assert out.folds_reason == ""


@pytest.mark.slow
def test_budget_screens_configurations_and_promotes_the_best(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    ds = make_dataset(tmp_path / "data", n_cases=5, shape=(12, 24, 24), seed=2)
    preset = tmp_path / "preset.yaml"  # cpu, with 2d planned too and a rule a 60 s budget satisfies
    rules = {"min_iterations_per_model": 5, "fold_counts": [1, 2]}
    preset.write_text(
        yaml.safe_dump(
            {"extends": "cpu", "name": "screen", "configurations": ["2d", "3d_fullres"], "budget": rules}
        )
    )
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("epochs: 1000\nval_iterations: 1\nnum_workers: 0\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = api.train(
        ds, tmp_path / "W", config=cfg, budget="60s", preset=str(preset), tracking_uri=uri, workers=0,
        show_progress=False, register=False, overlays=1,
    )  # fmt: skip
    wd = res.workdir
    screen = json.loads((wd / "screen.json").read_text())
    assert set(screen["scores"]) == {"2d", "3d_fullres"} and screen["winner"] in screen["scores"]
    winner = screen["winner"]
    assert winner == max(screen["scores"], key=lambda n: screen["scores"][n])
    assert res.folds_reason.startswith("configurations auto: screening 2 on fold 0")
    assert f"{winner} is kept" in res.folds_reason
    assert res.model.configuration == winner and res.model.folds == [0, 1]  # promoted: its fold 1 trained too
    for name in ("2d", "3d_fullres"):
        assert (wd / "train" / name / "fold_0" / "validation_metrics.json").is_file()
        # each screened fold trains for the share the reason states (the end-of-run reserve was taken twice)
        given = json.loads((wd / "train" / name / "fold_0" / "progress.json").read_text())["budget_s"]
        assert given == pytest.approx(screen["share_s"], abs=2.0), (given, screen["share_s"])
    assert not (wd / "train" / ({"2d", "3d_fullres"} - {winner}).pop() / "fold_1").exists()
    saved = json.loads((wd / "train_config.json").read_text())
    assert saved["config"]["configuration"] == winner  # --resume continues with the winner
    assert saved["schema_version"] == 1
    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(json.loads((wd / "tracking.json").read_text())["parent_run_id"])
    assert parent.data.tags["screen.winner"] == winner
    assert parent.data.metrics["screen_2d"] == pytest.approx(screen["scores"]["2d"])
    assert parent.data.params["config.configuration"] == winner  # logged once the screening chose
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    names = sorted(r.data.tags["mlflow.runName"] for r in children)
    assert names == sorted(["2d-fold0", "3d_fullres-fold0", f"{winner}-fold1"])  # fold 0 not trained twice
    promoted = [r for r in children if r.data.tags.get("screen.promoted") == "true"]
    assert [r.data.tags["configuration"] for r in promoted] == [winner]
    for (
        run
    ) in children:  # --overlays reaches the screened folds too (their jobs were built apart and lacked it)
        assert "overlays" in {a.path for a in client.list_artifacts(run.info.run_id)}, run.data.tags

    # the same command typed again: the recorded decisions stand (no second probe, no second screening) and the
    # recorded reason is not rewritten; the finished folds are reused
    import automed.workflow.train_start as start

    def no_probe(*a: object, **k: object) -> None:
        raise AssertionError("the budget was probed again")

    monkeypatch.setattr(start, "plan_screening", no_probe)
    monkeypatch.setattr(start, "auto_folds", no_probe)
    before = json.loads((wd / "train_config.json").read_text())
    again = api.train(
        ds, tmp_path / "W", config=cfg, budget="60s", preset=str(preset), tracking_uri=uri, workers=0,
        show_progress=False, register=False, overlays=1,
    )  # fmt: skip
    assert again.folds_reason == res.folds_reason and again.model.folds == [0, 1]
    assert json.loads((wd / "train_config.json").read_text()) == before
    # another budget is another command: the budget decides anew
    with pytest.raises(AssertionError, match="probed again"):
        api.train(
            ds, tmp_path / "W", config=cfg, budget="90s", preset=str(preset), tracking_uri=uri, workers=0,
            show_progress=False, register=False,
        )  # fmt: skip


def test_full_ensemble_and_explicit_folds_turn_the_prediction_time_cap_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import automed.workflow.train as train_module

    seen = []
    monkeypatch.setattr(
        train_module, "train_dataset", lambda ds, wd, cfg, opts, **kw: seen.append(opts.latency_cap)
    )
    api.train("D", "W", budget="1h")  # --folds auto: what the budget produces predicts in bounded time
    api.train("D", "W", budget="1h", full_ensemble=True)
    api.train("D", "W", budget="1h", folds=5)  # the user asked for five folds
    assert seen == [True, False, False]


def test_a_finished_fold_is_reused_only_when_validated_the_way_asked(tmp_path: Path) -> None:
    from automed.workflow.fold import VALIDATED_WITH, validated_rows

    fold = tmp_path / "fold_0"
    fold.mkdir()
    rows = [{"case": "c1", "fold": 0, "dice_mean": 0.8}]
    (fold / "validation_metrics.json").write_text(json.dumps(rows))
    assert validated_rows(fold, True, "even") is None  # training not finished
    (fold / "checkpoint_final.pt").write_bytes(b"")
    (fold / "progress.json").write_text(json.dumps({"finished": True, "history": []}))
    # validated before the file existed: nnU-Net's all mirrors; a training asking for the even half validates again
    assert validated_rows(fold, True, "even") is None
    assert validated_rows(fold, True, "all") == rows
    assert validated_rows(fold, False, "even") is None
    (fold / VALIDATED_WITH).write_text(json.dumps({"tta": True, "mirrors": "even"}))
    assert validated_rows(fold, True, "even") == rows
    assert validated_rows(fold, True, "all") is None and validated_rows(fold, False, "even") is None
    (fold / VALIDATED_WITH).write_text(json.dumps({"tta": False, "mirrors": "even"}))
    assert validated_rows(fold, False, "all") == rows  # no TTA: the mirror set does not matter


def test_cost_table_rows_say_which_mirrors() -> None:
    assert api.mirror_label({"tta": True, "mirrors": "even", "candidate": True}) == "even"
    assert (
        api.mirror_label({"tta": False, "step": 0.5}) == "none"
    )  # a table written before the mirror set existed
    assert (
        api.mirror_label({"tta": True, "mirrors": "all", "candidate": False})
        == "all (reference, not a candidate)"
    )


@pytest.mark.slow  # trains (6 s): make test-fast stays under 3 minutes
def test_finished_folds_are_reused_only_with_their_final_config_and_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The budget's width rule decides after the work dir's finished folds are first checked: a rerun of the same
    budgeted command may reuse folds of the narrowed width; folds of another width (or another split) are refused
    before they could be mixed into the new model, and the refused run leaves the work dir as it was."""
    from types import SimpleNamespace

    from automed.errors import ArtifactError
    from automed.plan.schema import Plan
    from automed.train.config import TrainConfig
    from automed.train.state import save_checkpoint
    from automed.workflow import train_start
    from automed.workflow.train_options import TrainOptions
    from automed.workflow.train_start import start_training

    ds = make_dataset(tmp_path / "data", n_cases=5, shape=(12, 24, 24), seed=2)
    preset = tmp_path / "preset.yaml"  # no model can get this many iterations: the narrowest width is chosen
    preset.write_text(
        yaml.safe_dump({"extends": "cpu", "name": "w", "budget": {"min_iterations_per_model": 10**7}})
    )
    opts = TrainOptions(folds=2, budget_s=60.0, preset=str(preset), workers=0, auto_configuration=True)
    wd = tmp_path / "W"
    # the width rule's choice as data (on these tiny images 16 and 32 features time alike: a timed probe could pick
    # either on a busy machine)
    narrowed = SimpleNamespace(base_features=16, reason="width auto: 16 base features")
    monkeypatch.setattr(train_start, "auto_width", lambda *a, **k: narrowed)

    def start() -> TrainConfig:
        return start_training(ds, wd, TrainConfig(num_workers=0), opts, False, time.perf_counter() + 60)[1]

    def finished_fold(config: TrainConfig) -> None:
        folder = wd / "train" / "3d_fullres" / "fold_0"
        folder.mkdir(parents=True, exist_ok=True)
        plan = Plan.load(wd / "plan.json")
        save_checkpoint(
            folder / "checkpoint_final.pt", {"config_digest": config.digest(), "plan_hash": plan.hash}
        )
        (folder / "progress.json").write_text(json.dumps({"finished": True, "history": []}))

    narrow = start()
    assert narrow.base_features == 16
    finished_fold(narrow)
    assert start() == narrow  # the same command again: its narrowed fold passes both checks
    finished_fold(narrow.model_copy(update={"base_features": None}))  # a fold of the plan's width (32)
    before = {f: (wd / f).read_bytes() for f in ("plan.json", "splits.json", "train_config.json")}
    with pytest.raises(ArtifactError, match="a work dir holds the training of one plan and config"):
        start()
    assert {f: (wd / f).read_bytes() for f in before} == before
    finished_fold(narrow)
    opts = TrainOptions(folds=3, budget_s=60.0, preset=str(preset), workers=0, auto_configuration=True)
    with pytest.raises(ArtifactError) as e:  # --folds 3 over folds trained on a 2-fold split
        start()
    assert "keep its splits.json" in str(e.value) and "2 folds trained, 3 asked" in str(e.value)
    assert {f: (wd / f).read_bytes() for f in before} == before


def test_a_resume_needs_the_cases_it_was_split_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from automed.errors import ArtifactError
    from automed.train.config import TrainConfig
    from automed.workflow.train_options import TrainOptions
    from automed.workflow.train_start import restore_training, start_training

    ds = make_dataset(tmp_path / "data", n_cases=4, shape=(12, 24, 24), seed=2)
    wd = tmp_path / "W"
    opts = TrainOptions(folds=2, workers=0)
    start_training(ds, wd, TrainConfig(num_workers=0), opts, False, None)
    assert restore_training(wd, opts)[0].source == ds / "dataset.json"
    first = sorted((ds / "imagesTr").iterdir())[0]
    os.utime(
        first, (1, 1)
    )  # a file touched, its content the same: the resume goes on (its fingerprint is the same)
    with caplog.at_level(logging.WARNING, logger="automed.workflow.resume_data"):
        restore_training(wd, opts)
    assert "changed since this training began" not in caplog.text
    meta = json.loads((ds / "dataset.json").read_text())
    gone = meta["training"].pop(0)
    meta["numTraining"] -= 1
    (ds / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError) as e:  # a case of the split is gone: refused before any training
        restore_training(wd, opts)
    case = Path(gone["image"]).name.removesuffix(".nii.gz")
    assert "needs the cases it was split on" in str(e.value) and case in str(e.value)


def test_a_moved_dataset_is_resumed_from_its_new_place(tmp_path: Path) -> None:
    """A dataset moved after the training began: the resume names the missing place and how to give the new one; the
    new place (with the cases of the split) is taken and recorded; while the saved one exists, another is refused."""
    from automed.errors import ArtifactError, ConfigError
    from automed.train.config import TrainConfig
    from automed.workflow.resume_checks import refuse_ignored_on_resume
    from automed.workflow.train_options import TrainOptions
    from automed.workflow.train_start import restore_training, start_training

    ds = make_dataset(tmp_path / "data", n_cases=4, shape=(12, 24, 24), seed=2)
    wd = tmp_path / "W"
    opts = TrainOptions(folds=2, workers=0)
    start_training(ds, wd, TrainConfig(num_workers=0), opts, False, None)
    import shutil

    other = tmp_path / "copy"
    shutil.copytree(ds, other)
    with pytest.raises(ConfigError, match="keeps its own DATASET"):  # the saved dataset is still there
        refuse_ignored_on_resume(wd, {"DATASET": other})
    shutil.rmtree(ds)
    with pytest.raises(ArtifactError) as e:
        restore_training(wd, opts)
    assert "moved or deleted" in str(e.value) and "automed train NEW_PLACE --resume" in str(e.value)
    refuse_ignored_on_resume(wd, {"DATASET": other})  # accepted: the saved place is gone
    assert restore_training(wd, opts, other)[0].source == other / "dataset.json"
    assert json.loads((wd / "train_config.json").read_text())["dataset"] == str(other)
    assert restore_training(wd, opts)[0].source == other / "dataset.json"  # recorded: no need to repeat it
    meta = json.loads((other / "dataset.json").read_text())
    meta["training"].pop(0)
    meta["numTraining"] -= 1
    (other / "dataset.json").write_text(json.dumps(meta))
    (tmp_path / "third").mkdir()
    shutil.move(other, tmp_path / "third" / "d")
    with pytest.raises(ArtifactError, match="needs the cases it was split on"):  # other cases: refused
        restore_training(wd, opts, tmp_path / "third" / "d")


def test_more_folds_than_cases_is_said_and_a_fold_beyond_them_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """--folds 7 on 5 cases trained 5 folds saying nothing (train_config kept 7); with --fold 6 it crashed with an
    IndexError after planning, and every resume crashed again."""
    import logging

    from automed.errors import ConfigError
    from automed.train.config import TrainConfig
    from automed.workflow.train_options import TrainOptions
    from automed.workflow.train_start import start_training

    ds = make_dataset(tmp_path / "data", n_cases=5, shape=(12, 24, 24), seed=2)
    with pytest.raises(ConfigError, match=r"folds 0 to 4") as e:
        start_training(ds, tmp_path / "W1", TrainConfig(num_workers=0), TrainOptions(folds=7, only_folds=[6], workers=0), False, None)  # fmt: skip
    assert "--folds 5 or fewer" in str(e.value) and not (tmp_path / "W1").exists()
    with caplog.at_level(logging.WARNING, logger="automed"):
        _, _, opts = start_training(ds, tmp_path / "W2", TrainConfig(num_workers=0), TrainOptions(folds=7, workers=0), False, None)  # fmt: skip
    assert "7 folds asked, but the dataset has 5 subject group(s): 5 folds" in caplog.text and opts.folds == 5
    # a README audit: patches of 3 slides trained with --budget said "5 folds asked" where nobody asked for any
    from automed.data.dataset import load_dataset
    from automed.workflow.train_start import _fit_folds

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="automed"):
        assert _fit_folds(load_dataset(ds), TrainOptions(folds=5, folds_auto=True)).folds == 5
        three = load_dataset(make_dataset(tmp_path / "three", n_cases=3, shape=(8, 8, 8)))
        assert _fit_folds(three, TrainOptions(folds=5, folds_auto=True)).folds == 3
    assert "--folds auto splits the cases 5 ways, but the dataset has 3 subject group(s)" in caplog.text
    assert "asked" not in caplog.text
    saved = json.loads((tmp_path / "W2" / "train_config.json").read_text())["options"]
    assert saved["folds"] == 5 and json.loads((tmp_path / "W2" / "splits.json").read_text())["n_folds"] == 5
    from automed.workflow.resume_checks import refuse_ignored_on_resume

    refuse_ignored_on_resume(tmp_path / "W2", {"--folds": "7"})  # the command as it was typed, resumed
    refuse_ignored_on_resume(tmp_path / "W2", {"--folds": "5"})


def test_a_screening_killed_after_its_record_completes_mlflow_on_resume(tmp_path: Path) -> None:
    """Killed after screen.json was written and before its MLflow record: the resume reused the winner but the parent
    run named no config or plan, no screening run was promoted and tracking.json had no fold-0 run (review)."""
    from typing import Any

    from automed.train.config import TrainConfig
    from automed.workflow.screen import run_screening
    from automed.workflow.train_options import TrackingState

    ds = make_dataset(tmp_path / "data", n_cases=4, shape=(12, 24, 24), seed=2)
    plan = api.plan_dataset(ds, tmp_path / "W", run_preprocess=False, show_progress=False).plan
    wd = tmp_path / "W"
    (wd / "screen.json").write_text(json.dumps({"schema_version": 1, "winner": "3d_fullres", "summary": "kept",
                                                "scores": {"3d_fullres": 0.5}}))  # fmt: skip
    logged: list[tuple[str, str, Any]] = []

    class Tracker:
        def __getattr__(self, name: str) -> Any:
            return lambda run, what: logged.append((name, run, what))

    track = TrackingState(wd / "tracking.json", "sqlite:///x.db", "e", "P", {"screen/3d_fullres": "R0"})
    chosen, summary = run_screening(wd, plan, TrainConfig(), None, None, Tracker(), track, "off")  # type: ignore[arg-type]
    assert chosen.configuration == "3d_fullres" and summary == "kept"
    assert ("set_tags", "R0", {"screen.promoted": "true"}) in logged
    params = next(what for name, run, what in logged if name == "log_params" and run == "P")
    assert params["config"]["configuration"] == "3d_fullres"
    assert json.loads((wd / "tracking.json").read_text())["fold_runs"]["0"] == "R0"
    logged.clear()
    run_screening(wd, plan, TrainConfig(), None, None, Tracker(), track, "off")  # type: ignore[arg-type]
    assert logged == []  # recorded once
