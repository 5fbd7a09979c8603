"""Selection on CV: the better of two configurations wins, pairs are compared, and largest-component postprocessing
is kept only when it helps (crafted CV probabilities, so the expected decisions are known)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from automed.data.cases import read_case
from automed.data.dataset import load_dataset
from automed.runtime.postprocess import apply, largest_component
from automed.select.selection import select
from automed.testing.synthetic import make_dataset
from automed.train.config import TrainConfig


def _fake_training(root: Path, name: str, ds_path: Path, labels: dict[str, np.ndarray], edit: str) -> Path:
    """A finished training work dir whose CV probabilities are the reference, edited: ``islands`` adds small spurious
    blobs of label 1 far from the structures; ``eroded`` removes a slab of every structure."""
    wd = root / name
    cases = sorted(labels)
    folds = [cases[::2], cases[1::2]]
    (wd).mkdir(parents=True)
    (wd / "splits.json").write_text(
        json.dumps({"n_folds": 2, "folds": [{"train": folds[1 - k], "val": folds[k]} for k in (0, 1)]})
    )
    (wd / "train_config.json").write_text(json.dumps({"dataset": str(ds_path)}))
    cfg = TrainConfig(configuration="3d_fullres")
    meta = {
        "config": cfg.model_dump(mode="json"),
        "folds": [0, 1],
        "labels": {"0": "background", "1": "large", "2": "small"},
    }
    (wd / "model.json").write_text(json.dumps(meta))
    for k, val in enumerate(folds):
        vdir = wd / "train" / "3d_fullres" / f"fold_{k}" / "validation"
        vdir.mkdir(parents=True)
        for cid in val:
            lab = labels[cid].copy()
            if edit == "islands":
                lab[0, 0, 0:2] = 1
                lab[-1, -1, -2:] = 1
            elif edit == "eroded":
                zs = np.flatnonzero(lab.any(axis=(1, 2)))
                lab[zs[: max(1, len(zs) // 3)]] = 0
            probs = np.stack([(lab == v).astype(np.float32) * 0.9 + 0.05 for v in (0, 1, 2)])
            np.savez_compressed(vdir / f"{cid}.npz", probabilities=probs.astype(np.float16))
    return wd


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("select")
    ds_path = make_dataset(root / "ds", n_cases=6, shape=(16, 24, 24), seed=5)
    ds = load_dataset(ds_path)
    labels = {}
    for c in ds.cases:
        lab = read_case(c, False).label
        assert lab is not None
        labels[c.case_id] = lab
    return ds_path, labels


def test_better_configuration_wins_and_postprocessing_helps(
    dataset: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    ds_path, labels = dataset
    good = _fake_training(tmp_path, "good", ds_path, labels, "islands")
    bad = _fake_training(tmp_path, "bad", ds_path, labels, "eroded")
    res = select([bad, good], tmp_path / "sel")
    names = [r["candidate"] for r in res["candidates"]]
    assert names == ["bad", "good", "bad + good"]
    scores = {r["candidate"]: r["foreground_mean"] for r in res["candidates"]}
    assert scores["good"] > scores["bad"]
    assert res["chosen"]["candidate"] == max(scores, key=lambda k: scores[k])
    assert res["chosen"]["candidate"] == "good"
    kept = [d for d in res["decisions"] if d["kept"]]
    assert kept, res["decisions"]  # removing the spurious islands helps...
    assert res["cv_dice_final"]["foreground_mean"] > res["cv_dice_before_postprocessing"]["foreground_mean"]
    for k, v in res["cv_dice_final"]["dice"].items():  # ...and no label got worse
        assert v >= res["cv_dice_before_postprocessing"]["dice"][k] - 1e-9
    assert (tmp_path / "sel" / "selection.json").is_file()


def test_postprocessing_rejected_when_it_hurts(
    dataset: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    """References whose structures come in two pieces: keeping the largest component would delete true voxels, so
    every step is measured worse and rejected."""
    import shutil

    import SimpleITK as sitk

    ds_path, _ = dataset
    copy = tmp_path / "ds2"
    shutil.copytree(ds_path, copy)
    split = {}
    for f in sorted((copy / "labelsTr").iterdir()):
        img = sitk.ReadImage(str(f))
        lab = sitk.GetArrayFromImage(img)
        for v in (1, 2):  # cut every structure in two at its middle slice
            zs = np.flatnonzero((lab == v).any(axis=(1, 2)))
            if len(zs) >= 3:
                lab[zs[len(zs) // 2]][lab[zs[len(zs) // 2]] == v] = 0
        out = sitk.GetImageFromArray(lab)
        out.CopyInformation(img)
        sitk.WriteImage(out, str(f))
        split[f.name.split(".")[0]] = lab
    assert any(largest_component(lab == 1).sum() < (lab == 1).sum() for lab in split.values())
    exact = _fake_training(tmp_path, "exact", copy, split, "none")
    res = select([exact], tmp_path / "sel")
    assert res["cv_dice_before_postprocessing"]["foreground_mean"] == pytest.approx(1.0)
    assert res["decisions"] and not any(d["kept"] for d in res["decisions"])
    assert any(d["after"]["foreground_mean"] < d["before"]["foreground_mean"] for d in res["decisions"])
    assert res["postprocessing"] == []
    steps = [{"kind": "largest_component", "labels": [1]}]
    lab = next(iter(split.values()))
    assert (apply(lab, steps) == 1).sum() == largest_component(lab == 1).sum()
