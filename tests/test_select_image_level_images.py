"""``automed select`` among classification trainings compared the CV tables' targets and classes, not the images: two
datasets numbering their pictures alike (``case_000``, ...) with the same targets were selected together, a pair
scored on cases that are different pictures in each member. Each work dir's fingerprint records a case's shape,
spacing and non-zero box: a shared case whose records differ is refused before anything is written, by the check
``automed report`` and segmentation select make (:mod:`automed.workflow.one_dataset`). (Pictures of one size, spacing
and box cannot be told apart: the fingerprint keeps no digest per image.)"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from automed import api
from automed.errors import ArtifactError
from automed.fingerprint.schema import Fingerprint
from automed.testing.synthetic_image_level import make_classification
from automed.train.config import TrainConfig
from automed.train.meta import ModelMeta, ResolvedTraining
from automed.workdir import WorkDir
from automed.workflow.one_dataset import refuse_other_datasets
from automed.workflow.prepare import fingerprint


def _training(root: Path, name: str, csv: Path) -> Path:
    """A finished classification training as select reads it: its dataset's fingerprint, model.json and a CV table
    with each case's target (every training here predicts it right)."""
    wd = root / name
    # the records compared (shape, spacing, non-zero box, the voxels' digest) are each case's own; one process and
    # a small intensity sample (not 10 million draws from 4 pictures of 32 x 32) leave them as they are
    fingerprint(csv, wd, workers=1, sample_budget=4000, show_progress=False)
    meta = ModelMeta(dataset="d", task="classification", configuration="2d", folds=[0, 1], config=TrainConfig(),
                     resolved=ResolvedTraining(patch_size=[32, 32], batch_size=2, foreground_oversample=0.0),
                     plan_hash="p", labels={}, score_name="cv_auc")  # fmt: skip
    meta.save(WorkDir(wd).model)
    listed = pd.read_csv(csv)
    one = (listed["ValueToPredict"] == "one").astype(float)
    WorkDir(wd).cv_metrics.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"case": listed["SubjectID"], "fold": [i % 2 for i in range(len(listed))],
                  "target": listed["ValueToPredict"], "prediction": listed["ValueToPredict"],
                  "probability_one": 0.1 + 0.8 * one, "probability_two": 0.9 - 0.8 * one}
                 ).to_csv(WorkDir(wd).cv_metrics, index=False)  # fmt: skip
    return wd


@pytest.fixture(scope="module")
def trainings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A; B, another dataset numbering its pictures alike (same targets, another size); A2, A with case_001 replaced
    by a picture of another size; A again (a second training of one dataset); A grown by a case."""
    root = tmp_path_factory.mktemp("cls_datasets")
    a = make_classification(root / "A", 4, shape=(32, 32), seed=0)
    b = make_classification(root / "B", 4, shape=(24, 24), seed=1)
    a2 = Path(shutil.copytree(a.parent, root / "A2")) / a.name
    sitk.WriteImage(
        sitk.GetImageFromArray(np.full((40, 32), 50, np.uint8)), str(a2.parent / "images" / "case_001.png")
    )
    grown = Path(shutil.copytree(a.parent, root / "A_grown")) / a.name  # A and one new case: another digest
    shutil.copy(grown.parent / "images" / "case_000.png", grown.parent / "images" / "case_new.png")
    listed = pd.read_csv(grown)
    new = listed.iloc[[0]].assign(SubjectID="case_new")
    new["Channel_0"] = new["Channel_0"].str.replace("case_000", "case_new")
    pd.concat([listed, new]).to_csv(grown, index=False)
    return {
        "A_grown": _training(root, "WA_grown", grown),
        "A": _training(root, "WA", a),
        "A_again": _training(root, "WA_again", a),
        "B": _training(root, "WB", b),
        "A2": _training(root, "WA2", a2),
    }


def test_trainings_of_another_dataset_with_the_same_case_ids_are_refused(
    trainings: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(ArtifactError, match="trainings compared case by case are of one dataset") as err:
        api.select(
            [trainings["A"], trainings["B"]], tmp_path / "S", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}"
        )
    (p,) = err.value.problems
    assert p.file == str(WorkDir(trainings["B"]).fingerprint)
    assert p.value.startswith(
        "4 shared case ID(s) with other images (case_000, case_001, case_002 and 1 more); case_000 in WA "
        "(dataset 'dataset') vs WB (dataset 'dataset'): shape [1, 32, 32] vs [1, 24, 24]"
    )
    assert str(WorkDir(trainings["A"]).fingerprint) in p.rule
    assert (
        f"`automed select {trainings['A']} ... -o DIR`, `automed select {trainings['B']} ... -o DIR2`"
        in p.fix
    )
    assert not (tmp_path / "S").exists()  # refused before anything is written


def test_one_replaced_picture_is_named(trainings: dict[str, Path]) -> None:
    with pytest.raises(
        ArtifactError,
        match=r"1 shared case ID\(s\) with other images \(case_001\); case_001 in WA \(dataset 'dataset'\) vs WA2 "
        r"\(dataset 'dataset'\): shape \[1, 32, 32\] vs \[1, 40, 32\], non-zero box \[1, 32, 32\] vs \[1, 40, 32\]\.",
    ):
        refuse_other_datasets([trainings["A"], trainings["A2"]], ["WA", "WA2"], verb="select")


def test_trainings_of_one_dataset_compare(trainings: dict[str, Path]) -> None:
    refuse_other_datasets([trainings["A"], trainings["A_again"]], ["WA", "WA_again"])  # raises nothing
    refuse_other_datasets([trainings["A"], trainings["A"].parent / "no_fingerprint"], ["WA", "X"])
    grown = Fingerprint.load(WorkDir(trainings["A_grown"]).fingerprint)
    assert grown.voxels_digest != Fingerprint.load(WorkDir(trainings["A"]).fingerprint).voxels_digest
    refuse_other_datasets(
        [trainings["A"], trainings["A_grown"]], ["WA", "WA_grown"]
    )  # shared cases compared: equal
