"""``automed report`` on a model trained on all data (``train --folds all``): it has no cv/metrics.csv, and was
told to "train it first". The page now shows its training curve and plan, and the cross-validation it inherits
(``--cv``) as its rows, or says that it has none; next to that cross-validation, it is not tested against it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from automed import api
from automed.artifacts import write_json_atomic
from automed.records import PROGRESS, PROGRESS_VERSION, TRAIN_CONFIG_VERSION, stamped
from automed.train.config import TrainConfig
from automed.train.meta import ModelMeta, ResolvedTraining
from automed.workdir import ALL_DATA, WorkDir


def _all_data_model(wd: Path, cv: Path | None) -> Path:
    """What a concluded ``train --folds all`` leaves that the report reads: model.json, train_config.json (its
    ``--cv``) and its one fold's progress.json."""
    config = TrainConfig(epochs=2)
    meta = ModelMeta(dataset="A", configuration="3d_fullres", folds=[ALL_DATA], config=config,
                     resolved=ResolvedTraining(patch_size=[8, 16, 16], batch_size=2, foreground_oversample=0.33),
                     plan_hash="p", labels={"0": "background", "1": "large"}, cv_score=0.61 if cv else None)  # fmt: skip
    WorkDir(wd).fold("3d_fullres", ALL_DATA).mkdir(parents=True)
    meta.save(WorkDir(wd).model)
    options = {"only_folds": [ALL_DATA], "cv_workdir": str(cv) if cv else None}
    write_json_atomic(WorkDir(wd).train_config, stamped({"options": options}, TRAIN_CONFIG_VERSION))
    history = [
        {"epoch": e, "train_loss": 1.0 / e, "val_score": 0.3 * e, "learning_rate": 0.01} for e in (1, 2)
    ]
    progress = WorkDir(wd).fold("3d_fullres", ALL_DATA) / PROGRESS
    write_json_atomic(progress, stamped({"history": history}, PROGRESS_VERSION))
    return wd


def _cross_validation(wd: Path) -> Path:
    (wd / "cv").mkdir(parents=True)
    rows = [{"case": f"case_{i:03d}", "fold": i % 2, "label": 1, "name": "large", "dice": 0.5 + i / 20,
             "hd95": 2.0} for i in range(6)]  # fmt: skip
    pd.DataFrame(rows).to_csv(WorkDir(wd).cv_metrics, index=False)
    return wd


def test_an_all_data_model_without_cv_gets_its_curve_and_says_why_there_is_no_cv(tmp_path: Path) -> None:
    res = api.report([_all_data_model(tmp_path / "ALL", None)], tmp_path / "R", log_to_mlflow=False)
    page = " ".join(res.page.read_text().split())
    assert "trained on every case" in page and "there is no cross-validation to show" in page
    assert "train it first" not in page and "3d_fullres" in page and "[8, 16, 16]" in page  # its plan
    assert (res.folder / "curves.png").is_file() and res.tests == []


def test_an_all_data_model_shows_the_cross_validation_it_inherits(tmp_path: Path) -> None:
    cv = _cross_validation(tmp_path / "CV")
    alone = _all_data_model(tmp_path / "ALL", cv)
    res = api.report([alone], tmp_path / "R", log_to_mlflow=False)
    page = " ".join(res.page.read_text().split())
    assert (
        "inherits the evidence of the cross-validation CV (CV score 0.6100)" in page
        and "not this model's" in page
    )
    assert len(pd.read_csv(res.folder / "cases.csv")) == 6 and (res.folder / "curves.png").is_file()
    # beside that cross-validation it is not tested against it (the same rows twice)
    both = api.report([cv, alone], tmp_path / "R2", log_to_mlflow=False)
    assert both.tests == [] and "reported on this page as its own run" in both.page.read_text()
    assert set(pd.read_csv(both.folder / "cases.csv")["run"]) == {"CV"}


def test_an_all_data_models_inherited_rows_pair_with_another_run(tmp_path: Path) -> None:
    """The inherited cross-validation's rows are read as every other run's (labels as text): read with numbers, its
    label 1 and the other run's "1" were two structures and the paired test between them was silently dropped."""
    cv = _cross_validation(tmp_path / "CV")
    other = _cross_validation(tmp_path / "OTHER")
    alone = _all_data_model(tmp_path / "ALL", cv)
    res = api.report([alone, other], tmp_path / "R", log_to_mlflow=False)
    assert [(t["run_a"], t["run_b"], t["label"]) for t in res.tests] == [("ALL", "OTHER", 1)]
    assert res.tests[0]["n_cases"] > 0
