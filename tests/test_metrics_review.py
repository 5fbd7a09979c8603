"""Metrics review findings: a prediction on a grid a few per cent off (its far voxels voxels away) and a rotated 2D
prediction of a one-slice reference scored as if aligned; a synthesis mask taken voxel for voxel in another
orientation; SSIM over NaN allowed outside the mask; RGB scored on its red channel; a two-voxel axis crashing SSIM;
a Mask column not making a table a synthesis problem."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from automed import api
from automed.errors import DatasetError


def _image(arr: np.ndarray, path: Path, spacing: tuple[float, ...] | None = None, **kw: object) -> Path:
    img = sitk.GetImageFromArray(arr, isVector=bool(kw.pop("vector", False)))
    if spacing is not None:
        img.SetSpacing(spacing)
    for key, value in kw.items():
        getattr(img, f"Set{key}")(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))
    return path


def _table(tmp_path: Path, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> Path:
    table = tmp_path / "in.csv"
    with table.open("w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])
    return table


def test_a_prediction_a_few_per_cent_off_the_grid_is_refused(tmp_path: Path) -> None:
    a = np.zeros((20, 40, 50), np.uint8)
    a[5:15, 10:30, 10:40] = 1
    _image(a, tmp_path / "ref" / "c.nii.gz", (0.7, 0.8, 3.0))
    _image(a, tmp_path / "pred" / "c.nii.gz", (0.76, 0.8, 3.27))
    with pytest.raises(DatasetError, match="lies on its reference's voxel grid"):
        api.metrics(tmp_path / "pred", tmp_path / "out", reference=tmp_path / "ref")
    _image(a, tmp_path / "pred" / "c.nii.gz", (0.7 + 1e-6, 0.8, 3.0))  # header rounding: the same grid
    assert api.metrics(tmp_path / "pred", tmp_path / "ok", reference=tmp_path / "ref").summary


def test_a_2d_prediction_of_a_one_slice_volume_is_matched_only_in_its_plane(tmp_path: Path) -> None:
    a = np.zeros((1, 30, 40), np.uint8)
    a[0, 5:20, 8:30] = 1
    _image(a, tmp_path / "ref" / "c.nii.gz", (0.5, 0.5, 2.0))
    rotated = {"Direction": (-1.0, 0.0, 0.0, -1.0), "Origin": (500.0, -300.0)}
    _image(a[0], tmp_path / "pred" / "c.mha", (2.0, 2.0), **rotated)
    with pytest.raises(DatasetError, match="a picture matched with a one-slice volume"):
        api.metrics(tmp_path / "pred", tmp_path / "out", reference=tmp_path / "ref")
    for f in (tmp_path / "pred").iterdir():
        f.unlink()
    _image(a[0], tmp_path / "pred" / "c.mha", (0.5, 0.5))  # its plane's geometry
    assert api.metrics(tmp_path / "pred", tmp_path / "a", reference=tmp_path / "ref").summary
    (tmp_path / "pred" / "c.mha").unlink()
    _image(a[0], tmp_path / "pred" / "c.png")  # a picture has none of its own
    assert api.metrics(tmp_path / "pred", tmp_path / "b", reference=tmp_path / "ref").summary


def _synthesis(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    ref = rng.normal(100, 20, (12, 24, 28)).astype(np.float32)
    return ref, (ref + rng.normal(0, 5, ref.shape)).astype(np.float32)


def test_a_mask_in_another_orientation_is_put_on_the_reference_grid(tmp_path: Path) -> None:
    ref, pred = _synthesis(np.random.default_rng(0))
    mask = np.zeros(ref.shape, np.uint8)
    mask[2:10, 3:12, 2:9] = 1  # one side of x only: a flip scores another region
    r = _image(ref, tmp_path / "r.nii.gz")
    p = _image(pred, tmp_path / "p.nii.gz")
    m = _image(mask, tmp_path / "m.nii.gz")
    flipped = tmp_path / "m_rps.nii.gz"
    sitk.WriteImage(sitk.DICOMOrient(sitk.ReadImage(str(m)), "RPS"), str(flipped))
    same = api.metrics(_table(tmp_path, [("c", str(r), str(p), str(m))], ("SubjectID", "Target", "Prediction", "Mask")),
                       tmp_path / "a")  # fmt: skip
    other = api.metrics(_table(tmp_path, [("c", str(r), str(p), str(flipped))], ("SubjectID", "Target", "Prediction", "Mask")),
                        tmp_path / "b")  # fmt: skip
    assert same.kind == other.kind == "synthesis"
    assert other.summary["mse"]["mean"] == pytest.approx(same.summary["mse"]["mean"])
    assert other.summary["ssim"]["mean"] == pytest.approx(same.summary["ssim"]["mean"])


def test_nan_outside_the_mask_rgb_channels_and_a_thin_axis_are_scored(tmp_path: Path) -> None:
    from automed.evaluate.synthesis import synthesis_row

    ref, pred = _synthesis(np.random.default_rng(1))
    mask = np.zeros(ref.shape, bool)
    mask[3:9, 5:20, 5:20] = True
    clean = synthesis_row(ref, pred, mask)
    dirty = ref.copy()
    dirty[0] = np.nan  # two slices away from the mask: allowed there
    got = synthesis_row(dirty, pred, mask)
    assert np.isfinite(got["ssim"]) and got["mse"] == clean["mse"]
    # RGB: the green channel inverted is no perfect prediction
    rgb = np.random.default_rng(2).integers(0, 255, (3, 1, 20, 24)).astype(np.float64)
    bad = rgb.copy()
    bad[1] = 255 - bad[1]
    row = synthesis_row(list(rgb), list(bad), None)
    assert row["mse"] > 0 and row["ssim"] < 0.9 and row["ncc"] < 0.9
    assert synthesis_row(list(rgb), list(rgb), None)["ssim"] == pytest.approx(1.0)
    thin = synthesis_row(ref[:2], pred[:2], None)  # two slices: SSIM slice by slice (it had crashed)
    assert 0 < thin["ssim"] < 1


def test_a_mask_column_makes_integer_images_a_synthesis_problem(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    ref = (rng.integers(0, 40, (6, 16, 16)) * 5).astype(np.uint8)  # few integer values: looked like labels
    r = _image(ref, tmp_path / "r.nii.gz")
    p = _image(ref, tmp_path / "p.nii.gz")
    m = _image(np.ones(ref.shape, np.uint8), tmp_path / "m.nii.gz")
    res = api.metrics(_table(tmp_path, [("c", str(r), str(p), str(m))], ("SubjectID", "Target", "Prediction", "Mask")),
                      tmp_path / "o")  # fmt: skip
    assert res.kind == "synthesis" and res.summary["mse"]["mean"] == 0.0


def test_report_refuses_runs_scored_against_other_references(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two metrics outputs whose targets differ on the same case IDs got a Wilcoxon test ("better: A") on different
    ground truths; label maps of other references likewise. The same references still compare."""
    truth = {f"c{i}": 10.5 + 3 * i for i in range(8)}
    rng = np.random.default_rng(4)

    def scored(name: str, shift: float) -> Path:
        rows = [(c, str(t + shift), str(t + rng.normal(0, 2))) for c, t in truth.items()]
        table = tmp_path / f"{name}.csv"
        with table.open("w", newline="") as fh:
            csv.writer(fh).writerows([("SubjectID", "Target", "Prediction"), *rows])
        return api.metrics(table, tmp_path / name).folder

    a, b, other = scored("a", 0.0), scored("b", 0.0), scored("other", 5.0)
    assert api.report([a, b], tmp_path / "R1", log_to_mlflow=False).page.is_file()
    with pytest.raises(
        Exception, match=r"score each case against the same reference.*8 case\(s\) with another target"
    ):
        api.report([a, other], tmp_path / "R2", log_to_mlflow=False)
    # label maps: the same predictions against two references of other volumes
    ref1, ref2, pred = tmp_path / "ref1", tmp_path / "ref2", tmp_path / "pred"
    for k in range(3):
        lab = np.zeros((6, 16, 16), np.uint8)
        lab[1:5, 3 : 9 + k, 3:12] = 1
        _image(lab, ref1 / f"c{k}.nii.gz")
        lab[1:5, 3:5, 3:12] = 0  # a smaller structure in the second reference
        _image(lab, ref2 / f"c{k}.nii.gz")
        _image(lab, pred / f"c{k}.nii.gz")
    m1 = api.metrics(pred, tmp_path / "m1", reference=ref1, regions=["all=1"]).folder
    m2 = api.metrics(pred, tmp_path / "m2", reference=ref2).folder
    with pytest.raises(Exception, match=r"3 case\(s\) with another n_ref"):
        api.report([m1, m2], tmp_path / "R3", log_to_mlflow=False)
    m3 = api.metrics(pred, tmp_path / "m3", reference=ref1).folder
    with caplog.at_level("WARNING", logger="automed"):
        assert api.report([m1, m3], tmp_path / "R4", log_to_mlflow=False).page.is_file()
    assert "the --region rows of m1 are left out" in caplog.text


