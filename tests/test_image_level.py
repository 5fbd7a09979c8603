"""Classification and regression end to end (tiny synthetic 2D and 3D data, CPU): plan, train, register, predict a
CSV through the API, the CLI and the registered pyfunc; the folder-per-class layout; the planner's image-level rules."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from automed import api
from automed.cli import app
from automed.plan.schema import Plan
from automed.testing.synthetic_image_level import make_classification, make_regression


def _config(path: Path, epochs: int = 3, iterations: int = 20) -> Path:
    path.write_text(
        f"epochs: {epochs}\niterations_per_epoch: {iterations}\nval_iterations: 2\nnum_workers: 0\n"
    )
    return path


@pytest.mark.slow  # plans four datasets (6 s): make test-fast stays under 3 minutes
def test_plan_for_classification_and_regression(tmp_path: Path) -> None:
    csv = make_classification(tmp_path / "c", 12, shape=(40, 24), n_classes=3)
    plan = api.plan_dataset(csv, tmp_path / "Wc", run_preprocess=False, show_progress=False).plan
    assert plan.task_type == "classification" and list(plan.configurations) == ["2d"]
    cfg = plan.configurations["2d"]
    assert cfg.network.n_classes == 3 and cfg.foreground_oversample == 0.0
    assert all(p >= m for p, m in zip(cfg.patch_size, cfg.median_shape, strict=True))  # the whole image
    assert cfg.batch_size == 6  # half the cases (memory and the preset cap allow more)
    t = plan.target
    assert t is not None and t.kind == "classification" and t.loss == "cross_entropy"
    assert (
        t.class_names == ["one", "three", "two"] and t.class_counts == [4, 4, 4] and t.class_weights is None
    )
    reg = api.plan_dataset(
        make_regression(tmp_path / "r", 10), tmp_path / "Wr", run_preprocess=False, show_progress=False
    ).plan
    assert reg.task_type == "regression" and list(reg.configurations) == ["3d_fullres"]
    assert reg.configurations["3d_fullres"].network.n_classes == 1
    assert reg.target is not None and reg.target.loss == "huber" and reg.target.std > 0
    # a regression target may be a size: training never rescales its images (classification keeps the default)
    from automed.tasks.registry import task_for
    from automed.train.config import TrainConfig

    assert not reg.target.scale_augmentation and "size" in reg.target.reasons["scale_augmentation"]
    cfg0 = TrainConfig()
    kept = task_for("regression", "r").augmentation(reg, cfg0)
    assert kept.scale_p == 0.0 and kept.scale_range == (1.0, 1.0)
    from automed.train.augment import build_augmentation

    spatial = [
        t
        for t in build_augmentation(kept, [1.0, 1.0, 1.0], False, False)
        if "RotateScale" in type(t).__name__
    ]
    assert spatial and all(a.scale_p == 0.0 and a.rotation_p > 0 for a in spatial)  # rotations only
    assert task_for("classification", "c").augmentation(plan, cfg0) == cfg0.augmentation
    assert cfg0.augmentation.scale_p > 0
    # instance norm + average pooling erases "how much" (a volume): a regression encoder normalizes per batch
    from torch import nn

    from automed.train.classifier import image_network

    assert reg.target.norm == "batch" and "how much" in reg.target.reasons["norm"]
    assert plan.target is not None and plan.target.norm == "instance"
    reg_net = image_network(reg, reg.configurations["3d_fullres"], cfg0)
    cls_net = image_network(plan, plan.configurations["2d"], cfg0.model_copy(update={"configuration": "2d"}))
    assert any(isinstance(m, nn.BatchNorm3d) for m in reg_net.modules())
    assert not any(isinstance(m, nn.InstanceNorm3d) for m in reg_net.modules())
    assert any(isinstance(m, nn.InstanceNorm2d) for m in cls_net.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in cls_net.modules())
    from automed.errors import ConfigError

    with pytest.raises(
        ConfigError, match="batches of 2 or more"
    ):  # batch statistics of one image = instance norm
        task_for("regression", "r").build_network(
            reg, reg.configurations["3d_fullres"], cfg0.model_copy(update={"batch_size": 1})
        )


def test_imbalanced_classes_get_weights_and_big_images_a_coarser_spacing(tmp_path: Path) -> None:
    csv = make_classification(tmp_path / "c", 10, shape=(600, 300))
    rows = csv.read_text().splitlines()
    csv.write_text("\n".join(rows[:1] + [r.replace(",two", ",one") for r in rows[1:7]] + rows[7:]) + "\n")
    plan = api.plan_dataset(csv, tmp_path / "W", run_preprocess=False, show_progress=False).plan
    t = plan.target
    assert t is not None and t.class_counts == [8, 2]
    assert t.class_weights is not None and t.class_weights[1] > t.class_weights[0]
    cfg = plan.configurations["2d"]
    assert max(cfg.median_shape) <= 256 and "coarsened" in plan.reasons["target_spacing"]


@pytest.fixture(scope="module")
def classified(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("cls")
    csv = make_classification(root / "d", 24, shape=(32, 32))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    res = api.train(
        csv,
        root / "W",
        config=_config(root / "cfg.yaml", epochs=2, iterations=8),
        folds=2,
        tracking_uri=uri,
        workers=0,
        show_progress=False,
    )
    return {"root": root, "csv": csv, "uri": uri, "res": res}


@pytest.mark.slow
def test_classification_trains_registers_and_predicts_a_table(classified: dict[str, Any]) -> None:
    root, res = classified["root"], classified["res"]
    wd = res.workdir
    meta = json.loads((wd / "model.json").read_text())
    assert meta["task"] == "classification" and meta["score_name"] == "cv_auc"
    assert set(res.cv_summary) >= {
        "accuracy",
        "balanced_accuracy",
        "auc_macro",
        "f1_macro",
        "ece",
        "per_class",
    }
    table = pd.read_csv(wd / "cv" / "metrics.csv")
    assert len(table) == 24 and {"case", "fold", "target", "prediction", "probability_one"} <= set(
        table.columns
    )
    for fig in ("roc_pr.png", "confusion_matrix.png", "calibration.png"):
        assert (wd / "cv" / fig).stat().st_size > 1000
    progress = json.loads((wd / "train" / "2d" / "fold_0" / "progress.json").read_text())
    assert len(progress["history"]) == 2 and "val_score" in progress["history"][0]
    # MLflow: per-epoch AUC in the fold runs, the CV metrics and figures in the parent, a registered version
    import mlflow

    client = mlflow.MlflowClient(classified["uri"])
    runs = client.search_runs([client.get_experiment_by_name("dataset").experiment_id])
    parent = next(r for r in runs if "fold" not in r.data.tags)
    assert {"cv_auc", "cv_accuracy", "cv_balanced_accuracy", "cv_ece"} <= set(parent.data.metrics)
    assert any("val_auc" in r.data.metrics and "val_auc_ema" in r.data.metrics for r in runs)
    names = {a.path for a in client.list_artifacts(parent.info.run_id, "cv")}
    assert "cv/roc_pr.png" in names and "cv/confusion_matrix.png" in names
    assert res.registered is not None and res.registered["version"] == "1"
    # predict: one CSV row per image, the class name and one probability per class summing to 1
    out = api.predict(wd, root / "d" / "images", root / "P", show_progress=False, review=True)
    assert out == [root / "P" / "predictions.csv"]
    pred = pd.read_csv(out[0])
    first = pred.iloc[0]  # --review: the class and probabilities per image, a picture, one index page
    seen = json.loads((root / "P" / "review" / f"{first['SubjectID']}.json").read_text())
    assert seen["prediction"] == first["prediction"]
    assert seen["probability_one"] == pytest.approx(first["probability_one"], abs=1e-6)
    assert (root / "P" / "review" / f"{first['SubjectID']}.png").is_file()
    assert f"{first['SubjectID']}.png" in (root / "P" / "review" / "index.html").read_text()
    assert list(pred.columns) == ["SubjectID", "prediction", "probability_one", "probability_two"]
    assert len(pred) == 24 and set(pred["prediction"]) <= {"one", "two"}
    assert np.allclose(pred[["probability_one", "probability_two"]].sum(axis=1), 1.0, atol=1e-5)
    # automed metrics scores that table against the dataset CSV (SubjectID, ValueToPredict) as it is
    scored = api.metrics(out[0], root / "M", reference=classified["csv"]).summary
    assert scored["problem"] == "classification" and scored["n_cases"] == 24
    truth = pd.read_csv(classified["csv"]).set_index("SubjectID")["ValueToPredict"]
    agree = (pred.set_index("SubjectID")["prediction"] == truth.reindex(pred["SubjectID"]).values).mean()
    assert scored["accuracy"] == pytest.approx(agree)
    # a model of pictures refuses volumes (it would take their middle slice), before writing anything
    import SimpleITK as sitk

    from automed.errors import DatasetError

    (root / "vol").mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 32, 32), np.float32)), str(root / "vol" / "v.nii.gz"))
    with pytest.raises(DatasetError, match="trained on pictures or single slices"):
        api.predict(wd, root / "vol", root / "P_vol", show_progress=False)
    assert not (root / "P_vol").exists()
    # the registered pyfunc returns the same table for arrays
    mlflow.set_tracking_uri(classified["uri"])
    mlflow.set_registry_uri(classified["uri"])
    model = mlflow.pyfunc.load_model("models:/automed-dataset-classification@champion")
    x = np.random.default_rng(0).normal(size=(2, 1, 1, 32, 32)).astype(np.float32)
    frame = model.predict(x, params={"spacing_z": 1.0, "spacing_y": 1.0, "spacing_x": 1.0})
    assert list(frame.columns) == ["prediction", "probability_one", "probability_two"] and len(frame) == 2


@pytest.mark.slow
def test_a_folder_per_class_test_set_is_predicted_with_its_truth(
    classified: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``IN/<class>/<images>`` names each image's class: predictions.csv had no ``truth`` column. A folder that is
    not one of the model's classes is named and its truth left empty."""
    root = classified["root"]
    listed = pd.read_csv(classified["csv"]).head(6)
    for k, (case, channel, cls) in enumerate(listed.itertuples(index=False)):
        folder = (
            tmp_path / "IN" / (cls if k < 4 else "Two")
        )  # the last two: a spelling the model does not have
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{case}.png").symlink_to(root / "d" / channel)
    with caplog.at_level("WARNING", logger="automed"):
        out = api.predict(classified["res"].workdir, tmp_path / "IN", tmp_path / "P", show_progress=False)
    pred = pd.read_csv(out[0], keep_default_na=False).set_index("SubjectID")
    assert list(pred.columns) == ["truth", "prediction", "probability_one", "probability_two"]
    expected = {f"{cls if k < 4 else 'Two'}_{case}": cls if k < 4 else "" for k, (case, _, cls) in
                enumerate(listed.itertuples(index=False))}  # fmt: skip
    assert pred["truth"].to_dict() == expected
    assert "Two/ is not (2 image(s))" in caplog.text and "(Two/ -> two/)" in caplog.text


