"""``automed select`` among segmentation trainings scores every training and pair against the first training's
dataset: trainings of another dataset numbering its cases alike (``case_000``, ...), or of another version of one
dataset (its label maps redrawn), were scored on the first's label maps and could be chosen. They are refused, by the
check ``automed report`` makes (each work dir's fingerprint: shape, spacing and label voxels per shared case), before
anything is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from automed import api
from automed.data.cases import read_case
from automed.data.dataset import load_dataset
from automed.errors import ArtifactError
from automed.records import TRAIN_CONFIG_VERSION, stamped
from automed.testing.synthetic import make_dataset
from automed.train.config import TrainConfig
from automed.train.meta import ModelMeta, ResolvedTraining
from automed.workdir import WorkDir
from automed.workflow.prepare import fingerprint


def _training(root: Path, name: str, ds_path: Path) -> Path:
    """A finished segmentation training as select reads it: its dataset's fingerprint, model.json, splits and each
    validation case's probabilities (the reference, a little blurred)."""
    wd = root / name
    # the records compared (shape, spacing, label voxels per case) are each case's own: one process and a small
    # intensity sample (not 10 million draws from 4 cases of 8 x 12 x 12) leave them as they are
    fingerprint(ds_path, wd, workers=1, sample_budget=4000, show_progress=False)
    ds = load_dataset(ds_path)
    ids = sorted(c.case_id for c in ds.cases)
    folds = [ids[::2], ids[1::2]]
    (wd / "splits.json").write_text(
        json.dumps({"n_folds": 2, "folds": [{"train": folds[1 - k], "val": folds[k]} for k in (0, 1)]})
    )
    meta = ModelMeta(dataset=ds.name, configuration="3d_fullres", folds=[0, 1], config=TrainConfig(),
                     resolved=ResolvedTraining(patch_size=[8, 8, 8], batch_size=2, foreground_oversample=0.33),
                     plan_hash="p", labels={"0": "background", "1": "large", "2": "small"})  # fmt: skip
    meta.save(WorkDir(wd).model)
    record = stamped({"dataset": str(ds_path)}, TRAIN_CONFIG_VERSION)
    WorkDir(wd).train_config.write_text(json.dumps(record))
    by_id = {c.case_id: c for c in ds.cases}
    for k, val in enumerate(folds):
        vdir = WorkDir(wd).fold("3d_fullres", k) / "validation"
        vdir.mkdir(parents=True)
        for cid in val:
            lab = read_case(by_id[cid], False).label
            assert lab is not None
            probs = np.stack([(lab == v).astype(np.float32) * 0.9 + 0.05 for v in (0, 1, 2)])
            np.savez_compressed(vdir / f"{cid}.npz", probabilities=probs.astype(np.float16))
    return wd


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Dataset A; B, another dataset numbering its cases alike; A2, A with one case's label map redrawn."""
    root = tmp_path_factory.mktemp("seg_datasets")
    a = make_dataset(root / "A", n_cases=4, shape=(8, 12, 12), seed=5)
    b = make_dataset(root / "B", n_cases=4, shape=(8, 12, 12), seed=9)
    a2 = Path(shutil.copytree(a, root / "A2"))
    case = next(c for c in load_dataset(a2).cases if c.case_id == "case_001")
    assert case.label is not None
    label = sitk.ReadImage(str(case.label))
    arr = sitk.GetArrayFromImage(label)
    arr[arr == 2] = 1  # the small structure relabeled as the large one
    redrawn = sitk.GetImageFromArray(arr)
    redrawn.CopyInformation(label)
    sitk.WriteImage(redrawn, str(case.label))
    return {"A": a, "B": b, "A2": a2}


def _select(workdirs: list[Path], out: Path) -> dict[str, object]:
    return api.select(workdirs, out, inference=False, tracking_uri=f"sqlite:///{out.parent / 'm.db'}")


def test_trainings_of_another_dataset_with_the_same_case_ids_are_refused(
    datasets: dict[str, Path], tmp_path: Path
) -> None:
    wa, wb = _training(tmp_path, "WA", datasets["A"]), _training(tmp_path, "WB", datasets["B"])
    with pytest.raises(ArtifactError, match="of one dataset") as err:
        _select([wa, wb], tmp_path / "S")
    text = " ".join(str(err.value).split())
    assert "WB/fingerprint.json" in text and "case_000" in text and "label voxels" in text
    assert "select each dataset's trainings separately (`automed select" in text
    assert not (tmp_path / "S").exists() and not WorkDir(wa).choice.exists()  # nothing written


def test_two_versions_of_one_dataset_are_refused_naming_the_redrawn_case(
    datasets: dict[str, Path], tmp_path: Path
) -> None:
    wa, wa2 = _training(tmp_path, "WA", datasets["A"]), _training(tmp_path, "WA2", datasets["A2"])
    with pytest.raises(ArtifactError, match=r"1 shared case ID\(s\) with other images \(case_001\)"):
        _select([wa, wa2], tmp_path / "S")


def test_trainings_of_one_dataset_still_compare(datasets: dict[str, Path], tmp_path: Path) -> None:
    wa, again = _training(tmp_path, "WA", datasets["A"]), _training(tmp_path, "WA_again", datasets["A"])
    res = _select([wa, again], tmp_path / "S")
    assert [c["candidate"] for c in res["candidates"]] == ["WA", "WA_again", "WA + WA_again"]  # type: ignore[index]