def test_report_joins_a_label_named_in_one_run_only_and_says_other_tolerances(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The same label scored with --labels (anterior) and without (1) became two structures, no paired test and no
    word; NSD of runs scored at 1 and 2 mm stood side by side unsaid."""
    import json

    ref, pred = tmp_path / "ref", tmp_path / "pred"
    rng = np.random.default_rng(5)
    for k in range(6):
        lab = np.zeros((6, 16, 16), np.uint8)
        lab[1:5, 3:12, 3:12] = 1
        _image(lab, ref / f"c{k}.nii.gz")
        lab[1:5, 3 : 10 + int(rng.integers(0, 3)), 3:12] = 0
        lab[1:5, 3:12, 3 : 4 + k] = 1
        _image(lab, pred / f"c{k}.nii.gz")
    names = tmp_path / "dataset.json"
    names.write_text(json.dumps({"labels": {"0": "background", "1": "anterior"}}))
    named = api.metrics(pred, tmp_path / "named", reference=ref, labels=names).folder
    plain = api.metrics(pred, tmp_path / "plain", reference=ref, tolerance=2.0).folder
    with caplog.at_level("WARNING", logger="automed"):
        res = api.report([named, plain], tmp_path / "R", log_to_mlflow=False)
    assert "label 1 is named 1 and anterior in different runs; compared as anterior" in caplog.text
    assert "NSD was scored at different tolerances (named 1 mm, plain 2 mm)" in caplog.text
    assert [t["name"] for t in res.tests] == ["anterior"]


def test_predictions_matching_no_reference_are_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lab = np.zeros((4, 8, 8), np.uint8)
    lab[1:3, 2:6, 2:6] = 1
    for name in ("c1", "c2"):
        _image(lab, tmp_path / "ref" / f"{name}.nii.gz")
    _image(lab, tmp_path / "pred" / "c1.nii.gz")
    _image(lab, tmp_path / "pred" / "c2_0000.nii.gz")  # misnamed: its case would be missing without a hint
    with caplog.at_level("WARNING", logger="automed"):
        api.metrics(tmp_path / "pred", tmp_path / "o", reference=tmp_path / "ref", missing_value="empty")
    assert "1 prediction(s) match no reference in ref and are not scored: c2_0000.nii.gz" in caplog.text


def test_label_maps_without_any_structure_are_a_clear_error(tmp_path: Path) -> None:
    """Every voxel 0 in every reference and prediction: metrics wrote a 1-byte metrics.csv ("0 cases"), which
    report then refused as a damaged table."""
    for folder in ("ref", "pred"):
        for case in ("a", "b"):
            _image(np.zeros((4, 8, 8), np.uint8), tmp_path / folder / f"{case}.nii.gz")
    with pytest.raises(
        DatasetError, match=r"need a structure in some reference or prediction; found none in any of the 2"
    ):
        api.metrics(tmp_path / "pred", tmp_path / "o", reference=tmp_path / "ref")
    assert not (tmp_path / "o" / "metrics.csv").exists()
