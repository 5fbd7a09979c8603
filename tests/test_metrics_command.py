"""``automed metrics``: label maps from two folders (labels, regions, missing predictions), classes and values
from a CSV, checked against hand-computed values and scikit-learn; outputs never land in the inputs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from sklearn.metrics import accuracy_score, mean_absolute_error, r2_score, roc_auc_score

from automed import api
from automed.errors import ArtifactError, ConfigError, DatasetError


def _write(arr: np.ndarray, path: Path, spacing: tuple[float, float, float] = (0.5, 1.0, 2.0)) -> None:
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))


@pytest.fixture()
def folders(tmp_path: Path) -> tuple[Path, Path]:
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    ref_dir.mkdir()
    pred_dir.mkdir()
    for i in range(3):
        ref = np.zeros((6, 12, 12), np.uint8)
        ref[1:5, 2:8, 2:8] = 1
        ref[1:5, 4:6, 4:6] = 2
        pred = ref.copy()
        pred[1:5, 2:8, 7:8] = 0 if i == 0 else 1  # case 0 misses one column of label 1
        _write(ref, ref_dir / f"case{i}.nii.gz")
        _write(pred, pred_dir / f"case{i}.nii.gz")
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "outer": 1, "core": 2}}))
    return pred_dir, ref_dir


def test_folders_score_labels_and_regions(folders: tuple[Path, Path], tmp_path: Path) -> None:
    pred, ref = folders
    res = api.metrics(
        pred, tmp_path / "out", reference=ref, labels=tmp_path / "dataset.json", regions=["whole=1,2"]
    )
    assert res.kind == "segmentation"
    rows = pd.read_csv(res.folder / "metrics.csv")
    assert set(rows["label"]) == {"1", "2", "region:whole"} and set(rows["name"]) == {
        "outer",
        "core",
        "whole",
    }
    c0 = rows[(rows["case"] == "case0") & (rows["label"] == "1")].iloc[0]
    n_ref = 4 * 36 - 4 * 4  # label 1 without the core
    n_pred = (
        n_ref - 4 * 6 + 4 * 0
    )  # one column of 6 voxels x 4 slices removed (the core is not in that column)
    assert c0["dice"] == pytest.approx(2 * n_pred / (n_ref + n_pred))
    assert c0["precision"] == 1.0 and c0["volume_diff_mm3"] == pytest.approx((n_pred - n_ref) * 1.0)
    whole = rows[(rows["case"] == "case1") & (rows["label"] == "region:whole")].iloc[0]
    assert whole["dice"] == 1.0 and whole["assd"] == 0.0
    s = json.loads((res.folder / "summary.json").read_text())
    assert s["problem"] == "segmentation" and s["n_cases"] == 3 and s["n_missing"] == 0
    assert s["mean"]["2"]["dice"] == 1.0 and s["regions"]["region:whole"]["n_cases"] == 3
    assert s["definitions"]["assd"] and s["nsd_tolerance_mm"] == 1.0


def test_missing_predictions_are_listed_or_scored(folders: tuple[Path, Path], tmp_path: Path) -> None:
    pred, ref = folders
    (pred / "case1.nii.gz").unlink()
    (pred / "case2.nii.gz").unlink()
    with pytest.raises(DatasetError) as err:
        api.metrics(pred, tmp_path / "out", reference=ref)
    assert [p.value for p in err.value.problems] == ["case1", "case2"]
    assert "--missing-value" in err.value.problems[0].fix
    assert not (tmp_path / "out").exists()  # refused before anything was written
    res = api.metrics(pred, tmp_path / "out", reference=ref, missing_value=0.0)
    rows = pd.read_csv(res.folder / "metrics.csv")
    assert (rows[rows["case"] == "case1"]["dice"] == 0.0).all() and res.summary["n_missing"] == 2


def test_outputs_never_land_in_the_inputs(folders: tuple[Path, Path]) -> None:
    pred, ref = folders
    before = sorted(p.name for p in ref.iterdir())
    for out in (ref, pred.parent):  # the references themselves, or a folder holding the predictions
        with pytest.raises(ArtifactError, match="must not be, or hold"):
            api.metrics(pred, out, reference=ref, overwrite=True)
    assert sorted(p.name for p in ref.iterdir()) == before


def test_mismatched_geometry_names_the_file(folders: tuple[Path, Path], tmp_path: Path) -> None:
    pred, ref = folders
    _write(np.zeros((6, 12, 10), np.uint8), pred / "case2.nii.gz")
    with pytest.raises(DatasetError) as err:
        api.metrics(pred, tmp_path / "out", reference=ref)
    p = err.value.problems[0]
    assert p.file.endswith("case2.nii.gz") and "voxel grid" in p.rule and "size (10, 12, 6)" in p.value


def test_the_same_voxels_in_another_orientation_are_matched_and_another_place_refused(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    """A prediction stored flipped and transposed with its affine adjusted is the same mask (Dice 1); the same
    array under a mirrored affine lies elsewhere in space (an error, not Dice 1)."""
    pred, ref = folders
    img = sitk.ReadImage(str(ref / "case1.nii.gz"))
    moved = sitk.DICOMOrient(sitk.PermuteAxes(img, [1, 0, 2]), "RAI")  # other axis order and directions
    assert moved.GetDirection() != img.GetDirection()
    sitk.WriteImage(moved, str(pred / "case1.nii.gz"))
    res = api.metrics(pred, tmp_path / "out", reference=ref)
    rows = pd.read_csv(res.folder / "metrics.csv")
    assert (rows[rows["case"] == "case1"]["dice"] == 1.0).all()
    mirrored = sitk.ReadImage(str(ref / "case1.nii.gz"))
    mirrored.SetDirection((-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(mirrored, str(pred / "case1.nii.gz"))
    with pytest.raises(DatasetError, match="voxel grid"):
        api.metrics(pred, tmp_path / "out2", reference=ref)


def test_a_label_only_predictions_hold_is_scored_or_named(folders: tuple[Path, Path], tmp_path: Path) -> None:
    pred, ref = folders
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(pred / "case1.nii.gz")))
    arr[5, 10:12, 10:12] = 3
    _write(arr, pred / "case1.nii.gz")
    res = api.metrics(pred, tmp_path / "out", reference=ref)
    rows = pd.read_csv(res.folder / "metrics.csv")
    three = rows[rows["label"] == 3]
    assert len(three) == 3  # every case gets the label's row
    assert three[three["case"] == "case1"]["dice"].iloc[0] == 0.0  # predicted where the reference has none
    assert res.summary["foreground_mean"]["dice"] < 1.0
    res = api.metrics(pred, tmp_path / "out2", reference=ref, labels=tmp_path / "dataset.json")
    assert res.summary["unscored_prediction_labels"] == [3]
    assert "unscored_reference_labels" not in res.summary


def test_a_reference_label_left_out_of_labels_is_named(
    folders: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A structure of the references that --labels does not name is not scored, and said (it passed silently:
    a missed structure was not counted, and nothing told)."""
    pred, ref = folders
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(ref / "case1.nii.gz")))
    arr[5, 10:12, 10:12] = 3
    _write(arr, ref / "case1.nii.gz")
    res = api.metrics(pred, tmp_path / "out", reference=ref, labels=tmp_path / "dataset.json")
    assert res.summary["unscored_reference_labels"] == [3] and "unscored_prediction_labels" not in res.summary
    assert "references hold label value(s) [3] that --labels does not name: not scored" in caplog.text
    res = api.metrics(
        pred, tmp_path / "out2", reference=ref, labels=tmp_path / "dataset.json", regions=["all=1,2,3"]
    )
    assert "unscored_reference_labels" not in res.summary  # a region scores it