@pytest.mark.slow
def test_an_image_level_model_predicts_with_the_folds_asked_and_has_no_window(
    classified: dict[str, Any],
) -> None:
    from automed.errors import ConfigError

    wd = classified["res"].workdir
    assert len(api.load_predictor(wd, None, folds=[1]).models) == 1
    assert len(api.load_predictor(wd, None).models) == 2
    with pytest.raises(ConfigError, match=r"has \(0, 1\); found --folds 3 \(no fold 3\)"):
        api.load_predictor(wd, None, folds=[3])
    with pytest.raises(ConfigError, match="no window"):
        api.predict(wd, classified["root"] / "d" / "images", classified["root"] / "S", step=0.5)
    assert not (classified["root"] / "S").exists()


@pytest.mark.slow
def test_save_probabilities_on_a_table_says_where_they_are(
    classified: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """--save-probabilities writes label maps' CASE.npz; a classification model writes a table, and the flag did
    nothing without a word."""
    images = sorted((classified["root"] / "d" / "images").iterdir())[:2]
    (tmp_path / "in").mkdir()
    for f in images:
        (tmp_path / "in" / f.name).write_bytes(f.read_bytes())
    with caplog.at_level("WARNING", logger="automed"):
        out = api.predict(
            classified["res"].workdir,
            tmp_path / "in",
            tmp_path / "P",
            save_probabilities=True,
            show_progress=False,
        )
    assert out == [tmp_path / "P" / "predictions.csv"] and not list((tmp_path / "P").glob("*.npz"))
    assert "--save-probabilities" in caplog.text and "probability_<class> columns" in caplog.text


@pytest.mark.slow
def test_classification_cli_prints_scores_and_predicts(classified: dict[str, Any], tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(
        app,
        [
            "predict",
            str(classified["res"].workdir),
            "-i",
            str(classified["root"] / "d" / "images"),
            "-o",
            str(tmp_path / "P"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "P" / "predictions.csv").is_file()
    assert "wrote 24 prediction(s)" in " ".join(r.output.split())  # one per image, not one file
    r = runner.invoke(
        app,
        [
            "train", str(classified["csv"]), "-o", str(tmp_path / "W"), "--folds", "2", "--no-register",
            "--config", str(_config(tmp_path / "cfg.yaml", epochs=1, iterations=2)), "--workers", "0",
            "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
        ],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "auc macro" in r.output and "per class" in r.output and "sensitivity" in r.output


@pytest.mark.slow
def test_regression_3d_trains_and_predicts_values(tmp_path: Path) -> None:
    csv = make_regression(tmp_path / "d", 12, shape=(12, 16, 16))
    res = api.train(
        csv,
        tmp_path / "W",
        config=_config(tmp_path / "cfg.yaml", epochs=2, iterations=6),
        folds=2,
        tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
        workers=0,
        show_progress=False,
        register=False,
    )
    assert res.model.task == "regression" and res.model.score_name == "cv_r2"
    assert {"mae", "rmse", "r2", "pearson_r"} <= set(res.cv_summary)
    assert (res.workdir / "cv" / "regression.png").is_file()
    # mirror TTA only when it scored higher on this CV; the CV summary and score are of the chosen inference
    choice = json.loads((res.workdir / "selection" / "tta_choice.json").read_text())["choice"]
    assert res.model.inference.tta == choice["tta"]
    chosen = choice["score_with_tta"] if choice["tta"] else choice["score_without_tta"]
    assert res.model.cv_score == pytest.approx(chosen)
    pred = pd.read_csv(
        api.predict(res.workdir, tmp_path / "d" / "images", tmp_path / "P", show_progress=False)[0]
    )
    assert list(pred.columns) == ["SubjectID", "prediction"] and len(pred) == 12
    assert np.isfinite(pred["prediction"]).all()
    # values come back in the target's units (mm³), not standardized
    truth = pd.read_csv(csv)["ValueToPredict"]
    assert abs(pred["prediction"].mean() - truth.mean()) < 3 * truth.std()
    report = api.export(res.workdir, tmp_path / "E", formats="onnx").report
    assert report["task"] == "regression" and report["parity"]["onnxruntime"]["passed"]
    assert report["parity"]["onnxruntime"]["max_difference"] <= 1e-3  # in standard deviations of the target
    assert report["parity"]["bundle_onnx"]["passed"]  # the bundle's own code, run at export
    assert report["parity"]["bundle_onnx"]["max_difference"] <= 1e-3


@pytest.mark.slow
def test_folder_per_class_layout_trains(tmp_path: Path) -> None:
    import shutil

    make_classification(tmp_path / "src", 12, shape=(24, 24))
    for row in pd.read_csv(tmp_path / "src" / "dataset.csv").itertuples():
        dest = tmp_path / "folders" / str(row.ValueToPredict)
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "src" / str(row.Channel_0), dest)
    res = api.train(
        tmp_path / "folders",
        tmp_path / "W",
        config=_config(tmp_path / "cfg.yaml", epochs=1, iterations=4),
        folds=2,
        tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
        workers=0,
        show_progress=False,
        register=False,
    )
    plan = Plan.load(res.workdir / "plan.json")
    assert plan.target is not None and plan.target.class_names == ["one", "two"]
    assert len(pd.read_csv(res.workdir / "cv" / "metrics.csv")) == 12


@pytest.mark.slow
def test_classification_cube_infers_and_evaluates_without_torch(
    classified: dict[str, Any], tmp_path: Path
) -> None:
    """``automed package`` for a classification model (issue 15): the cube's entry point writes predictions.csv
    (torch and automed unimportable) and its evaluate task scores it against a reference CSV."""
    import subprocess
    import sys

    wd, root = classified["res"].workdir, classified["root"]
    cube = api.package(wd, tmp_path / "C", tracking_uri=classified["uri"]).folder
    readme = (cube / "README.md").read_text()
    assert "Classification model" in readme and "predictions.csv" in readme and "one, two" in readme
    ws = cube / "mlcube" / "workspace"
    (ws / "parameters.yaml").write_text("runtime: onnx\ntta: true\nthreads: 1\n")
    entry = cube / "project" / "entry.py"
    ref = tmp_path / "ref.csv"
    data = pd.read_csv(classified["csv"])
    data[["SubjectID", "ValueToPredict"]].to_csv(ref, index=False)

    def run(*args: str) -> None:
        script = (
            "import sys, runpy; sys.modules['torch'] = None; sys.modules['automed'] = None; "
            f"sys.argv = ['entry.py', *{list(args)!r}]; runpy.run_path({str(entry)!r}, run_name='__main__')"
        )
        r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-2000:]

    run("infer", f"--data_path={root / 'd' / 'images'}", f"--parameters_file={ws / 'parameters.yaml'}",
        f"--additional_files={ws / 'additional_files'}", f"--output_path={tmp_path / 'O'}")  # fmt: skip
    preds = pd.read_csv(tmp_path / "O" / "predictions.csv")
    assert len(preds) == 24 and set(preds["prediction"]) <= {"one", "two"}
    run(
        "evaluate",
        f"--predictions={tmp_path / 'O'}",
        f"--labels={ref}",
        f"--output_path={tmp_path / 'r.yaml'}",
    )
    result = json.loads((tmp_path / "r.yaml").read_text())
    merged = preds.merge(data, on="SubjectID")
    assert result["n"] == 24
    assert result["accuracy"] == pytest.approx((merged["prediction"] == merged["ValueToPredict"]).mean())


@pytest.mark.slow
def test_classification_export_parity_and_torch_free_bundle(
    classified: dict[str, Any], tmp_path: Path
) -> None:
    import subprocess
    import sys

    wd, root = classified["res"].workdir, classified["root"]
    # through the command line, as the README shows it: its parity table has the image-level columns
    r = CliRunner().invoke(
        app, ["export", str(wd), "-o", str(tmp_path / "E"), "--tracking-uri", classified["uri"]]
    )
    assert r.exit_code == 0, r.output
    assert "same prediction" in r.output and "reference" in r.output
    # its steps (two folds to ONNX and OpenVINO, the bundle, parity) as a progress bar; off a terminal, its last state
    assert re.search(r"export .*6/6", r.output), r.output
    report = json.loads((tmp_path / "E" / "export.json").read_text())
    assert report["task"] == "classification" and set(report["parity"]) >= {"onnxruntime", "openvino_f32"}
    assert all(r["passed"] and r["same_prediction"] for r in report["parity"].values()), report["parity"]
    assert report["parity"]["onnxruntime"]["max_difference"] <= 1e-3
    # the bundle's own code, run at export on the runtime its predict.py picks here (OpenVINO when installed)
    assert report["parity"]["bundle_openvino"]["passed"]
    for f in ("networks/onnx/fold_0.onnx", "networks/openvino/fold_1.xml", "predict.py", "runtime/image_model.py",
              "preprocess.json", "MODEL_CARD.md", "README.md", "requirements-onnx.txt"):  # fmt: skip
        assert (tmp_path / "E" / f).is_file(), f
    card = (tmp_path / "E" / "MODEL_CARD.md").read_text()
    assert "auc macro" in card and "## Intended use" in card
    assert re.search(r"^- n cases: \d+$", card, re.M)  # a count, not 24.0000
    # the bundle without torch or automed: the same table as automed predict (onnxruntime, float32)
    script = (
        "import sys, runpy; sys.modules['torch'] = None; sys.modules['automed'] = None; "
        f"sys.argv = ['predict.py', '-i', {str(root / 'd' / 'images')!r}, '-o', {str(tmp_path / 'B')!r}, "
        "'--runtime', 'onnx']; runpy.run_path(sys.argv[0] if False else "
        f"{str(tmp_path / 'E' / 'predict.py')!r}, run_name='__main__')"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    bundle = pd.read_csv(tmp_path / "B" / "predictions.csv").sort_values("SubjectID").reset_index(drop=True)
    torch_out = api.predict(wd, root / "d" / "images", tmp_path / "T", show_progress=False)[0]
    ref = pd.read_csv(torch_out).sort_values("SubjectID").reset_index(drop=True)
    assert list(bundle.columns) == list(ref.columns) and (bundle["prediction"] == ref["prediction"]).all()
    assert np.abs(bundle["probability_one"] - ref["probability_one"]).max() < 1e-3
    # predict.py --folds 1: fold 1's network alone, as automed predict --folds 1; --step-size has no window here
    from automed.runtime import cli

    args = ["-i", str(root / "d" / "images"), "-o", str(tmp_path / "B1"), "--runtime", "onnx"]
    with pytest.raises(SystemExit, match="image-level model"):
        cli.main([*args, "--step-size", "0.5"], bundle=tmp_path / "E")
    assert not (tmp_path / "B1").exists()
    assert cli.main([*args, "--folds", "1"], bundle=tmp_path / "E") == 0
    one = pd.read_csv(tmp_path / "B1" / "predictions.csv").sort_values("SubjectID").reset_index(drop=True)
    torch_one = api.predict(wd, root / "d" / "images", tmp_path / "T1", show_progress=False, folds=[1])[0]
    ref_one = pd.read_csv(torch_one).sort_values("SubjectID").reset_index(drop=True)
    assert np.abs(one["probability_one"] - ref_one["probability_one"]).max() < 1e-3
    # a folder-per-class input (IN/<class>/<images>): the bundle's table has the truth column automed predict's has
    listed = pd.read_csv(classified["csv"]).head(4)
    for case, channel, cls in listed.itertuples(index=False):
        (tmp_path / "IN" / cls).mkdir(parents=True, exist_ok=True)
        (tmp_path / "IN" / cls / f"{case}.png").symlink_to(root / "d" / channel)
    assert cli.main(["-i", str(tmp_path / "IN"), "-o", str(tmp_path / "BC"), "--runtime", "onnx"],
                    bundle=tmp_path / "E") == 0  # fmt: skip
    by_bundle = pd.read_csv(tmp_path / "BC" / "predictions.csv")
    assert list(by_bundle.columns) == [
        "SubjectID",
        "truth",
        "prediction",
        "probability_one",
        "probability_two",
    ]
    expected = {f"{cls}_{case}": cls for case, _, cls in listed.itertuples(index=False)}
    assert dict(zip(by_bundle["SubjectID"], by_bundle["truth"], strict=True)) == expected


@pytest.mark.slow
def test_a_sweep_on_a_classification_dataset_lands_in_mlflow(tmp_path: Path) -> None:
    import yaml

    csv = make_classification(tmp_path / "d", 12, shape=(24, 24))
    space = {
        "schema_version": 1,
        "name": "tiny",
        "fixed": {"epochs": 1, "iterations_per_epoch": 3, "val_iterations": 1, "num_workers": 0},
        "parameters": {"augmentation_strength": {"type": "float", "low": 0.25, "high": 1.0, "default": 1.0}},
    }
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = api.sweep(
        csv,
        tmp_path / "S",
        space=tmp_path / "space.yaml",
        trials=2,
        folds=2,
        promote=1,
        engine="optuna",
        tracking_uri=uri,
        workers=0,
        show_progress=False,
    )
    assert res.best is not None and (tmp_path / "S" / "best_config.yaml").is_file()
    import mlflow

    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("dataset").experiment_id])
    sweep_run = next(r for r in runs if "best_cv_auc" in r.data.metrics)
    assert 0.0 <= sweep_run.data.metrics["best_cv_auc"] <= 1.0
    assert any("val_auc" in r.data.metrics for r in runs)  # per-epoch AUC of the trials' folds
    # the fully cross-validated trial carries a training run's CV metrics by the same names (MLflow compare view)
    full = [r for r in runs if "trial" in r.data.tags and "cv_auc" in r.data.metrics]
    assert full and {"cv_accuracy", "cv_balanced_accuracy", "cv_f1_macro", "cv_ece"} <= set(
        full[0].data.metrics
    )


def test_a_pair_averages_its_members_cv_predictions() -> None:
    from automed.select.image_level import combine

    a = pd.DataFrame(
        {"case": ["x", "y"], "fold": [0, 1], "target": ["one", "two"], "prediction": ["one", "one"],
         "probability_one": [0.9, 0.6], "probability_two": [0.1, 0.4]}
    ).set_index("case")  # fmt: skip
    b = a.copy()
    b["probability_one"], b["probability_two"] = [0.7, 0.2], [0.3, 0.8]
    rows = combine([a, b])
    assert [r["prediction"] for r in rows] == ["one", "two"]
    assert rows[1]["probability_two"] == pytest.approx(0.6) and rows[0]["case"] == "x"
    reg = pd.DataFrame({"case": ["x"], "fold": [0], "target": [3.0], "prediction": [2.0]}).set_index("case")
    assert combine([reg, reg.assign(prediction=[4.0])])[0]["prediction"] == pytest.approx(3.0)


@pytest.mark.slow
def test_select_compares_classification_trainings_and_their_pair(
    classified: dict[str, Any], tmp_path: Path
) -> None:
    other = api.train(
        classified["csv"],
        tmp_path / "B",
        config=_config(tmp_path / "cfg.yaml", epochs=1, iterations=4),
        folds=2,
        tracking_uri=classified["uri"],
        workers=0,
        show_progress=False,
        register=False,
    )
    a = classified["res"].workdir
    model_a = (a / "model.json").read_bytes()
    sel = api.select([a, other.workdir], tmp_path / "S", tracking_uri=classified["uri"])
    assert [c["candidate"] for c in sel["candidates"]] == ["W", "B", "W + B"]
    best = max(c["score"] for c in sel["candidates"])
    assert sel["cv_score_final"] == best and 0.0 <= best <= 1.0
    assert json.loads((tmp_path / "S" / "selection.json").read_text())["chosen"] == sel["chosen"]
    assert (a / "model.json").read_bytes() == model_a
    if len(sel["chosen"]["members"]) == 2:
        assert (tmp_path / "S" / "model_bundle" / "ensemble.json").is_file()
    out = api.predict(
        tmp_path / "S", classified["root"] / "d" / "images", tmp_path / "P", show_progress=False
    )
    table = pd.read_csv(out[0])
    assert len(table) == 24 and set(table["prediction"]) <= {"one", "two"}
    # automed report on the two classification trainings (issue 16): numbers, ROC/PR, confusion, McNemar
    rep = api.report([a, other.workdir], tmp_path / "R")
    page = rep.page.read_text()
    for title in ("Cross-validation numbers per run", "ROC / PR, confusion, calibration", "Training curves",
                  "Paired tests between runs", "Per case"):  # fmt: skip
        assert title in page, title
    assert "<script" not in page and (tmp_path / "R" / "W_roc_pr.png").is_file()
    (test,) = rep.tests
    assert test["test"] == "McNemar (exact)" and test["n_cases"] == 24 and 0 <= test["p_holm"] <= 1
    # the same two commands as the README shows them print their image-level tables and tests
    runner = CliRunner()
    r = runner.invoke(app, ["select", str(a), str(other.workdir), "-o", str(tmp_path / "S2"),
                            "--tracking-uri", classified["uri"]])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert (
        "W + B" in r.output and f"{best:.4f}" in r.output
    )  # every candidate's CV score (Rich may wrap titles)
    r = runner.invoke(app, ["report", str(a), str(other.workdir), "-o", str(tmp_path / "R2"), "--no-mlflow"])
    assert r.exit_code == 0, r.output
    assert "McNemar (exact): W vs B" in r.output and "Holm" in r.output
    cases = pd.read_csv(tmp_path / "R" / "cases.csv")
    right = cases.pivot_table(index="case", columns="run", values="correct")
    assert test["only_a_right"] == int(((right["W"] > 0) & (right["B"] == 0)).sum())


@pytest.mark.slow
def test_task_override_trains_integer_classes_as_a_regression(tmp_path: Path) -> None:
    """``--task regression`` on integer targets (which auto reads as classes): planned and trained as a regression,
    the choice recorded in the fingerprint and kept by --resume (issue 15)."""
    from automed.testing.synthetic_image_level import make_classification

    csv = make_classification(tmp_path / "d", 8, shape=(16, 16))
    table = pd.read_csv(csv)
    table["ValueToPredict"] = [3 + (i % 3) for i in range(len(table))]  # 3, 4, 5: classes by default
    table.to_csv(csv, index=False)
    res = api.train(csv, tmp_path / "W", config=_config(tmp_path / "c.yaml", 1, 2), folds=2, workers=0,
                    show_progress=False, register=False, tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
                    task="regression")  # fmt: skip
    assert res.model.task == "regression"
    fp = json.loads((res.workdir / "fingerprint.json").read_text())
    assert fp["task_type"] == "regression" and "--task regression" in fp["task_type_reason"]
    saved = json.loads((res.workdir / "train_config.json").read_text())
    assert saved["options"]["task"] == "regression"
    again = api.train(None, res.workdir, resume=True, workers=0, show_progress=False)
    assert again.model.task == "regression"


@pytest.mark.slow  # plans two datasets (8 s): make test-fast stays under 3 minutes
def test_two_datasets_of_one_name_never_share_a_registered_model(tmp_path: Path) -> None:
    """Two ``dataset.csv`` of other classes (or dimensions) plan the same model name: the second is registered under
    the name with its contract's digest, so no champion compares or swaps models that take or give other things."""
    from mlflow.tracking import MlflowClient

    from automed.select.register import CONTRACT_TAG, contract, model_name_for, registry_name

    two = make_classification(tmp_path / "a", 8, shape=(24, 24), n_classes=2)
    three = make_classification(tmp_path / "b", 9, shape=(24, 24), n_classes=3)
    plans = [
        api.plan_dataset(csv, tmp_path / f"W{i}", run_preprocess=False, show_progress=False).plan
        for i, csv in enumerate((two, three))
    ]
    assert model_name_for(plans[0]) == model_name_for(plans[1])
    store = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)  # (not the registry an earlier test set)
    name = registry_name(plans[0], client)
    assert name == model_name_for(plans[0])  # a new name is taken as it is
    client.create_registered_model(name, tags={CONTRACT_TAG: json.dumps(contract(plans[0]), sort_keys=True)})
    assert registry_name(plans[0], client) == name  # the same contract keeps its name
    other = registry_name(plans[1], client)
    assert other.startswith(name + "-") and other != name
    assert contract(plans[1])["outputs"] == ["one", "three", "two"] and contract(plans[0])["images"] == "2D"


def test_a_regression_target_in_tiny_units_keeps_its_spread(tmp_path: Path) -> None:
    """Values of order 1e-6 (a volume in m³): the plan's standardization keeps significant digits (rounding to six
    decimals made the standard deviation 0 and training divided by it)."""
    csv = make_regression(tmp_path / "r", 8)
    table = pd.read_csv(csv)
    table["ValueToPredict"] = table["ValueToPredict"] * 1e-9
    table.to_csv(csv, index=False)
    t = api.plan_dataset(csv, tmp_path / "W", run_preprocess=False, show_progress=False).plan.target
    assert t is not None
    assert t.std == pytest.approx(float(table["ValueToPredict"].std(ddof=0)), rel=1e-6) and t.std > 0
    assert t.mean == pytest.approx(float(table["ValueToPredict"].mean()), rel=1e-6)


def test_settings_a_classification_model_does_not_use_are_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """loss and deep supervision in a classification's training config: said to be ignored (not silently)."""
    import logging

    from automed.train.config import TrainConfig
    from automed.workflow.train_options import TrainOptions
    from automed.workflow.train_start import start_training

    csv = make_classification(tmp_path / "d", 8, shape=(16, 16))
    config = TrainConfig.model_validate({"loss": "ce", "deep_supervision": False, "num_workers": 0})
    opts = TrainOptions(folds=2, workers=0, auto_configuration=True)
    with caplog.at_level(logging.WARNING):
        start_training(csv, tmp_path / "W", config, opts, False, None)
    assert "sets deep_supervision, loss: a classification model does not use it" in caplog.text


@pytest.mark.slow
def test_an_all_data_classification_model_inherits_its_cv_and_predicts(
    classified: dict[str, Any], tmp_path: Path
) -> None:
    """A README audit: `automed train CSV -o ALL --folds all --cv CV` on a classification dataset trained its whole
    budget, then ended in "unexpected error: IndexError" (the summary of the all-data fold's validation, which holds
    no case). It concludes now: the CV score inherited, and it predicts the table like any model."""
    cv = classified["res"].workdir
    res = api.train(
        classified["csv"], tmp_path / "ALL", config=_config(tmp_path / "cfg.yaml", epochs=1, iterations=4),
        folds="all", cv=cv, tracking_uri=classified["uri"], workers=0, show_progress=False, register=False,
    )  # fmt: skip
    meta = json.loads((res.workdir / "model.json").read_text())
    assert (
        meta["folds"] == [-1] and meta["cv_score"] == json.loads((cv / "model.json").read_text())["cv_score"]
    )
    out = api.predict(res.workdir, classified["root"] / "d" / "images", tmp_path / "P", show_progress=False)
    pred = pd.read_csv(out[0])
    assert len(pred) == 24 and set(pred["prediction"]) <= {"one", "two"}
    # its report: refused naming the cross-validation to report (it failed with FileNotFoundError: metrics.csv)
    from automed.errors import ArtifactError

    with pytest.raises(ArtifactError, match="all-data model") as err:
        api.report([res.workdir, cv], tmp_path / "R", log_to_mlflow=False)
    assert f"automed report {cv}" in str(err.value) and not (tmp_path / "R").exists()


def test_versions_of_other_data_under_one_name_are_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two regression `dataset.csv` of one contract (1-channel volumes, a value) share a name: the second was
    registered and compared with the first as alike (its values in other units), without a word."""
    from types import SimpleNamespace

    from automed.select.register import DATA_TAG, _say_other_data

    plan = api.plan_dataset(make_regression(tmp_path / "r", 8), tmp_path / "W", run_preprocess=False,
                            show_progress=False).plan  # fmt: skip
    versions = [SimpleNamespace(version="1", tags={DATA_TAG: "another"}),
                SimpleNamespace(version="2", tags={DATA_TAG: plan.fingerprint_hash}),
                SimpleNamespace(version="3", tags={})]  # fmt: skip
    client = SimpleNamespace(search_model_versions=lambda query: versions)
    with caplog.at_level("WARNING", logger="automed"):
        _say_other_data(client, "automed-r-regression", plan)
    assert "holds version(s) 1 trained on other data" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="automed"):
        _say_other_data(SimpleNamespace(search_model_versions=lambda query: versions[1:]), "m", plan)
    assert caplog.text == ""
