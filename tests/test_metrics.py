"""Metrics against hand-computed cases and the real spleen masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from automed.evaluate.metrics import label_metrics
from automed.evaluate.summary import metrics_rows, summarize
from tests.conftest import shared


def test_overlap_by_hand() -> None:
    ref = np.zeros((1, 4, 4), bool)
    pred = np.zeros((1, 4, 4), bool)
    ref[0, :2, :2] = True  # 4 voxels
    pred[0, :2, :3] = True  # 6 voxels, 4 overlap
    m = label_metrics(ref, pred, (1.0, 1.0, 1.0))
    assert (m.tp, m.fp, m.fn) == (4, 2, 0)
    assert m.dice == pytest.approx(8 / 10) and m.iou == pytest.approx(4 / 6) and m.sensitivity == 1.0


def test_surface_distances_by_hand() -> None:
    # two single-voxel-thick planes 3 voxels apart along an axis with 2 mm spacing: every border distance is 6 mm
    ref = np.zeros((10, 5, 5), bool)
    pred = np.zeros((10, 5, 5), bool)
    ref[2] = True
    pred[5] = True
    m = label_metrics(ref, pred, (2.0, 1.0, 1.0), tau=5.0)
    assert m.hd95 == pytest.approx(6.0)
    assert m.nsd == 0.0
    assert label_metrics(ref, pred, (2.0, 1.0, 1.0), tau=6.0).nsd == 1.0
    same = label_metrics(ref, ref, (2.0, 1.0, 1.0))
    assert same.dice == 1.0 and same.hd95 == 0.0 and same.nsd == 1.0


def test_empty_masks_are_explicit() -> None:
    e = np.zeros((4, 4, 4), bool)
    f = e.copy()
    f[1, 1, 1] = True
    both = label_metrics(e, e, (1.0, 1.0, 1.0))
    assert math.isnan(both.dice) and math.isnan(both.hd95)
    missed = label_metrics(f, e, (1.0, 1.0, 2.0))
    assert missed.dice == 0 and missed.sensitivity == 0 and missed.nsd == 0
    assert missed.hd95 == pytest.approx(math.sqrt(4**2 + 4**2 + 8**2))  # worst case: the image diagonal
    spurious = label_metrics(e, f, (1.0, 1.0, 1.0))
    assert spurious.dice == 0 and math.isnan(spurious.sensitivity)


def test_summary_excludes_both_empty_and_counts_them() -> None:
    e = np.zeros((4, 4, 4), bool)
    f = e.copy()
    f[1:3, 1:3, 1:3] = True
    rows = metrics_rows(
        "a", 0, {1: label_metrics(f, f, (1, 1, 1)), 2: label_metrics(e, e, (1, 1, 1))}, {1: "x"}
    )
    rows += metrics_rows(
        "b", 0, {1: label_metrics(f, e, (1, 1, 1)), 2: label_metrics(e, e, (1, 1, 1))}, {1: "x"}
    )
    s = summarize(rows)
    assert s["mean"]["1"]["dice"] == pytest.approx(0.5) and s["mean"]["1"]["n_missed_or_spurious"] == 1
    assert s["mean"]["2"]["n_both_empty"] == 2 and math.isnan(s["mean"]["2"]["dice"])
    assert s["foreground_mean"]["dice"] == pytest.approx(0.5)


def test_spleen_masks_dice() -> None:
    d = shared("masks")
    a = sitk.ReadImage(str(d / "spleen1_label_gt.nii.gz"))
    b = sitk.ReadImage(str(d / "spleen1_label_auto.nii.gz"))
    spacing = tuple(reversed(a.GetSpacing()))
    m = label_metrics(sitk.GetArrayFromImage(a) > 0, sitk.GetArrayFromImage(b) > 0, spacing)
    assert m.dice == pytest.approx(0.887, abs=5e-4)
    assert 0 < m.hd95 < 50 and 0 < m.nsd < 1


def test_2d_surfaces_are_in_plane() -> None:
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 32, xx - 32)
    ref, pred = (r <= 10)[None], (r <= 12)[None]  # 2D images stored as (1, y, x)
    m = label_metrics(ref, pred, (1.0, 1.0, 1.0))
    assert m.hd95 == pytest.approx(2.0, abs=0.5)


def test_cube_evaluate_scores_foreground_labels_only() -> None:
    from automed.runtime.entry import dice_per_label

    ref = np.zeros((4, 4), dtype=np.uint8)
    ref[:2, :2] = 1
    pred = np.zeros_like(ref)
    pred[:2, :1] = 1  # half of label 1
    pred[3, 3] = 2  # label 2 only in the prediction
    scores = dice_per_label(pred, ref)
    assert scores == {
        "1": pytest.approx(2 * 2 / (2 + 4)),
        "2": 0.0,
    }  # no "0" (it bound as a | (b - {0}) before)
    assert dice_per_label(ref, ref) == {"1": 1.0}


def _border_points(mask: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Border voxels (6-neighbourhood) as millimetre coordinates, found without automed's code."""
    from scipy import ndimage

    border = mask & ~ndimage.binary_erosion(mask, ndimage.generate_binary_structure(mask.ndim, 1))
    return np.argwhere(border) * np.asarray(spacing)