def test_classes_from_a_csv_match_scikit_learn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    p1 = np.clip(y * 0.6 + rng.random(40) * 0.5, 0, 1)
    names = np.array(["normal", "pneumonia"])
    pred = names[(p1 > 0.5).astype(int)]
    csv = tmp_path / "scores.csv"
    pd.DataFrame(
        {"SubjectID": [f"c{i}" for i in range(40)], "Target": names[y], "Prediction": pred,
         "probability_normal": 1 - p1, "probability_pneumonia": p1}
    ).to_csv(csv, index=False)  # fmt: skip
    res = api.metrics(csv, tmp_path / "out")
    s = res.summary
    assert res.kind == "classification" and s["auc_from"] == "probabilities"
    assert s["accuracy"] == pytest.approx(accuracy_score(names[y], pred))
    assert s["auc_macro"] == pytest.approx(roc_auc_score(y, p1))
    assert s["confusion_matrix"][1][1] == int(((pred == "pneumonia") & (y == 1)).sum())
    rows = pd.read_csv(res.folder / "metrics.csv")
    assert rows["correct"].sum() == int((pred == names[y]).sum())
    # decisions from a tuned threshold: the Prediction column counts for accuracy and confusion, the
    # probabilities for AUC; one probability column of two classes gets its complement
    tuned = names[(p1 > 0.7).astype(int)]
    pd.DataFrame(
        {"SubjectID": [f"c{i}" for i in range(40)], "Target": names[y], "Prediction": tuned,
         "probability_pneumonia": p1}
    ).to_csv(csv, index=False)  # fmt: skip
    s = api.metrics(csv, tmp_path / "out2").summary
    assert s["accuracy"] == pytest.approx(accuracy_score(names[y], tuned))
    assert s["confusion_matrix"][0][0] == int(((tuned == "normal") & (y == 0)).sum())
    assert s["auc_macro"] == pytest.approx(roc_auc_score(y, p1))
    rows = pd.read_csv(tmp_path / "out2" / "metrics.csv")
    assert rows["correct"].sum() == round(s["accuracy"] * 40)
    assert s["rows_whose_probabilities_do_not_sum_to_1"] == 0
    # three classes: a predicted class without its probability column is refused (its AUC would be from zeros)
    three = pd.DataFrame(
        {"SubjectID": ["a", "b", "c"], "Target": ["x", "y", "z"], "Prediction": ["x", "y", "z"],
         "probability_x": [0.9, 0.1, 0.2], "probability_y": [0.1, 0.9, 0.8]}
    )  # fmt: skip
    three.to_csv(csv, index=False)
    with pytest.raises(DatasetError, match="no probability_z"):
        api.metrics(csv, tmp_path / "out3")
    three.assign(probability_z=[0.3, 0.3, 0.3]).to_csv(csv, index=False)
    assert api.metrics(csv, tmp_path / "out4").summary["rows_whose_probabilities_do_not_sum_to_1"] == 3
    assert "3 row(s) have probabilities that do not sum to 1" in caplog.text


