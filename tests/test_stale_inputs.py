"""A stage is skipped only when its inputs are unchanged: an edited dataset never leaves a stale fingerprint, plan or
preprocessed cache in a work dir that was planned before (training would use the data of then)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from automed import api
from automed.data.dataset import load_dataset
from automed.fingerprint.extract import inputs_hash
from automed.testing.synthetic import make_dataset

KW = {"workers": 1, "show_progress": False, "configurations": ["3d_fullres"]}


def _rewrite(path: Path, arr: np.ndarray, like: sitk.Image) -> None:
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(like)
    sitk.WriteImage(img, str(path), useCompression=path.name.endswith(".gz"))


def _uncompressed(root: Path) -> None:
    """The dataset's files as ``.nii``: an edit of the voxels keeps each file's size."""
    meta = json.loads((root / "dataset.json").read_text())
    for entry in meta["training"]:
        for key in ("image", "label"):
            src = root / entry[key]
            sitk.WriteImage(sitk.ReadImage(str(src)), str(src.with_suffix("")))
            src.unlink()
            entry[key] = entry[key].removesuffix(".gz")
    (root / "dataset.json").write_text(json.dumps(meta))


def test_an_edit_that_keeps_the_fingerprint_statistics_rebuilds_the_cache(tmp_path: Path) -> None:
    """Background voxels (outside every label, neither zero nor an extreme) edited, as defacing or denoising does:
    the fingerprint's statistics stay the same, yet the cache must be rebuilt from the new voxels."""
    root = make_dataset(tmp_path / "d", n_cases=3, shape=(10, 12, 12))
    wd = tmp_path / "W"
    first = api.plan_dataset(root, wd, **KW)
    f = root / "imagesTr" / "case_001.nii.gz"
    img = sitk.ReadImage(str(f))
    arr = sitk.GetArrayFromImage(img)
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "labelsTr" / "case_001.nii.gz")))
    background = (lab == 0) & (arr != 0)
    assert background.sum() > 10
    arr[background] = float(np.median(arr[background]))
    _rewrite(f, arr, img)
    again = api.plan_dataset(root, wd, **KW)
    assert not again.fingerprint_reused
    assert again.fingerprint.hash != first.fingerprint.hash  # the voxels changed: the content hash too
    assert again.preprocessed == {"3d_fullres": "written"}
    fresh = api.plan_dataset(root, tmp_path / "fresh", **KW)
    assert fresh.plan.hash == again.plan.hash
    for name in ("data", "seg"):
        cached = np.load(wd / "preprocessed" / "3d_fullres" / "case_001.npz")[name]
        assert np.array_equal(
            cached, np.load(tmp_path / "fresh" / "preprocessed" / "3d_fullres" / "case_001.npz")[name]
        )


