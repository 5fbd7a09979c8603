"""Preprocessing pieces: crop, normalization, resampling, splits, cache skipping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from automed import api
from automed.data.dataset import Case, Dataset
from automed.data.splits import make_splits
from automed.plan.schema import ChannelNormalization
from automed.runtime.crop import bbox_of, nonzero_mask
from automed.runtime.normalize import normalize
from automed.runtime.resample import resample_data, resample_seg, separate_axis
from automed.testing.synthetic import make_dataset


def test_crop_fills_holes_and_boxes() -> None:
    a = np.zeros((1, 10, 10, 10), np.float32)
    a[0, 2:8, 3:9, 1:5] = 1
    a[0, 4, 5, 2] = 0  # a hole inside
    m = nonzero_mask(a)
    assert m[4, 5, 2]
    assert bbox_of(m) == [[2, 8], [3, 9], [1, 5]]
    assert bbox_of(np.zeros((3, 4, 5), bool)) == [[0, 3], [0, 4], [0, 5]]


def test_normalization_schemes() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(100, 10, (2, 8, 8, 8)).astype(np.float32)
    mask = np.zeros((8, 8, 8), bool)
    mask[2:6] = True
    ct = ChannelNormalization(
        channel=0,
        scheme="ct",
        use_nonzero_mask=False,
        clip_low=90,
        clip_high=110,
        mean=100,
        std=5,
        reason="r",
    )
    zs = ChannelNormalization(channel=1, scheme="zscore", use_nonzero_mask=True, reason="r")
    out = normalize(data.copy(), [ct, zs], mask)
    assert out[0].min() >= -2 - 1e-6 and out[0].max() <= 2 + 1e-6
    assert abs(out[1][mask].mean()) < 1e-5 and abs(out[1][mask].std() - 1) < 1e-4
    assert np.all(out[1][~mask] == 0)


def test_resampling_keeps_labels_and_range() -> None:
    seg = np.zeros((10, 20, 20), np.int16)
    seg[3:7, 5:15, 5:15] = 1
    seg[4:6, 8:12, 8:12] = 2
    out = resample_seg(seg, [20, 40, 40], 3, 1, None, 0)
    assert out.shape == (20, 40, 40) and set(np.unique(out).tolist()) == {0, 1, 2}
    assert abs((out == 1).sum() / 8 - (seg == 1).sum()) / (seg == 1).sum() < 0.15
    img = np.random.default_rng(1).random((1, 10, 20, 20)).astype(np.float32)
    up = resample_data(img, [20, 40, 40], 3, None, 0)
    assert up.min() >= img.min() and up.max() <= img.max()


def test_separate_axis_rule() -> None:
    assert separate_axis([5.0, 0.7, 0.7], [5.0, 0.7, 0.7], 3) == 0
    assert separate_axis([1, 1, 1], [1, 1, 1], 3) is None
    assert separate_axis([1, 1, 1], [1, 1, 4], 3) == 2
    assert separate_axis([0.24, 1.25, 1.25], [0.24, 1.25, 1.25], 3) is None  # two axes tie as coarsest


def test_separate_z_does_not_mix_slices() -> None:
    # each slice holds a constant; with nearest along z, every output slice equals one input slice
    img = np.stack([np.full((8, 8), float(k), np.float32) for k in range(5)])[None]
    out = resample_data(img, [10, 16, 16], 3, 0, 0)
    assert set(np.unique(out).tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0}


def _ds(groups: list[str], values: list[float | None]) -> Dataset:
    cases = tuple(
        Case(f"c{i:02d}", (Path(f"/x/{i}.nii.gz"),), None, v, g)
        for i, (g, v) in enumerate(zip(groups, values, strict=True))
    )
    return Dataset("t", Path("/x/d.csv"), "csv", ("",), None, cases)


def test_splits_group_by_patient_and_are_seeded() -> None:
    groups = [f"p{i // 3}" for i in range(30)]
    ds = _ds(groups, [None] * 30)
    s1, s2 = make_splits(ds, 5, 1), make_splits(ds, 5, 1)
    assert s1 == s2 and s1["n_folds"] == 5
    for f in s1["folds"]:
        tr = {groups[int(c[1:])] for c in f["train"]}
        va = {groups[int(c[1:])] for c in f["val"]}
        assert not tr & va
    assert sorted(c for f in s1["folds"] for c in f["val"]) == sorted(c.case_id for c in ds.cases)
    assert make_splits(ds, 5, 2)["folds"] != s1["folds"]


def test_splits_stratify_classes() -> None:
    values = [float(i % 2) for i in range(20)]
    ds = _ds([f"s{i}" for i in range(20)], values)
    s = make_splits(ds, 5, 0)
    assert s["method"] == "StratifiedGroupKFold"
    for f in s["folds"]:
        ys = [values[int(c[1:])] for c in f["val"]]
        assert ys.count(0.0) == ys.count(1.0) == 2


def test_splits_with_few_cases() -> None:
    assert make_splits(_ds(["a"], [None]), 5)["method"] == "all"
    s = make_splits(_ds(["a", "b", "c"], [None] * 3), 5)
    assert s["n_folds"] == 3 and "only 3 group" in s["reason"]


def test_cache_is_rebuilt_when_the_plan_changes(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", n_cases=3, shape=(10, 12, 12))
    wd = tmp_path / "W"
    res = api.plan_dataset(root, wd, workers=1, show_progress=False, configurations=["3d_fullres"])
    assert res.preprocessed == {"3d_fullres": "written"}
    manifest = json.loads((wd / "preprocessed" / "3d_fullres" / "manifest.json").read_text())
    assert manifest["cases"] == ["case_000", "case_001", "case_002"]
    assert api.preprocess(root, wd, configurations=["3d_fullres"], workers=1, show_progress=False) == {
        "3d_fullres": "skipped"
    }
    # a cache written by another version of preprocessing is redone, not trusted
    mfile = wd / "preprocessed" / "3d_fullres" / "manifest.json"
    mfile.write_text(json.dumps({**manifest, "schema_version": 0}))
    assert api.preprocess(root, wd, configurations=["3d_fullres"], workers=1, show_progress=False) == {
        "3d_fullres": "written"
    }
    # a preset with another normalization threshold changes the configuration hash -> rebuilt
    preset = tmp_path / "p.yaml"
    preset.write_text("schema_version: 1\nname: masked\nnormalization:\n  mask_if_relative_size_below: 0.1\n")
    api.plan(wd, preset=preset)
    assert api.preprocess(root, wd, configurations=["3d_fullres"], workers=1, show_progress=False) == {
        "3d_fullres": "written"
    }
    assert not list((wd / "preprocessed").glob(".*"))  # no temporary folders left


def test_unknown_configuration_did_you_mean(tmp_path: Path) -> None:
    from automed.errors import ConfigError

    root = make_dataset(tmp_path / "d", n_cases=2, shape=(8, 10, 10))
    api.plan_dataset(root, tmp_path / "W", workers=1, show_progress=False, run_preprocess=False)
    with pytest.raises(ConfigError, match="Did you mean '3d_fullres'"):
        api.preprocess(root, tmp_path / "W", configurations=["3d_fulres"], workers=1, show_progress=False)


def test_copied_or_touched_dataset_keeps_its_hash_and_cache(tmp_path: Path) -> None:
    import os
    import shutil

    root = make_dataset(tmp_path / "d", n_cases=3, shape=(10, 12, 12))
    wd = tmp_path / "W"
    first = api.plan_dataset(root, wd, workers=1, show_progress=False, configurations=["3d_fullres"])
    copy = shutil.copytree(root, tmp_path / "copy")
    for f in (copy / "imagesTr").iterdir():
        os.utime(f, (1e9, 1e9))
    again = api.plan_dataset(copy, wd, workers=1, show_progress=False, configurations=["3d_fullres"])
    assert not again.fingerprint_reused  # paths and times changed: the fingerprint is recomputed...
    assert again.fingerprint.hash == first.fingerprint.hash  # ...to the same content
    assert again.plan.hash == first.plan.hash
    assert again.preprocessed == {"3d_fullres": "skipped"}


def test_declared_nnunet_schemes() -> None:
    from automed.plan.planner import make_plan
    from automed.plan.preset import load_preset
    from automed.testing.fingerprints import synthetic_fingerprint

    fp = synthetic_fingerprint((1, 1, 1), (40, 40, 40), modality="noNorm")
    norm = make_plan(fp, load_preset("default")).configurations["3d_fullres"].normalization[0]
    assert norm.scheme == "none" and "noNorm" in norm.reason
    x = np.full((1, 2, 2, 2), 5.0, np.float32)
    assert np.all(normalize(x, [norm], None) == 5.0)


def test_splits_stratify_with_gaps_in_class_values() -> None:
    values = [0.0 if i % 2 else 2.0 for i in range(20)]
    s = make_splits(_ds([f"s{i}" for i in range(20)], values), 5, 0)
    assert s["method"] == "StratifiedGroupKFold"


def test_splits_stratify_regression_values_by_quantile() -> None:
    # a skewed target: every fold still gets one of the 4 smallest, one of the 4 largest values, and so on
    values = [float(v) for v in np.random.default_rng(3).lognormal(8.0, 0.5, 40)]
    s = make_splits(_ds([f"s{i}" for i in range(40)], list(values)), 4, 0)
    assert s["method"] == "StratifiedGroupKFold" and "10 quantile bins" in s["reason"]
    order = sorted(range(40), key=lambda i: values[i])
    for f in s["folds"]:
        ranks = sorted(order.index(int(c[1:])) for c in f["val"])
        assert [r // 4 for r in ranks] == list(range(10))
    few = make_splits(_ds(["a", "b", "c"], [1.5, 2.5, 3.5]), 3, 0)
    assert few["method"] == "GroupKFold"  # one case per fold: nothing to stratify


def test_trained_folds_keep_their_split(tmp_path: Path) -> None:
    from automed.errors import ArtifactError

    root = make_dataset(tmp_path / "d", n_cases=4, shape=(8, 10, 10))
    wd = tmp_path / "W"
    api.plan_dataset(root, wd, workers=1, show_progress=False, folds=2, configurations=["3d_fullres"])
    api.preprocess(
        root, wd, configurations=["3d_fullres"], folds=3, workers=1, show_progress=False
    )  # no folds yet
    fold = wd / "train" / "3d_fullres" / "fold_0"
    fold.mkdir(parents=True)
    (fold / "checkpoint_latest.pt").write_bytes(b"")
    before = (wd / "splits.json").read_text()
    api.preprocess(
        root, wd, configurations=["3d_fullres"], folds=3, workers=1, show_progress=False
    )  # the same
    with pytest.raises(ArtifactError) as e:
        api.preprocess(root, wd, configurations=["3d_fullres"], folds=2, workers=1, show_progress=False)
    assert "keep its splits.json" in str(e.value) and "3 folds trained, 2 asked" in str(e.value)
    assert (wd / "splits.json").read_text() == before
    # nor is its plan replaced: the weights would load with another normalization
    preset = tmp_path / "p.yaml"
    preset.write_text("schema_version: 1\nname: masked\nnormalization:\n  mask_if_relative_size_below: 0.1\n")
    kept = {f: (wd / f).read_bytes() for f in ("plan.json", "fingerprint.json")}
    with pytest.raises(ArtifactError) as e:
        api.plan_dataset(root, wd, preset=preset, workers=1, show_progress=False, run_preprocess=False)
    assert "keeps its plan.json" in str(e.value) and "new --output" in str(e.value)
    assert "another planner preset (default -> masked" in str(
        e.value
    )  # what changed, not just "another plan"
    assert {f: (wd / f).read_bytes() for f in kept} == kept
    api.plan_dataset(
        root, wd, workers=1, show_progress=False, folds=3, configurations=["3d_fullres"]
    )  # same plan


def test_a_configuration_the_preset_did_not_plan_names_the_preset_that_does(tmp_path: Path) -> None:
    from automed.errors import ConfigError
    from automed.plan.schema import Plan
    from automed.train.config import TrainConfig
    from automed.workflow.prepare import choose_configuration

    root = make_dataset(tmp_path / "d", n_cases=2, shape=(8, 10, 10))
    api.plan_dataset(root, tmp_path / "W", workers=1, show_progress=False, run_preprocess=False, preset="cpu")
    plan = Plan.load(tmp_path / "W" / "plan.json")
    with pytest.raises(ConfigError, match=r"preset 'cpu' planned \['3d_fullres'\]") as err:
        choose_configuration(TrainConfig(configuration="2d"), plan, auto=False)
    assert "`--preset default` plans 2d" in str(err.value)
    assert (
        choose_configuration(TrainConfig(configuration="3d_fullres"), plan, auto=False).configuration
        == "3d_fullres"
    )
    # a README audit: `automed grid` writes configuration: 3d_fullres into every config; such a config on pictures
    # was told to plan with `--preset default`, which plans 2d only for them too
    from automed.testing.synthetic_image_level import make_classification

    csv = make_classification(tmp_path / "c", 4, shape=(16, 16))
    api.plan_dataset(csv, tmp_path / "P", workers=1, show_progress=False, run_preprocess=False, preset="cpu")
    pictures = Plan.load(tmp_path / "P" / "plan.json")
    with pytest.raises(ConfigError, match="a dataset of 2D images is planned as 2d only") as err:
        choose_configuration(TrainConfig(configuration="3d_fullres"), pictures, auto=False)
    assert "config file's configuration:" in str(err.value) and "--preset default" not in str(err.value)
    assert choose_configuration(TrainConfig(configuration="2d"), pictures, auto=False).configuration == "2d"
