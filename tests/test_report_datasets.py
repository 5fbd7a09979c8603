"""``automed report`` pairs runs by case ID: runs of two datasets that both number their cases ``case_000``, ...
are refused (their fingerprints hold other images under those IDs); runs of one dataset compare, whatever their
splits, and so do runs of a dataset grown by new cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from automed import api
from automed.errors import ArtifactError
from automed.testing.fingerprints import synthetic_fingerprint


def _run(tmp_path: Path, name: str, dataset: str, n_cases: int, shape: tuple[int, int, int]) -> Path:
    """A work dir as far as the report reads it: its dataset's fingerprint and a CV table over its cases."""
    wd = tmp_path / name
    wd.joinpath("cv").mkdir(parents=True)
    fp = synthetic_fingerprint((1.0, 1.0, 1.0), shape, n_cases=n_cases)
    fp.model_copy(update={"dataset_name": dataset}).with_hash().save(wd / "fingerprint.json")
    dice = np.random.default_rng(len(name) + n_cases).uniform(0.5, 0.9, n_cases)
    ids = [c.case_id for c in fp.cases]
    pd.DataFrame({"case": ids, "label": "1", "name": "large", "dice": dice, "hd95": 1.0}).to_csv(
        wd / "cv" / "metrics.csv", index=False
    )
    return wd


def test_runs_of_two_datasets_sharing_case_ids_are_refused(tmp_path: Path) -> None:
    w1, w2 = _run(tmp_path, "W1", "A", 3, (20, 30, 30)), _run(tmp_path, "W2", "B", 3, (24, 30, 30))
    with pytest.raises(ArtifactError, match="of one dataset") as err:
        api.report([w1, w2], tmp_path / "R", log_to_mlflow=False)
    text = str(err.value)
    assert "W2/fingerprint.json" in text and "case_000" in text and "'A'" in text and "'B'" in text
    assert "report each dataset's runs separately" in text and not (tmp_path / "R").exists()


def test_runs_of_one_dataset_or_of_it_grown_still_compare(tmp_path: Path) -> None:
    w1, w3 = _run(tmp_path, "W1", "A", 3, (20, 30, 30)), _run(tmp_path, "W3", "A", 3, (20, 30, 30))
    grown = _run(tmp_path, "W4", "A", 4, (20, 30, 30))  # its first three cases are W1's images
    res = api.report([w1, w3, grown], tmp_path / "R", log_to_mlflow=False)
    assert {(t["run_a"], t["run_b"]) for t in res.tests} == {("W1", "W3"), ("W1", "W4"), ("W3", "W4")}
    assert {t["n_cases"] for t in res.tests} == {3}


def test_classification_trainings_of_two_datasets_are_refused_too(tmp_path: Path) -> None:
    """Image-level runs are paired by case ID as well (McNemar, Wilcoxon): the same check, before any table."""
    runs = [_run(tmp_path, n, n, 3, shape) for n, shape in (("C1", (1, 64, 64)), ("C2", (1, 80, 64)))]
    for wd in runs:
        (wd / "model.json").write_text(
            '{"task": "classification"}'
        )  # what tells the report an image-level run
    with pytest.raises(ArtifactError, match="of one dataset"):
        api.report(runs, tmp_path / "R", log_to_mlflow=False)


def test_a_shared_case_with_another_non_zero_box_is_refused_by_report_and_select(tmp_path: Path) -> None:
    """Report and segmentation select compared shape, spacing and label voxels, image-level select shape, spacing and
    the non-zero box: a case of another box passed the first two. One signature now, every field compared, and one
    message naming the case, both runs and the values that differ."""
    from automed.fingerprint.schema import Fingerprint
    from automed.workflow.one_dataset import refuse_other_datasets

    w1, w2 = _run(tmp_path, "W1", "A", 3, (20, 30, 30)), _run(tmp_path, "W2", "A", 3, (20, 30, 30))
    fp = Fingerprint.load(w2 / "fingerprint.json")
    cases = [
        c.model_copy(update={"shape_after_crop": [5, 6, 7]}) if i == 1 else c for i, c in enumerate(fp.cases)
    ]
    fp.model_copy(update={"cases": cases, "voxels_digest": "other"}).with_hash().save(w2 / "fingerprint.json")
    box = Fingerprint.load(w1 / "fingerprint.json").cases[1].shape_after_crop
    for verb, runs in (("report", "runs"), ("select", "trainings")):
        with pytest.raises(ArtifactError) as err:
            refuse_other_datasets([w1, w2], ["W1", "W2"], verb=verb)
        (p,) = err.value.problems
        assert p.file == str(w2 / "fingerprint.json") and str(w1 / "fingerprint.json") in p.rule
        assert p.rule.startswith(f"{runs} compared case by case are of one dataset")
        assert "shape, spacing, non-zero box and label voxels" in p.rule
        assert p.value == (
            "1 shared case ID(s) with other images (case_001); case_001 in W1 (dataset 'A') vs W2 (dataset 'A'): "
            f"non-zero box {box} vs [5, 6, 7]"
        )
        assert p.fix.startswith(f"{verb} each dataset's {runs} separately (`automed {verb} {w1} ... -o DIR`")
    with pytest.raises(ArtifactError, match="non-zero box"):
        api.report([w1, w2], tmp_path / "R", log_to_mlflow=False)


