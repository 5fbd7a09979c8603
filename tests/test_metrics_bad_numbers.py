"""``automed metrics`` checks a prediction's numbers before it scores them (each had been scored as given, found by a
review with the commands' own files): a NaN or infinite probability ended in "unexpected error: ValueError: proba
contains NaN"; a probability of -4 (its row summing to 1) gave ECE 1.6; one row without probabilities turned every
row's AUC into a hard-label AUC without a word; a NaN voxel in a predicted label map ended in "cannot convert float
NaN to integer"; a probability map given as the label map was cut to background and scored Dice 0; a synthesized
image with a NaN voxel dropped out of the means while the summary still counted it; and automed metrics' own
metrics.csv given back to it was told to be "automed predict's"."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from automed import api
from automed.errors import DatasetError


def _csv(path: Path, rows: list[list[object]], probs: tuple[str, ...] = ("a", "b")) -> Path:
    columns = ["SubjectID", "Target", "Prediction", *(f"probability_{c}" for c in probs)]
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("bad", ["nan", "inf", "-4", "1.5"])
def test_a_probability_that_is_no_probability_is_refused(tmp_path: Path, bad: str) -> None:
    table = _csv(tmp_path / "s.csv", [["1", "a", "a", bad, "0.5"], ["2", "b", "b", "0.2", "0.8"]])
    with pytest.raises(DatasetError) as err:
        api.metrics(table, tmp_path / "out")
    (p,) = err.value.problems
    assert p.file == f"{table}:2" and "probability_a is a number between 0 and 1" in p.rule and bad in p.value
    assert not (tmp_path / "out").exists()
    ok = _csv(tmp_path / "ok.csv", [["1", "a", "a", "1.0000001", "0"], ["2", "b", "b", "0.2", "0.8"]])
    assert api.metrics(ok, tmp_path / "ok").summary["auc_from"] == "probabilities"  # float rounding: fine


def test_the_reference_route_refuses_a_nan_probability(tmp_path: Path) -> None:
    ref = tmp_path / "ref.csv"
    pd.DataFrame({"SubjectID": ["1", "2"], "ValueToPredict": ["a", "b"]}).to_csv(ref, index=False)
    pred = tmp_path / "p" / "predictions.csv"
    pred.parent.mkdir()
    pd.DataFrame(
        {
            "SubjectID": ["1", "2"],
            "prediction": ["a", "b"],
            "probability_a": [np.nan, 0.1],
            "probability_b": [0.5, 0.9],
        }
    ).to_csv(pred, index=False, na_rep="NaN")
    with pytest.raises(DatasetError, match=r"probability_a is a number between 0 and 1.*'NaN'"):
        api.metrics(pred, tmp_path / "out", reference=ref)


def test_probabilities_on_some_rows_only_are_refused_naming_the_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [["1", "a", "a", "", ""], ["2", "b", "b", "0.2", "0.8"], ["3", "a", "b", "0.4", "0.6"]]
    with pytest.raises(DatasetError) as err:
        api.metrics(_csv(tmp_path / "s.csv", rows), tmp_path / "out")
    (p,) = err.value.problems
    assert p.file.endswith("s.csv:2") and "on every row or on none" in p.rule and "1" in p.value
    # none at all: hard labels, as before; a --missing-value row has none of the model's and is not counted: the
    # table is scored from hard labels, as before, and now said (the filled class need not be a class at all)
    hard = [[r[0], r[1], r[2], "", ""] for r in rows]
    assert api.metrics(_csv(tmp_path / "h.csv", hard), tmp_path / "h").summary["auc_from"] == "hard labels"
    numbered = [["1", "0", "", "", ""], ["2", "1", "1", "0.2", "0.8"], ["3", "0", "1", "0.4", "0.6"]]
    for value, probs in ((0, ("0", "1")), (-1, ("1",))):  # binary with one column; a value that is no class
        table = _csv(tmp_path / f"f{value}.csv", [r[: 3 + len(probs)] for r in numbered], probs)
        with caplog.at_level(logging.WARNING, logger="automed"):
            res = api.metrics(table, tmp_path / f"f{value}", missing_value=value)
        assert res.summary["auc_from"] == "hard labels"
        assert "1 prediction(s) --missing-value filled in have no probabilities" in caplog.text
    names = [["1", "benign", "", "", ""], ["2", "malignant", "malignant", "0.2", "0.8"],
             ["3", "benign", "malignant", "0.4", "0.6"]]  # fmt: skip
    res = api.metrics(
        _csv(tmp_path / "n.csv", names, ("benign", "malignant")), tmp_path / "n", missing_value=0
    )
    assert res.summary["auc_from"] == "hard labels"  # refused before: "no probability_0"


def _image(path: Path, values: np.ndarray) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(values), str(path))
    return path


def _label_folders(tmp_path: Path, prediction: np.ndarray) -> tuple[Path, Path]:
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    ref.mkdir(parents=True)
    pred.mkdir()
    labels = np.zeros((6, 8, 8), np.uint8)
    labels[2:4, 2:6, 2:6] = 1
    _image(ref / "c0.mha", labels)
    _image(pred / "c0.mha", prediction if prediction.shape else labels.astype(np.float32) * prediction)
    return pred, ref


def test_a_label_map_with_nan_or_fractional_voxels_is_refused(tmp_path: Path) -> None:
    nan = np.zeros((6, 8, 8), np.float32)
    nan[2:4, 2:6, 2:6] = np.nan
    pred, ref = _label_folders(tmp_path / "nan", nan)
    with pytest.raises(DatasetError) as err:
        api.metrics(pred, tmp_path / "o1", reference=ref)
    (p,) = err.value.problems
    assert p.file == str(pred / "c0.mha") and "holds finite values" in p.rule and "32 NaN" in p.value
    pred, ref = _label_folders(tmp_path / "frac", np.array(0.45, np.float32))  # a probability map
    with pytest.raises(DatasetError) as err:
        api.metrics(pred, tmp_path / "o2", reference=ref, problem="segmentation")
    (p,) = err.value.problems
    assert "holds whole numbers" in p.rule and "32 voxel(s) such as 0.45" in p.value and "argmax" in p.fix
    pred, ref = _label_folders(
        tmp_path / "whole", np.array(1.0, np.float32)
    )  # whole numbers stored as floats
    res = api.metrics(pred, tmp_path / "o3", reference=ref)
    assert res.kind == "segmentation" and res.summary["foreground_mean"]["dice"] == pytest.approx(1.0)


def test_a_synthesized_image_with_a_nan_voxel_is_refused_unless_masked_out(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    _image(tmp_path / "ref.mha", rng.normal(100, 20, (6, 16, 16)).astype(np.float32))
    values = rng.normal(100, 20, (6, 16, 16)).astype(np.float32)
    values[0, 0, 0] = np.nan
    pred = _image(tmp_path / "pred.mha", values)
    mask = np.ones((6, 16, 16), np.uint8)
    mask[0] = 0
    _image(tmp_path / "mask.mha", mask)
    table = tmp_path / "s.csv"
    pd.DataFrame({"SubjectID": ["c0"], "Target": ["ref.mha"], "Prediction": ["pred.mha"]}).to_csv(
        table, index=False
    )
    with pytest.raises(DatasetError) as err:
        api.metrics(table, tmp_path / "o1")
    (p,) = err.value.problems
    assert p.file == str(pred) and "holds finite values" in p.rule and "1 NaN" in p.value and "Mask" in p.fix
    masked = tmp_path / "m.csv"
    pd.DataFrame(
        {"SubjectID": ["c0"], "Target": ["ref.mha"], "Prediction": ["pred.mha"], "Mask": ["mask.mha"]}
    ).to_csv(masked, index=False)
    res = api.metrics(masked, tmp_path / "o2")
    assert res.kind == "synthesis" and res.summary["psnr"]["mean"] is not None


def test_metrics_own_output_is_not_called_automed_predicts(tmp_path: Path) -> None:
    table = _csv(tmp_path / "s.csv", [["1", "a", "a", "0.9", "0.1"], ["2", "b", "b", "0.2", "0.8"]])
    res = api.metrics(table, tmp_path / "out")
    with pytest.raises(DatasetError) as err:
        api.metrics(res.folder / "metrics.csv", tmp_path / "again")
    (p,) = err.value.problems
    assert "is what automed metrics wrote" in p.fix and "automed predict" not in p.fix