def _assd_brute_force(ref: np.ndarray, pred: np.ndarray, spacing: tuple[float, ...]) -> float:
    from scipy.spatial import cKDTree

    a, b = _border_points(ref, spacing), _border_points(pred, spacing)
    d_ab, _ = cKDTree(b).query(a)
    d_ba, _ = cKDTree(a).query(b)
    return float((d_ab.sum() + d_ba.sum()) / (len(d_ab) + len(d_ba)))


def test_precision_assd_and_volumes_against_hand_and_scipy() -> None:
    ref = np.zeros((8, 10, 10), bool)
    ref[2:6, 2:6, 2:6] = True
    pred = np.zeros_like(ref)
    pred[2:6, 2:6, 3:7] = True  # shifted by one voxel along x
    spacing = (2.0, 1.0, 0.5)
    m = label_metrics(ref, pred, spacing)
    assert m.precision == pytest.approx(48 / 64) and m.sensitivity == pytest.approx(48 / 64)
    assert m.volume_ref_mm3 == pytest.approx(64 * 1.0) and m.volume_diff_mm3 == 0.0
    assert m.assd == pytest.approx(_assd_brute_force(ref, pred, spacing))
    empty = label_metrics(ref, np.zeros_like(ref), spacing)
    assert math.isnan(empty.precision) and empty.assd == empty.hd95 and empty.volume_diff_mm3 == -64.0


def test_spleen_masks_assd_against_scipy() -> None:
    d = shared("masks")
    a = sitk.ReadImage(str(d / "spleen1_label_gt.nii.gz"))
    b = sitk.ReadImage(str(d / "spleen1_label_auto.nii.gz"))
    spacing = tuple(reversed(a.GetSpacing()))
    ref, pred = sitk.GetArrayFromImage(a) > 0, sitk.GetArrayFromImage(b) > 0
    m = label_metrics(ref, pred, spacing)
    assert m.assd == pytest.approx(_assd_brute_force(ref, pred, spacing), rel=1e-6)
    assert 0 < m.assd < m.hd95


def test_cv_rows_are_written_by_fold_and_case_whatever_order_the_folds_finished() -> None:
    from automed.evaluate.summary import cv_order

    rows = [
        {"case": "b", "fold": 1, "label": 1},
        {"case": "b", "fold": 1, "label": 2},
        {"case": "a", "fold": 0, "label": 1},
        {"case": "a", "fold": 0, "label": 2},
        {"case": "c", "fold": 0, "label": 1},
    ]
    assert [(r["case"], r["label"]) for r in cv_order(rows)] == [
        ("a", 1),
        ("a", 2),
        ("c", 1),
        ("b", 1),
        ("b", 2),
    ]
