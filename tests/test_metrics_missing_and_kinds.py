"""``automed metrics --missing-value empty``: a missing label map is scored as an empty one (BraTS' habit: Dice 0
and the worst-case distances where the reference holds the label). A number for every metric gave a missing case
HD95 0 mm, ASSD 0 and volume difference 0 with ``--missing-value 0``: perfect distances for a case never
predicted."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from automed import api
from automed.errors import ConfigError, DatasetError


def _write(arr: np.ndarray, path: Path) -> None:
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing((1.0, 1.0, 2.0))
    sitk.WriteImage(img, str(path))


@pytest.fixture()
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Three references (case2's without label 2), predictions of case0 only."""
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    ref_dir.mkdir()
    pred_dir.mkdir()
    for i in range(3):
        ref = np.zeros((6, 12, 12), np.uint8)
        ref[1:5, 2:8, 2:8] = 1
        if i != 2:
            ref[1:5, 4:6, 4:6] = 2
        _write(ref, ref_dir / f"case{i}.nii.gz")
        if i == 0:
            _write(ref, pred_dir / f"case{i}.nii.gz")
    return pred_dir, ref_dir


def test_a_missing_label_map_scores_as_an_empty_one(folders: tuple[Path, Path], tmp_path: Path) -> None:
    pred, ref = folders
    res = api.metrics(pred, tmp_path / "out", reference=ref, missing_value="empty")
    rows = pd.read_csv(res.folder / "metrics.csv").set_index(["case", "label"])
    assert res.summary["n_missing"] == 2 and res.summary["n_cases"] == 3
    assert rows.loc[("case0", 1), "dice"] == 1.0 and not rows.loc[("case0", 1), "missing"]
    missed = rows.loc[("case1", 1)]
    assert missed["missing"] and missed["dice"] == 0.0 and missed["nsd"] == 0.0
    diagonal = math.dist((0, 0, 0), (6 * 2.0, 12 * 1.0, 12 * 1.0))  # the image's diagonal in mm (worst case)
    assert missed["hd95"] == pytest.approx(diagonal, rel=0.05) and missed["assd"] == pytest.approx(
        diagonal, rel=0.05
    )
    assert missed["volume_diff_mm3"] < 0  # all of the reference's volume missed
    # a label the reference lacks, not predicted either: undefined (both empty), not a perfect or a failed score
    both_empty = rows.loc[("case2", 2)]
    assert both_empty["missing"] and pd.isna(both_empty["dice"])
    # the summary's mean Dice counts the missing cases as failures
    assert res.summary["mean"]["1"]["dice"] == pytest.approx(1 / 3)


def test_a_number_still_scores_every_metric_and_empty_is_spelled_as_the_option_says(
    folders: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pred, ref = folders
    with caplog.at_level("WARNING", logger="automed"):
        res = api.metrics(pred, tmp_path / "a", reference=ref, missing_value="0")  # the CLI's text: a number
    rows = pd.read_csv(res.folder / "metrics.csv")
    assert (rows[rows["case"] == "case1"]["hd95"] == 0.0).all()
    assert "2 missing prediction(s) scored 0 for every metric, their distances too" in caplog.text
    assert api.metrics(pred, tmp_path / "b", reference=ref, missing_value=" Empty ").summary["n_missing"] == 2
    with pytest.raises(ConfigError) as err:
        api.metrics(pred, tmp_path / "c", reference=ref, missing_value="blank")
    p = err.value.problems[0]
    assert p.file == "--missing-value" and "'blank'" in p.value and "--missing-value empty" in p.fix
    with pytest.raises(DatasetError) as missing:
        api.metrics(pred, tmp_path / "d", reference=ref)
    assert "--missing-value (empty: scored as an empty label map)" in missing.value.problems[0].fix


def test_empty_is_refused_for_classes_and_values(tmp_path: Path) -> None:
    table = tmp_path / "scores.csv"
    with table.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["SubjectID", "Target", "Prediction"])
        w.writerows([["a", "1.5", "1.4"], ["b", "2.5", ""], ["c", "3.0", "3.2"]])
    with pytest.raises(ConfigError) as err:
        api.metrics(table, tmp_path / "out", missing_value="empty")
    p = err.value.problems[0]
    assert p.file == "--missing-value" and "regression" in p.value and "--missing-value 0" in p.fix
    res = api.metrics(table, tmp_path / "out2", missing_value=2.0)
    assert res.summary["n_cases"] == 3


def test_a_label_map_of_many_structures_is_said_and_named_structures_make_it_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A reference of 80 labels (more than the 64 auto-detection takes for a label map) was scored as a synthesized
    image without a word, and ``--region``/``--labels`` were refused as "a synthesis problem: drop --region"."""
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    ref_dir.mkdir()
    pred_dir.mkdir()
    labels = np.arange(80, dtype=np.uint8).reshape(2, 5, 8).repeat(2, axis=0)
    _write(labels, ref_dir / "c0.nii.gz")
    _write(labels, pred_dir / "c0.nii.gz")
    with caplog.at_level("WARNING", logger="automed"):
        res = api.metrics(pred_dir, tmp_path / "a", reference=ref_dir)
    assert res.kind == "synthesis" and "pass --problem segmentation" in caplog.text
    named = api.metrics(pred_dir, tmp_path / "b", reference=ref_dir, regions=["some=1,2,3"])
    assert named.kind == "segmentation" and named.summary["regions"]["region:some"]["dice"] == 1.0


def test_a_test_set_of_one_class_folder_is_scored(tmp_path: Path) -> None:
    """predict wrote the truth of a one-class folder test set, and metrics refused the same folder as --reference
    ("another folder"): the two commands pointed at each other and neither scored it."""
    from PIL import Image

    (tmp_path / "ref" / "dog").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "ref" / "dog" / f"x{i}.png")
    (tmp_path / "predictions.csv").write_text(
        "SubjectID,prediction,probability_cat,probability_dog\n"
        "dog_x0,dog,0.1,0.9\ndog_x1,cat,0.6,0.4\ndog_x2,dog,0.2,0.8\n"
    )
    s = api.metrics(tmp_path / "predictions.csv", tmp_path / "out", reference=tmp_path / "ref").summary
    assert s["accuracy"] == pytest.approx(2 / 3) and s["classes"] == ["cat", "dog"]
