"""``automed train --folds all``: one model on every case, no validation fold, registered with a link to the
cross-validation training whose evidence it inherits; predict and export take it like any model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk

from automed import api
from automed.errors import ArtifactError
from automed.testing.synthetic import make_dataset
from automed.workdir import ALL_DATA

pytestmark = pytest.mark.slow


def test_all_data_model_trains_registers_predicts_and_exports(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    ds = make_dataset(tmp_path / "data", n_cases=4, shape=(12, 24, 24), seed=7)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("epochs: 2\niterations_per_epoch: 3\nval_iterations: 1\nnum_workers: 0\n")
    cv = api.train(ds, tmp_path / "CV", config=cfg, folds=2, tracking_uri=uri, workers=0, show_progress=False)
    inf = cv.model.inference
    assert inf.folds is None and inf.tta  # --folds 2 asked for that ensemble: every fold, mirror TTA
    assert not (tmp_path / "CV" / "selection" / "inference_cost.json").exists()
    r = subprocess.run(
        [sys.executable, "-m", "automed.cli", "train", str(ds), "-o", str(tmp_path / "ALL"), "--folds", "all",
         "--config", str(cfg), "--cv", str(tmp_path / "CV"), "--tracking-uri", uri, "--workers", "0"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"inherited from {tmp_path / 'CV'}" in " ".join(r.stdout.split())  # rich wraps long lines
    assert "3d_fullres fold all  epoch 1/2" in r.stdout and "fold -1" not in r.stdout  # one line per epoch
    wd = tmp_path / "ALL"
    meta = json.loads((wd / "model.json").read_text())
    assert meta["folds"] == [ALL_DATA] and meta["cv_score"] == pytest.approx(cv.model.cv_score)
    assert meta["inference"]["postprocessing"] == cv.model.inference.postprocessing
    fold = wd / "train" / "3d_fullres" / "fold_all"
    assert (fold / "checkpoint_final.pt").is_file()
    opts = json.loads((wd / "train_config.json").read_text())["options"]
    assert opts["only_folds"] == [ALL_DATA]
    client = MlflowClient(tracking_uri=uri)
    reg = json.loads((wd / "tracking.json").read_text())["registered"]
    mv = client.get_model_version(reg["name"], reg["version"])
    cv_run = json.loads((tmp_path / "CV" / "tracking.json").read_text())["parent_run_id"]
    assert mv.tags["all_data"] == "true" and mv.tags["cv.run_id"] == cv_run and mv.tags["cv.workdir"] == "CV"
    # the score its --cv training registered: of the model after the postprocessing this one applies too
    cv_reg = json.loads((tmp_path / "CV" / "tracking.json").read_text())["registered"]
    assert mv.tags["cv_score"] == client.get_model_version(cv_reg["name"], cv_reg["version"]).tags["cv_score"]
    runs = client.search_runs([client.get_run(mv.run_id).info.experiment_id], "tags.fold = '-1'")
    assert [r.info.run_name for r in runs] == ["3d_fullres-fold_all"]  # was 3d_fullres-fold-1, read as fold 1
    (pred,) = api.predict(wd, ds / "imagesTr" / "case_000.nii.gz", tmp_path / "P", show_progress=False)
    ref = sitk.ReadImage(str(ds / "imagesTr" / "case_000.nii.gz"))
    assert sitk.ReadImage(str(pred)).GetSize() == ref.GetSize()
    exp = api.export(wd, tmp_path / "E", formats="onnx")
    assert [p.name for p in (exp.folder / "networks" / "onnx").iterdir()] == ["fold_0.onnx"]  # one network
    assert exp.report["parity"]["onnxruntime"]["passed"]
    card = (exp.folder / "MODEL_CARD.md").read_text()
    assert "one model trained on every case" in card and f"CV score {cv.model.cv_score:.4f}" in card
    # select compares cross-validations: an all-data model has none (its fold -1 was read as the split's last fold,
    # "fold_all/validation/case_002.npz: ... missing. Fix: re-run the training")
    with pytest.raises(ArtifactError, match=r"has none.*fold_all.*its --cv work dir") as err:
        api.select([wd, tmp_path / "CV"], tmp_path / "S", tracking_uri=uri, inference=False)
    assert "re-run the training" not in str(err.value) and not (tmp_path / "S").exists()


def test_cv_of_another_plan_is_refused(tmp_path: Path) -> None:
    a = make_dataset(tmp_path / "a", n_cases=4, shape=(12, 24, 24), seed=1)
    b = make_dataset(tmp_path / "b", n_cases=4, shape=(20, 40, 40), spacing=(3.0, 1.0, 1.0), seed=2)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("epochs: 1\niterations_per_epoch: 2\nval_iterations: 1\nnum_workers: 0\n")
    api.train(a, tmp_path / "CV", config=cfg, folds=2, tracking_uri=uri, workers=0, show_progress=False)
    with pytest.raises(ArtifactError, match="same dataset and plan"):
        api.train(
            b, tmp_path / "ALL", config=cfg, folds="all", cv=tmp_path / "CV", tracking_uri=uri, workers=0,
            show_progress=False,
        )  # fmt: skip
    # refused before any work: the new work dir keeps no fingerprint or plan of its own
    assert (
        not (tmp_path / "ALL" / "plan.json").exists() and not (tmp_path / "ALL" / "fingerprint.json").exists()
    )


def test_folds_one_command_at_a_time_an_all_data_model_beside_them_and_its_cv_of_another_width(
    tmp_path: Path,
) -> None:
    """--fold 0 then --fold 1 into one work dir: the model and its CV take both. --folds all into that work dir:
    refused (its CV files would describe another model). --folds all --cv W takes W's width when its config leaves
    it to the plan, and refuses a config of another width (the inherited score would describe another model)."""
    ds = make_dataset(tmp_path / "data", n_cases=4, shape=(12, 24, 24), seed=7)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "epochs: 1\niterations_per_epoch: 2\nval_iterations: 1\nnum_workers: 0\nbase_features: 8\n"
    )
    common = {"tracking_uri": uri, "workers": 0, "show_progress": False, "register": False}
    api.train(ds, tmp_path / "W", config=cfg, folds=2, only_folds=[0], **common)  # type: ignore[arg-type]
    res = api.train(ds, tmp_path / "W", config=cfg, folds=2, only_folds=[1], **common)  # type: ignore[arg-type]
    assert res.model.folds == [0, 1]
    cv_rows = (tmp_path / "W" / "cv" / "metrics.csv").read_text().splitlines()[1:]
    assert {r.split(",")[1] for r in cv_rows} == {"0", "1"}  # the fold column
    # --extend after folds trained one command at a time extends them all (it had kept only the last --fold's)
    res = api.train(None, tmp_path / "W", resume=True, extend=1, workers=0, show_progress=False)  # type: ignore[arg-type]
    assert res.model.folds == [0, 1]
    for k in (0, 1):
        progress = tmp_path / "W" / "train" / "3d_fullres" / f"fold_{k}" / "progress.json"
        assert len(json.loads(progress.read_text())["history"]) == 2
    assert len((tmp_path / "W" / "cv" / "metrics.csv").read_text().splitlines()[1:]) == len(cv_rows)
    with pytest.raises(ArtifactError, match=r"not both|keep its splits\.json"):
        api.train(ds, tmp_path / "W", config=cfg, folds="all", **common)  # type: ignore[arg-type]
    plain = tmp_path / "plain.yaml"
    plain.write_text("epochs: 1\niterations_per_epoch: 2\nval_iterations: 1\nnum_workers: 0\n")
    done = api.train(ds, tmp_path / "ALL", config=plain, folds="all", cv=tmp_path / "W", **common)  # type: ignore[arg-type]
    assert done.model.config.base_features == 8  # the width of the models the CV measured
    with pytest.raises(ArtifactError, match="not both"):  # a CV fold beside the all-data model
        api.train(ds, tmp_path / "ALL", config=cfg, only_folds=[0], **common)  # type: ignore[arg-type]
    wide = tmp_path / "wide.yaml"
    wide.write_text(
        "epochs: 1\niterations_per_epoch: 2\nval_iterations: 1\nnum_workers: 0\nbase_features: 16\n"
    )
    with pytest.raises(ArtifactError, match="same model"):
        api.train(ds, tmp_path / "ALL2", config=wide, folds="all", cv=tmp_path / "W", **common)  # type: ignore[arg-type]
