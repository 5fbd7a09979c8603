"""Real label distributions: labels absent from some cases or a whole validation fold, label IDs with gaps, empty
cases, labels declared but never present, many labels. The whole chain (train with epochs and with a budget, both
sweep engines, select, export, predict) completes, no artifact or MLflow metric holds NaN, means are finite and count
what they exclude, and label values round-trip to the prediction."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from automed import api
from automed.artifacts import write_json_atomic
from automed.errors import DatasetError
from automed.evaluate.summary import score, summarize
from automed.testing.synthetic import LabelLayout, make_dataset

from .conftest import shared

# label 2 ("small") is written as 4 (IDs 0, 1, 4); case 4 has no foreground; the small structure is absent from
# cases 0-3, so with the seeded 2-fold split (val {3, 4, 5} and {0, 1, 2}) fold 1 validates on no case holding it
LAYOUT = LabelLayout(absent={2: (0, 1, 2, 3)}, empty_cases=(4,), values={2: 4})


def _no_nan(obj: Any) -> None:
    if isinstance(obj, float):
        assert math.isfinite(obj), obj
    elif isinstance(obj, dict):
        for v in obj.values():
            _no_nan(v)
    elif isinstance(obj, list):
        for v in obj:
            _no_nan(v)


def _json_files_have_no_nan(root: Path) -> int:
    """Parse every JSON file under ``root`` refusing NaN/Infinity; return how many were checked."""

    def refuse(token: str) -> float:
        raise AssertionError(f"{token} in a JSON artifact")

    n = 0
    for f in root.rglob("*.json"):
        if "ray" in f.relative_to(root).parts:  # Ray Tune's own state (some of it pickled), not automed's
            continue
        _no_nan(json.loads(f.read_text(), parse_constant=refuse))
        n += 1
    return n


def _labels_of(path: Path) -> set[int]:
    return {int(v) for v in np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(path))))}


# --- units -------------------------------------------------------------------------------------------------------


def test_layout_absent_empty_gaps_extra_and_unused(tmp_path: Path) -> None:
    layout = LabelLayout(absent={2: (1,)}, empty_cases=(3,), values={2: 7}, extra=2, unused=(9,))
    ds = make_dataset(tmp_path / "d", n_cases=4, shape=(16, 32, 32), labels=layout, seed=2)
    meta = json.loads((ds / "dataset.json").read_text())
    assert meta["labels"] == {
        "0": "background",
        "1": "large",
        "3": "extra_3",
        "4": "extra_4",
        "7": "small",
        "9": "unused_9",
    }
    found = [_labels_of(ds / "labelsTr" / f"case_{i:03d}.nii.gz") for i in range(4)]
    assert found[0] == {0, 1, 3, 4, 7}
    assert found[1] == {0, 1, 3, 4}  # no small structure
    assert found[3] == {0}  # empty case
    with pytest.raises(ValueError, match="distinct"):
        LabelLayout(values={2: 3}, extra=1)  # structure 2 written as 3 collides with extra structure 3


def test_leaving_a_structure_out_changes_nothing_else(tmp_path: Path) -> None:
    a = make_dataset(tmp_path / "a", n_cases=2, seed=5)
    b = make_dataset(tmp_path / "b", n_cases=2, seed=5, labels=LabelLayout(absent={2: (0,)}))
    la = sitk.GetArrayFromImage(sitk.ReadImage(str(a / "labelsTr" / "case_000.nii.gz")))
    lb = sitk.GetArrayFromImage(sitk.ReadImage(str(b / "labelsTr" / "case_000.nii.gz")))
    assert np.array_equal(la == 1, lb == 1) and not (lb == 2).any()
    same = [sitk.GetArrayFromImage(sitk.ReadImage(str(d / "labelsTr" / "case_001.nii.gz"))) for d in (a, b)]
    assert np.array_equal(*same)


def test_summary_of_rows_read_back_from_json(tmp_path: Path) -> None:
    nan = float("nan")
    rows = [
        {"case": "a", "fold": 0, "label": 1, "name": "l", "dice": 0.5, "iou": 0.3, "sensitivity": 0.5,
         "hd95": 2.0, "nsd": 0.5, "n_ref": 10, "n_pred": 5, "tp": 5, "fp": 0, "fn": 5},
        {"case": "a", "fold": 0, "label": 4, "name": "s", "dice": nan, "iou": nan, "sensitivity": nan,
         "hd95": nan, "nsd": nan, "n_ref": 0, "n_pred": 0, "tp": 0, "fp": 0, "fn": 0},
        {"case": "b", "fold": 0, "label": 1, "name": "l", "dice": 1.0, "iou": 1.0, "sensitivity": 1.0,
         "hd95": 0.0, "nsd": 1.0, "n_ref": 10, "n_pred": 10, "tp": 10, "fp": 0, "fn": 0},
        {"case": "b", "fold": 0, "label": 4, "name": "s", "dice": nan, "iou": nan, "sensitivity": nan,
         "hd95": nan, "nsd": nan, "n_ref": 0, "n_pred": 0, "tp": 0, "fp": 0, "fn": 0},
    ]  # fmt: skip
    write_json_atomic(tmp_path / "rows.json", rows)
    text = (tmp_path / "rows.json").read_text()
    assert "NaN" not in text and "null" in text
    back = json.loads(text)
    for s in (summarize(rows), summarize(back)):
        assert s["mean"]["1"]["dice"] == pytest.approx(0.75)
        assert math.isnan(s["mean"]["4"]["dice"]) and s["mean"]["4"]["n_both_empty"] == 2
        fg = s["foreground_mean"]
        assert fg["dice"] == pytest.approx(0.75) and fg["n_labels"] == 1 and fg["labels_undefined"] == ["4"]
    assert score(float("nan")) == 0.0 and score(None) == 0.0 and score(0.25) == 0.25
    # every label undefined: the mean is undefined, the score is still a number
    s = summarize([r for r in rows if r["label"] == 4])
    assert math.isnan(s["foreground_mean"]["dice"]) and score(s["foreground_mean"]["dice"]) == 0.0


def test_tracker_omits_undefined_metrics(tmp_path: Path) -> None:
    from automed.tracking import Tracker

    t = Tracker(f"sqlite:///{tmp_path / 'm.db'}", "x")
    run = t.start_run("r")
    t.log_metrics(run, {"a": 0.5, "b": float("nan"), "c": None, "d": float("inf")})
    assert set(t.client.get_run(run).data.metrics) == {"a"}


def test_verify_warns_about_a_declared_label_no_case_holds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ds = make_dataset(tmp_path / "d", n_cases=3, labels=LabelLayout(unused=(5,)))
    rep = api.verify(ds, show_progress=False)
    assert rep.label_values == (0, 1, 2)
    (w,) = rep.warnings
    assert "dataset.json" in w.file and "label 5" in w.value and "remove 5" in w.fix
    assert "label 5" in caplog.text


def test_verify_refuses_a_dataset_without_any_foreground(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "d", n_cases=3, labels=LabelLayout(empty_cases=(0, 1, 2)))
    with pytest.raises(DatasetError, match="needs foreground") as err:
        api.verify(ds, show_progress=False)
    assert "every label map is empty" in str(err.value)


def test_empty_case_and_absent_label_are_fingerprinted(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "d", n_cases=6, labels=LAYOUT, seed=3)
    fp, _ = api.fingerprint(ds, tmp_path / "W", show_progress=False)
    by_value = {lab.value: lab for lab in fp.labels}
    assert set(by_value) == {0, 1, 4}
    assert by_value[4].cases_present == 1 and by_value[1].cases_present == 5
    assert sum(1 for c in fp.cases if not set(c.label_voxels) - {"0"}) == 1  # the empty case


# --- end to end --------------------------------------------------------------------------------------------------


def _cfg(path: Path, **kw: object) -> Path:
    cfg = {"epochs": 2, "iterations_per_epoch": 4, "val_iterations": 2, "num_workers": 0, **kw}
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("labels")
    ds = make_dataset(
        root / "data", n_cases=6, shape=(12, 24, 24), spacing=(2.5, 1.0, 1.0), seed=3, labels=LAYOUT
    )
    uri = f"sqlite:///{root / 'mlflow.db'}"
    res = api.train(
        ds,
        root / "W",
        config=_cfg(root / "cfg.yaml"),
        folds=2,
        tracking_uri=uri,
        workers=0,
        show_progress=False,
    )
    return {"root": root, "ds": ds, "uri": uri, "res": res}


@pytest.mark.slow
def test_train_with_epochs_has_finite_counted_means(trained: dict[str, Any]) -> None:
    wd: Path = trained["res"].workdir
    splits = json.loads((wd / "splits.json").read_text())
    # the premise: one validation fold holds no case with label 4
    holders = {"case_005"}
    assert any(not holders & set(f["val"]) for f in splits["folds"])
    assert _json_files_have_no_nan(wd) > 10
    summary = json.loads((wd / "cv" / "summary.json").read_text())
    fg = summary["foreground_mean"]
    assert math.isfinite(fg["dice"]) and fg["n_labels"] >= 1
    assert (
        summary["mean"]["4"]["n_both_empty"] >= 1
    )  # cases without label 4 where none was predicted are counted
    assert summary["mean"]["1"]["n_cases"] == 6
    meta = json.loads((wd / "model.json").read_text())
    assert meta["labels"] == {"0": "background", "1": "large", "4": "small"}
    for f in wd.glob("train/3d_fullres/fold_*/validation/*.nii.gz"):
        assert _labels_of(f) <= {0, 1, 4}


@pytest.mark.slow
def test_mlflow_holds_no_nan(trained: dict[str, Any]) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(trained["uri"])
    exp = client.get_experiment_by_name("Synthetic")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) >= 3
    for r in runs:
        for k, v in r.data.metrics.items():
            assert math.isfinite(v), (r.info.run_name, k)
            for m in client.get_metric_history(r.info.run_id, k):
                assert math.isfinite(m.value), (r.info.run_name, k)
    parent = next(r for r in runs if r.info.run_name.startswith("train-"))
    assert "cv_dice_fg_mean" in parent.data.metrics
    assert "cv_cases_both_empty_small" in parent.data.metrics


@pytest.mark.slow
def test_select_export_predict_keep_label_values(trained: dict[str, Any], tmp_path: Path) -> None:
    wd: Path = trained["res"].workdir
    before = (wd / "model.json").read_bytes()
    del before  # select may record its choice; what matters here is that it completes without NaN
    sel = api.select([wd], tmp_path / "S", tracking_uri=trained["uri"], max_cases=2)
    assert math.isfinite(sel["cv_dice_final"]["foreground_mean"])
    assert _json_files_have_no_nan(tmp_path / "S") >= 1
    exported = api.export(wd, tmp_path / "E", tracking_uri=trained["uri"])
    assert all(p["passed"] for p in exported.report["parity"].values())
    assert _json_files_have_no_nan(tmp_path / "E") >= 1
    images = trained["ds"] / "imagesTr"
    for runtime in ("torch", "auto"):
        out = tmp_path / f"P_{runtime}"
        preds = api.predict(wd, images, out, runtime=runtime, show_progress=False)
        assert len(preds) == 6
        found = set().union(*(_labels_of(p) for p in preds))
        assert found <= {0, 1, 4} and 1 in found


@pytest.mark.slow
def test_train_with_a_budget(tmp_path: Path) -> None:
    ds = make_dataset(
        tmp_path / "data", n_cases=6, shape=(12, 24, 24), spacing=(2.5, 1.0, 1.0), seed=3, labels=LAYOUT
    )
    res = api.train(
        ds,
        tmp_path / "W",
        config=_cfg(tmp_path / "cfg.yaml", epochs=1000),
        budget="25s",
        folds=2,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        workers=0,
        show_progress=False,
        register=False,
    )
    assert _json_files_have_no_nan(res.workdir) > 5
    assert math.isfinite(res.cv_summary["foreground_mean"]["dice"])
    for k in (0, 1):
        prog = json.loads((res.workdir / "train" / "3d_fullres" / f"fold_{k}" / "progress.json").read_text())
        assert prog["schedule"].startswith("budget:")
        assert all(h["val_score_ema"] is not None for h in prog["history"])


SPACE = {
    "schema_version": 1,
    "name": "tiny",
    "fixed": {"epochs": 2, "iterations_per_epoch": 3, "val_iterations": 1, "num_workers": 0},
    "parameters": {"batch_size_scale": {"type": "float", "low": 0.5, "high": 1.0, "default": 1.0}},
}


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["optuna", "ray"])
def test_sweep_completes(engine: str, tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "data", n_cases=6, shape=(12, 24, 24), seed=3, labels=LAYOUT)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    res = api.sweep(
        ds,
        tmp_path / "S",
        space=space,
        trials=2,
        folds=2,
        promote=1,
        engine=engine,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        workers=0,
        show_progress=False,
    )
    assert res.best is not None
    assert _json_files_have_no_nan(tmp_path / "S") > 5
    full = [t for t in (tmp_path / "S" / "trials").iterdir() if (t / "model.json").is_file()]
    assert full, "no trial finished every fold"
    for t in full:
        result = json.loads((t / "result.json").read_text())
        assert math.isfinite(result["score"]) and result["n_folds_done"] == 2


def _ct_crops(root: Path) -> Path:
    """Six overlapping crops of the real TotalSegmentator CT (41 labels with gaps in their IDs): each crop holds a
    different subset of the labels."""
    src = shared("ct_small")
    img = sitk.ReadImage(str(src / "example_ct_sm.nii.gz"))
    seg = sitk.ReadImage(str(src / "example_seg.nii.gz"))
    rows = ["SubjectID,Channel_CT,Label"]
    size = [56, 48, 16]  # x, y, z
    for i, (x, y) in enumerate([(0, 0), (66, 0), (0, 53), (66, 53), (33, 26), (15, 10)]):
        region = [x, y, 7]
        for what, im in (("ct", img), ("seg", seg)):
            crop = sitk.RegionOfInterest(im, size, region)
            sitk.WriteImage(crop, str(root / f"c{i}_{what}.nii.gz"), useCompression=True)
        rows.append(f"c{i},c{i}_ct.nii.gz,c{i}_seg.nii.gz")
    (root / "data.csv").write_text("\n".join(rows) + "\n")
    return root / "data.csv"


@pytest.mark.slow
def test_many_labels_from_real_ct(tmp_path: Path) -> None:
    (tmp_path / "ct").mkdir()
    csv = _ct_crops(tmp_path / "ct")
    rep = api.verify(csv, show_progress=False)
    assert len(rep.label_values) > 30 and max(rep.label_values) > len(rep.label_values)  # gaps in the IDs
    res = api.train(
        csv,
        tmp_path / "W",
        config=_cfg(tmp_path / "cfg.yaml", epochs=1000),
        budget="25s",
        folds=2,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        workers=0,
        show_progress=False,
    )
    summary = res.cv_summary
    assert math.isfinite(summary["foreground_mean"]["dice"])
    assert sum(v["n_both_empty"] for v in summary["mean"].values()) > 0  # labels absent from some crops
    assert _json_files_have_no_nan(res.workdir) > 5
    preds = api.predict(res.workdir, tmp_path / "ct" / "c0_ct.nii.gz", tmp_path / "P", show_progress=False)
    assert _labels_of(preds[0]) <= set(rep.label_values)