def test_a_shared_case_with_other_label_voxels_is_refused(tmp_path: Path) -> None:
    """Image-level select did not compare label voxels; the one signature does, for every command."""
    from automed.fingerprint.schema import Fingerprint
    from automed.workflow.one_dataset import refuse_other_datasets

    w1, w2 = _run(tmp_path, "W1", "A", 3, (20, 30, 30)), _run(tmp_path, "W2", "B", 3, (20, 30, 30))
    fp = Fingerprint.load(w2 / "fingerprint.json")
    cases = [
        c.model_copy(update={"label_voxels": {"0": 7, "1": 3}}) if i == 2 else c
        for i, c in enumerate(fp.cases)
    ]
    fp.model_copy(update={"cases": cases}).with_hash().save(w2 / "fingerprint.json")
    with pytest.raises(
        ArtifactError, match=r"\(case_002\); case_002 .*: label voxels \{.*\} vs \{'0': 7, '1': 3\}\. Fix"
    ):
        refuse_other_datasets([w1, w2], ["W1", "W2"], verb="select")


def _png(path: Path, seed: int) -> None:
    import SimpleITK as sitk

    arr = np.random.default_rng(seed).integers(1, 255, size=(12, 10), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))


def test_a_class_folder_dataset_grown_by_a_class_still_compares(tmp_path: Path) -> None:
    """A class added to a folder-per-class dataset renumbers the classes after it (sorted names): the same images of
    the same classes had other class indices and were refused as 'other images'. Classes compare by name."""
    import shutil

    from automed.workflow.one_dataset import refuse_other_datasets
    from automed.workflow.prepare import fingerprint

    v1 = tmp_path / "v1"
    for k, name in enumerate(["benign", "malignant"]):
        for i in range(2):
            _png(v1 / name / f"img{i}.png", 10 * k + i)
    v2 = Path(shutil.copytree(v1, tmp_path / "v2"))
    for i in range(2):
        _png(v2 / "atypical" / f"img{i}.png", 100 + i)  # sorted first: benign 0 -> 1, malignant 1 -> 2
    w1, w2 = tmp_path / "W1", tmp_path / "W2"
    fp1, _ = fingerprint(v1, w1, workers=0, show_progress=False)
    fp2, _ = fingerprint(v2, w2, workers=0, show_progress=False)
    assert {c.case_id: c.value for c in fp1.cases}["benign_img0"] == 0.0
    assert {c.case_id: c.value for c in fp2.cases}["benign_img0"] == 1.0
    refuse_other_datasets([w1, w2], ["W1", "W2"])  # compared: no error


def test_runs_whose_shared_case_has_another_target_are_refused(tmp_path: Path) -> None:
    """The same images with one case's class changed (a relabelled CSV): the voxel digests agree, and the check
    stopped there, so the runs were paired against two truths; with a case added as well, the changed case was
    called 'other images'. Either way it is now refused naming the case and both targets."""
    from automed.workflow.one_dataset import refuse_other_datasets
    from automed.workflow.prepare import fingerprint

    rows = ["SubjectID,Channel_0,ValueToPredict"]
    for i, name in enumerate(["benign", "malignant", "benign", "malignant"]):
        _png(tmp_path / "img" / f"s{i}.png", 200 + i)
        rows.append(f"s{i},img/s{i}.png,{name}")
    (tmp_path / "a.csv").write_text("\n".join(rows) + "\n")
    rows[2] = "s1,img/s1.png,benign"
    (tmp_path / "b.csv").write_text("\n".join(rows) + "\n")
    _png(tmp_path / "img" / "s9.png", 300)
    (tmp_path / "c.csv").write_text("\n".join([*rows, "s9,img/s9.png,malignant"]) + "\n")
    runs = [tmp_path / n for n in ("A", "B", "C")]
    fps = [
        fingerprint(tmp_path / f"{n.lower()}.csv", wd, workers=0, show_progress=False)[0]
        for n, wd in zip("ABC", runs, strict=True)
    ]
    assert fps[0].voxels_digest == fps[1].voxels_digest  # the same images
    for other in runs[1:]:
        with pytest.raises(ArtifactError) as err:
            refuse_other_datasets([runs[0], other], ["A", other.name])
        (p,) = err.value.problems
        assert p.file == str(other / "fingerprint.json") and "has one target in both" in p.rule
        assert (
            p.value
            == f"1 shared case ID(s) with another target (s1: 'malignant' in A, 'benign' in {other.name})"
        )
        assert "train them again on one version of the dataset" in p.fix
        # image-level select compared only the images here (its CV tables the targets): now the same rule
        with pytest.raises(ArtifactError, match=r"trainings compared case by case .* has one target in both"):
            refuse_other_datasets([runs[0], other], ["A", other.name], verb="select")