def test_a_label_replaced_with_the_same_size_and_time_is_seen(tmp_path: Path) -> None:
    """A label map edited in place (uncompressed: the same size) and its modification time set back: the fingerprint
    is recomputed and the cache holds the new labels."""
    root = make_dataset(tmp_path / "d", n_cases=3, shape=(10, 12, 12))
    _uncompressed(root)
    wd = tmp_path / "W"
    api.plan_dataset(root, wd, **KW)
    f = root / "labelsTr" / "case_001.nii"
    st = f.stat()
    img = sitk.ReadImage(str(f))
    arr = sitk.GetArrayFromImage(img)
    arr[arr == 2] = 1  # the small structure merged into the large one
    _rewrite(f, arr, img)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (f.stat().st_size, f.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    again = api.plan_dataset(root, wd, **KW)
    assert not again.fingerprint_reused
    assert again.preprocessed == {"3d_fullres": "written"}
    seg = np.load(wd / "preprocessed" / "3d_fullres" / "case_001.npz")["seg"]
    assert sorted(np.unique(seg).tolist()) == [0, 1]


def _as_earlier(wd: Path, root: Path) -> dict[str, bytes]:
    """Rewrite ``wd``'s fingerprint as an earlier automed wrote it (no voxel digest, the stamp of sizes and times
    only), plan and preprocess it again; the fingerprint and plan as they are then."""
    from automed.fingerprint.schema import Fingerprint

    data = json.loads((wd / "fingerprint.json").read_text())
    data.pop("inputs_version", None)
    data.pop("voxels_digest", None)
    old = Fingerprint.model_validate(data)
    stamp = inputs_hash(load_dataset(root), old.samples_per_case, old.seed, version=1)
    old.model_copy(update={"inputs_hash": stamp}).with_hash().save(wd / "fingerprint.json")
    api.plan(wd)
    assert api.preprocess(root, wd, **KW) == {"3d_fullres": "written"}  # the plan's fingerprint hash changed
    return {f: (wd / f).read_bytes() for f in ("fingerprint.json", "plan.json")}


def test_an_earlier_fingerprint_stays_valid(tmp_path: Path) -> None:
    """A work dir planned by an earlier automed is neither fingerprinted again nor re-preprocessed while its dataset
    is unchanged (its resumed trainings would warn of changed files)."""
    root = make_dataset(tmp_path / "d", n_cases=3, shape=(10, 12, 12))
    wd = tmp_path / "W"
    api.plan_dataset(root, wd, **KW)
    kept = _as_earlier(wd, root)
    again = api.plan_dataset(root, wd, **KW)
    assert again.fingerprint_reused and again.preprocessed == {"3d_fullres": "skipped"}
    assert {f: (wd / f).read_bytes() for f in kept} == kept


def test_trained_folds_over_an_earlier_fingerprint_keep_their_plan_when_the_dataset_is_touched(
    tmp_path: Path,
) -> None:
    """Folds trained on a work dir an earlier automed planned: a touched dataset is fingerprinted again, to the same
    statistics; its plan is kept (no voxel digest to compare with: the earlier rule), not refused as another one."""
    root = make_dataset(tmp_path / "d", n_cases=3, shape=(10, 12, 12))
    wd = tmp_path / "W"
    api.plan_dataset(root, wd, **KW)
    kept = _as_earlier(wd, root)
    fold = wd / "train" / "3d_fullres" / "fold_0"
    fold.mkdir(parents=True)
    (fold / "checkpoint_latest.pt").write_bytes(b"")
    for f in (root / "imagesTr").iterdir():
        os.utime(f, (1e9, 1e9))
    again = api.plan_dataset(root, wd, **KW)
    assert not again.fingerprint_reused
    assert (wd / "plan.json").read_bytes() == kept["plan.json"]
    assert (
        json.loads((wd / "fingerprint.json").read_text())["hash"]
        == json.loads(kept["fingerprint.json"])["hash"]
    )
    assert again.preprocessed == {"3d_fullres": "skipped"}


def test_trained_folds_keep_their_fingerprint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``automed fingerprint`` of an edited dataset into a work dir with trained folds is refused: its fingerprint
    still describes what the folds trained on (and what their cache holds), and a resume still warns that the files
    changed (with the new fingerprint in place it said nothing, and trained on the cache of before)."""
    from automed.errors import ArtifactError
    from automed.workdir import WorkDir
    from automed.workflow.resume_data import check_same_cases

    root = make_dataset(tmp_path / "d", n_cases=3, shape=(10, 12, 12))
    wd = tmp_path / "W"
    api.plan_dataset(root, wd, **KW)
    fold = wd / "train" / "3d_fullres" / "fold_0"
    fold.mkdir(parents=True)
    (fold / "checkpoint_latest.pt").write_bytes(b"")
    assert api.fingerprint(root, wd, workers=1, force=True, show_progress=False)[
        0
    ].hash  # the same data: fine
    before = (wd / "fingerprint.json").read_bytes()
    f = root / "labelsTr" / "case_001.nii.gz"
    img = sitk.ReadImage(str(f))
    arr = sitk.GetArrayFromImage(img)
    arr[arr == 2] = 1
    _rewrite(f, arr, img)
    with pytest.raises(ArtifactError, match=r"keeps its fingerprint\.json") as e:
        api.fingerprint(root, wd, workers=1, show_progress=False)
    assert "the dataset changed since its folds were trained" in str(e.value) and "new --output" in str(
        e.value
    )
    assert (wd / "fingerprint.json").read_bytes() == before
    with pytest.raises(ArtifactError, match=r"keeps its fingerprint\.json"):
        api.plan_dataset(root, wd, **KW)
    assert (wd / "fingerprint.json").read_bytes() == before
    # a resume of the edited data is refused before anything runs (it had warned, then validated the folds against
    # the edited labels while they trained on the cache of before: two versions in one CV, registered)
    with pytest.raises(
        ArtifactError, match=r"trains and validates on the data it began with.*edited since"
    ) as e:
        check_same_cases(load_dataset(root), WorkDir(wd))
    assert "restore the files as they were" in str(e.value)