def test_every_problem_type_has_a_scorer_and_a_headline() -> None:
    """automed metrics looks the problem up (no branch per type): each type the option accepts has its scorer."""
    from automed.evaluate.compare import KINDS
    from automed.evaluate.problems import PROBLEMS

    assert set(PROBLEMS) == set(KINDS)
    assert PROBLEMS["regression"].headline({"n_cases": 2, "mae": 1.0, "rmse": 2.0, "r2": float("nan")}) == (
        "2 cases, MAE 1.0000, RMSE 2.0000, R2 n/a"
    )


def test_values_from_a_csv_match_scikit_learn(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    t = rng.normal(3000, 400, 30)
    p = t + rng.normal(0, 150, 30)
    csv = tmp_path / "volumes.csv"
    pd.DataFrame({"SubjectID": [f"c{i}" for i in range(30)], "Target": t, "Prediction": p}).to_csv(
        csv, index=False
    )
    res = api.metrics(csv, tmp_path / "out")
    assert res.kind == "regression"
    assert res.summary["mae"] == pytest.approx(mean_absolute_error(t, p))
    assert res.summary["r2"] == pytest.approx(r2_score(t, p))


def test_predict_table_is_scored_against_the_cases_csv(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """automed predict's predictions.csv (SubjectID, prediction, probability_<class>) against the dataset CSV the
    images came from (SubjectID, Channel_0, ValueToPredict), matched by SubjectID in any row order."""
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 20)
    p1 = np.clip(y * 0.5 + rng.random(20) * 0.6, 0, 1)
    names = np.array(["normal", "pneumonia"])
    ids = [f"c{i}" for i in range(20)]
    cases = tmp_path / "test_cases.csv"
    pd.DataFrame(
        {"SubjectID": ids, "Channel_0": [f"img/{i}.png" for i in ids], "ValueToPredict": names[y]}
    ).to_csv(cases, index=False)
    pred = pd.DataFrame({"SubjectID": [*ids, "extra"], "prediction": [*names[(p1 > 0.5).astype(int)], "normal"],
                         "probability_normal": [*(1 - p1), 1.0], "probability_pneumonia": [*p1, 0.0]})  # fmt: skip
    table = tmp_path / "out" / "predictions.csv"
    table.parent.mkdir()
    pred.iloc[::-1].to_csv(table, index=False)
    with caplog.at_level("WARNING", logger="automed"):
        s = api.metrics(table, tmp_path / "scores", reference=cases).summary
    assert s["problem"] == "classification" and s["n_cases"] == 20
    assert s["accuracy"] == pytest.approx(accuracy_score(names[y], names[(p1 > 0.5).astype(int)]))
    assert s["auc_macro"] == pytest.approx(roc_auc_score(y, p1))
    assert "1 prediction(s) of cases test_cases.csv does not list" in caplog.text
    # a missing prediction is named (or scored with --missing-value); values against ValueToPredict
    pred.iloc[1:].to_csv(table, index=False)
    with pytest.raises(DatasetError, match="c0"):
        api.metrics(table, tmp_path / "scores2", reference=cases)
    t = rng.normal(50, 10, 20)
    pd.DataFrame({"SubjectID": ids, "Channel_0": ids, "ValueToPredict": t}).to_csv(cases, index=False)
    pd.DataFrame({"SubjectID": ids, "prediction": t + 1}).to_csv(table, index=False)
    s = api.metrics(table, tmp_path / "scores3", reference=cases).summary
    assert s["problem"] == "regression" and s["mae"] == pytest.approx(1.0)
    # integer classes a spreadsheet wrote as 1.0 / 0.0 are the classes 1 / 0 of the model's table
    pd.DataFrame({"SubjectID": ids, "Channel_0": ids, "ValueToPredict": y.astype(float)}).to_csv(
        cases, index=False
    )
    pd.DataFrame({"SubjectID": ids, "prediction": (p1 > 0.5).astype(int), "probability_0": 1 - p1,
                  "probability_1": p1}).to_csv(table, index=False)  # fmt: skip
    s = api.metrics(table, tmp_path / "scores_int", reference=cases).summary
    assert s["problem"] == "classification" and s["auc_macro"] == pytest.approx(roc_auc_score(y, p1))
    # the table alone says what to add; a reference folder for a table is refused
    with pytest.raises(DatasetError, match=r"--reference DATASET\.csv"):
        api.metrics(table, tmp_path / "scores4")
    with pytest.raises(ConfigError, match="a reference CSV"):
        api.metrics(table, tmp_path / "scores5", reference=tmp_path)
    pd.DataFrame({"SubjectID": ids, "Channel_0": ids}).to_csv(cases, index=False)
    with pytest.raises(DatasetError, match="ValueToPredict"):
        api.metrics(table, tmp_path / "scores6", reference=cases)


def test_cli_verb_prints_the_headline(
    folders: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The console script prints the headline and the cases' progress; a malformed --region is one message and exit
    status 1 (the console entry point in this process: one interpreter start-up is enough to test the script)."""
    from automed import cli

    pred, ref = folders
    r = subprocess.run(
        [sys.executable, "-m", "automed.cli", "metrics", str(pred), "--reference", str(ref), "-o", str(tmp_path / "o"),
         "--region", "whole=1,2"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "segmentation: 3 cases, foreground mean Dice" in " ".join(r.stdout.split())
    assert re.search(
        r"metrics .*3/3", r.stdout + r.stderr
    )  # the cases' progress (its final line off a terminal)
    monkeypatch.setattr(cli, "handle_sigterm", lambda: None)  # leave pytest's own SIGTERM handling alone
    monkeypatch.setattr(
        sys, "argv",
        ["automed", "metrics", str(pred), "--reference", str(ref), "-o", str(tmp_path / "p"), "--region", "whole"],
    )  # fmt: skip
    with pytest.raises(SystemExit) as bad:
        cli.main()
    shown = capsys.readouterr()
    assert bad.value.code == 1 and "NAME=LABEL" in shown.out + shown.err


def test_synthesized_images_inside_a_mask_match_scikit_image(tmp_path: Path) -> None:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = np.random.default_rng(2)
    ref = rng.normal(100, 20, (8, 24, 24)).astype(np.float32)
    pred = ref + rng.normal(0, 5, ref.shape).astype(np.float32)
    mask = np.zeros(ref.shape, np.uint8)
    mask[2:6, 4:20, 4:20] = 1
    paths = {}
    for name, arr in (("ref", ref), ("pred", pred), ("mask", mask)):
        img = sitk.GetImageFromArray(arr)
        sitk.WriteImage(img, str(tmp_path / f"{name}.nii.gz"))
        paths[name] = f"{name}.nii.gz"
    csv = tmp_path / "synth.csv"
    csv.write_text(f"SubjectID,Target,Prediction,Mask\nc0,{paths['ref']},{paths['pred']},{paths['mask']}\n")
    res = api.metrics(csv, tmp_path / "out")
    assert res.kind == "synthesis"
    row = pd.read_csv(res.folder / "metrics.csv").iloc[0]
    inside = mask.astype(bool)
    span = float(ref[inside].max() - ref[inside].min())
    assert row["mse"] == pytest.approx(float(np.mean((ref[inside] - pred[inside]) ** 2)), rel=1e-5)
    assert row["psnr"] == pytest.approx(
        peak_signal_noise_ratio(ref[inside], pred[inside], data_range=span), rel=1e-5
    )
    _, smap = structural_similarity(
        ref.astype(np.float64), pred.astype(np.float64), data_range=span, full=True, win_size=7
    )
    assert row["ssim"] == pytest.approx(float(smap[inside].mean()), rel=1e-6)
    assert row["ncc"] == pytest.approx(float(np.corrcoef(ref[inside], pred[inside])[0, 1]), rel=1e-6)
    assert res.summary["psnr"]["mean"] == pytest.approx(row["psnr"])


def test_a_bad_csv_lists_every_row_problem_with_its_row(tmp_path: Path) -> None:
    csv = tmp_path / "scores.csv"
    csv.write_text(
        "\ufeffSubjectID,Target,Prediction,probability_one\n"  # Excel's byte-order mark is not a column name
        "a,1,1,0.9\n"
        "b,,0,0.2\n"  # no target
        "c,0\n"  # a short row
        "a,0,0,high\n"  # a repeated SubjectID and a probability that is not a number
        "d,nan,1,0.5\n"
    )
    with pytest.raises(DatasetError) as err:
        api.metrics(csv, tmp_path / "out")
    where = sorted((p.file.rsplit(":", 1)[1], p.rule) for p in err.value.problems)
    assert [w for w, _ in where] == ["3", "4", "5", "5", "6"], where
    assert any("once" in r for _, r in where) and any("between 0 and 1" in r for _, r in where)
    assert not (tmp_path / "out").exists()
    csv.write_text("\ufeffSubjectID,Target,Prediction\na,1.5,1.0\nb,2.5,2.0\nc,3.5,3.0\nd,0.5,0.7\n")
    assert api.metrics(csv, tmp_path / "out").kind == "regression"  # the mark dropped, the CSV scores


def test_folder_mode_takes_images_only_and_bad_labels_are_named(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    from automed.errors import ConfigError

    pred_dir, ref_dir = folders
    np.savez(pred_dir / "case0.npz", probabilities=np.zeros(3))  # what predict --save-probabilities adds
    res = api.metrics(pred_dir, tmp_path / "out", reference=ref_dir)
    assert res.kind == "segmentation"
    (tmp_path / "bad.json").write_text('{"name": "x"}')
    with pytest.raises(ConfigError, match="'labels' mapping"):
        api.metrics(pred_dir, tmp_path / "out2", reference=ref_dir, labels=tmp_path / "bad.json")
    with pytest.raises(DatasetError, match="must exist"):
        api.metrics(pred_dir, tmp_path / "out3", reference=tmp_path / "nowhere")


def test_predict_table_is_scored_against_a_folder_per_class_test_set(tmp_path: Path) -> None:
    """A README audit: `automed predict MODEL -i test/ -o out` on a folder-per-class test set (`test/<class>/<images>`,
    cases `<class>_<file stem>`) could not be scored: --reference test/ was refused ("found a folder") and the user
    had to write a CSV of what the folders already say. The class folders are now a reference of their own."""
    test = tmp_path / "test"
    truth = {
        "normal_a 1": "normal",
        "normal_b": "normal",
        "pneumonia_c": "pneumonia",
        "pneumonia_d": "pneumonia",
    }
    for cid, name in truth.items():
        (test / name).mkdir(parents=True, exist_ok=True)
        stem = cid.split("_", 1)[1]
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8), np.uint8)), str(test / name / f"{stem}.png"))
    ids = ["normal_a_1", "normal_b", "pneumonia_c", "pneumonia_d"]  # as training names them: made safe
    table = tmp_path / "out" / "predictions.csv"
    table.parent.mkdir()
    pd.DataFrame({"SubjectID": ids, "prediction": ["normal", "pneumonia", "pneumonia", "pneumonia"],
                  "probability_normal": [0.9, 0.4, 0.2, 0.1], "probability_pneumonia": [0.1, 0.6, 0.8, 0.9]}
                 ).to_csv(table, index=False)  # fmt: skip
    s = api.metrics(table, tmp_path / "scores", reference=test).summary
    assert s["problem"] == "classification" and s["n_cases"] == 4
    assert s["accuracy"] == pytest.approx(0.75) and s["auc_macro"] == pytest.approx(1.0)
    rows = pd.read_csv(tmp_path / "scores" / "metrics.csv")
    assert dict(zip(rows["case"], rows["target"], strict=True)) == dict(zip(ids, truth.values(), strict=True))
    # a folder that is not one of class folders (label maps, say) is still refused, naming both kinds
    labels = tmp_path / "labelsTr"
    labels.mkdir()
    with pytest.raises(ConfigError, match="a folder-per-class test set"):
        api.metrics(table, tmp_path / "scores2", reference=labels)


def test_predictions_sharing_no_case_id_with_the_references_are_refused_even_with_missing_value(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    """Predictions named by their images (``t000`` ...) against a CSV of other SubjectIDs (``patient_00`` ...) were
    "every reference needs a prediction. Fix: predict it, or pass --missing-value", and with --missing-value every
    case was scored as missing: now one error names both sets of IDs and how to make them meet."""
    ids = [f"patient_{i}" for i in range(4)]
    cases = tmp_path / "cases.csv"
    pd.DataFrame({"SubjectID": ids, "Channel_0": [f"img/t{i}.png" for i in range(4)],
                  "ValueToPredict": ["a", "b", "a", "b"]}).to_csv(cases, index=False)  # fmt: skip
    table = tmp_path / "p" / "predictions.csv"
    table.parent.mkdir()
    pd.DataFrame({"SubjectID": [f"t{i}" for i in range(4)], "prediction": ["a", "a", "b", "b"]}).to_csv(
        table, index=False
    )
    for missing in (None, 0.0):
        with pytest.raises(DatasetError) as err:
            api.metrics(table, tmp_path / "s", reference=cases, missing_value=missing)
        (p,) = err.value.problems
        assert "share no case ID" in p.rule and "patient_0" in p.value and "t0" in p.value
        assert "automed predict MODEL -i cases.csv" in p.fix and not (tmp_path / "s").exists()
    pred, ref = folders
    for f in sorted(pred.iterdir()):
        f.rename(pred / f"pred_{f.name}")
    with pytest.raises(DatasetError, match=r"share no case ID.*case0.*pred_case0.*name each prediction"):
        api.metrics(pred, tmp_path / "s", reference=ref, missing_value=0.0)


def test_a_predictions_table_of_class_folders_alone_is_told_to_take_those_folders(tmp_path: Path) -> None:
    """predict over DIR/<class>/<images> writes a truth column; scored alone it was told to pass a DATASET.csv,
    which such a user does not have: the fix now names the class folders it was predicted from."""
    table = tmp_path / "predictions.csv"
    pd.DataFrame({"SubjectID": ["a_1", "b_1"], "truth": ["a", "b"], "prediction": ["a", "a"]}).to_csv(
        table, index=False
    )
    with pytest.raises(DatasetError, match=r"--reference DIR.*DIR/<class>/<images>"):
        api.metrics(table, tmp_path / "s")


def test_label_map_options_for_classes_or_values_are_refused_not_ignored(tmp_path: Path) -> None:
    """``--region`` and ``--labels`` given for a table of classes were silently ignored."""
    table = tmp_path / "scored.csv"
    pd.DataFrame({"SubjectID": ["a", "b"], "Target": ["x", "y"], "Prediction": ["x", "x"]}).to_csv(
        table, index=False
    )
    (tmp_path / "dataset.json").write_text('{"labels": {"0": "background", "1": "liver"}}')
    for given, option in (
        ({"regions": ["whole=1,2"]}, "--region"),
        ({"labels": tmp_path / "dataset.json"}, "--labels"),
    ):
        with pytest.raises(
            ConfigError, match=rf"{option}: {option} names structures of label maps.*classification"
        ):
            api.metrics(table, tmp_path / "s", **given)  # type: ignore[arg-type]
        assert not (tmp_path / "s").exists()
