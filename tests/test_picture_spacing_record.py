"""A model predicts its inputs as it was trained: its plan and its bundle record how pictures were read
(``picture_spacing``); one trained before a PNG's pHYs was read, whose record lacks the field, reads every PNG at 1 mm
per pixel (it would otherwise resample a 0.5 um/px patch 2,000-fold)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from PIL import Image

from automed import api
from automed.errors import ArtifactError
from automed.infer.inputs import discover
from automed.infer.prediction import Prediction, picture_reading
from automed.infer.predictor import Predictor
from automed.plan.schema import Plan
from automed.preprocess.pipeline import spec_for
from automed.runtime import cli
from automed.runtime.io import LEGACY_PICTURE_SPACING, PHYS_PICTURE_SPACING
from automed.runtime.pipeline import Spec
from automed.workflow.predict import _predict_cases
from automed.workflow.predict_wsi import block_spacing

UM = 0.5  # micrometres per pixel, as a slide mined at 0.5 um/px
MM = UM / 1000


def _patch(path: Path, shape: tuple[int, int] = (12, 16), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(1, 255, shape, dtype=np.uint8)).save(path, dpi=(25400 / UM, 25400 / UM))
    return path


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work dir planned by this automed on two 0.5 um/px PNG patches (2d configuration)."""
    root = tmp_path_factory.mktemp("png")
    training = []
    labels = _mkdir(root / "d" / "labelsTr")
    for i in range(2):
        _patch(root / "d" / "imagesTr" / f"p{i}.png", seed=i)
        lab = np.zeros((12, 16), dtype=np.uint8)
        lab[3:8, 4:11] = 1
        Image.fromarray(lab).save(labels / f"p{i}.png", dpi=(25400 / UM, 25400 / UM))
        training.append({"image": f"./imagesTr/p{i}.png", "label": f"./labelsTr/p{i}.png"})
    meta = {"name": "Patches", "tensorImageSize": "2D", "modality": {"0": "H&E"},
            "labels": {"0": "background", "1": "tumour"}, "numTraining": 2, "training": training}  # fmt: skip
    (root / "d" / "dataset.json").write_text(json.dumps(meta))
    api.plan_dataset(root / "d", root / "W", workers=1, show_progress=False, configurations=["2d"])
    return root


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _plan(root: Path, legacy: bool) -> Plan:
    data = json.loads((root / "W" / "plan.json").read_text())
    if legacy:  # as an automed before picture_spacing wrote it
        del data["picture_spacing"]
    return Plan.model_validate(data)


def test_a_plan_records_how_pictures_were_read_without_changing_its_hash(planned: Path) -> None:
    new, old = _plan(planned, legacy=False), _plan(planned, legacy=True)
    assert new.picture_spacing == PHYS_PICTURE_SPACING and new.pictures_read == PHYS_PICTURE_SPACING
    assert old.picture_spacing is None and old.pictures_read == LEGACY_PICTURE_SPACING
    # not hashed: a work dir planned before keeps its plan (and its trained folds), as the fingerprint decides
    assert old.compute_hash() == new.compute_hash() == new.hash
    assert spec_for(new, new.configurations["2d"]).picture_spacing == PHYS_PICTURE_SPACING
    spec = spec_for(old, old.configurations["2d"])
    assert spec.picture_spacing == LEGACY_PICTURE_SPACING
    # a bundle's preprocess.json exported before the field: its spec reads as legacy
    without = {
        k: v for k, v in spec_for(new, new.configurations["2d"]).to_json().items() if k != "picture_spacing"
    }
    assert Spec.from_json(without).picture_spacing == LEGACY_PICTURE_SPACING


class _Seen:
    """Wraps a real predictor: records the geometry each case reached it with, predicts background."""

    def __init__(self) -> None:
        self.spacings: list[tuple[float, ...]] = []

    def __call__(self, channels: np.ndarray, geometry: Any, *, probabilities: bool = False) -> Prediction:
        self.spacings.append(tuple(geometry.spacing))
        return Prediction(np.zeros(channels.shape[1:], dtype=np.int16), None)


@pytest.mark.parametrize("legacy", [False, True])
def test_automed_predict_reads_pngs_as_the_model_was_trained(
    planned: Path, tmp_path: Path, legacy: bool
) -> None:
    plan = _plan(planned, legacy)
    predictor = Predictor(plan, "2d", [], device=torch.device("cpu"))
    assert picture_reading(predictor) == (LEGACY_PICTURE_SPACING if legacy else PHYS_PICTURE_SPACING)
    seen = _Seen()
    predictor.predict_arrays = seen  # type: ignore[method-assign]
    cases = discover(_patch(tmp_path / "in" / "new.png"), 1)
    written, _ = _predict_cases(
        predictor, cases, tmp_path / "out", planned / "W", "nifti", False, False, None, False
    )
    want = (1.0, 1.0) if legacy else (MM, MM)
    assert seen.spacings == [pytest.approx(want, rel=1e-5)]
    assert sitk.ReadImage(str(written[0])).GetSpacing() == pytest.approx(want, rel=1e-5)
    # slide blocks at the model's own spacing: the plan's 0.5 um (0.0005 mm) whatever the reading record says
    assert block_spacing(predictor) == pytest.approx((MM, MM), rel=1e-5)


def test_a_pair_of_trainings_reading_pictures_differently_is_refused(planned: Path) -> None:
    from automed.infer.ensemble import EnsemblePredictor

    members = [
        Predictor(_plan(planned, legacy), "2d", [], device=torch.device("cpu")) for legacy in (False, True)
    ]
    with pytest.raises(ArtifactError, match=r"read pictures alike.*png_1mm.*png_phys_microscope"):
        EnsemblePredictor(members)  # when the pair is loaded, before predict or export reads a case
    same = [Predictor(_plan(planned, False), "2d", [], device=torch.device("cpu")) for _ in range(2)]
    assert picture_reading(EnsemblePredictor(same)) == PHYS_PICTURE_SPACING
    assert block_spacing(EnsemblePredictor(same)) == pytest.approx((MM, MM), rel=1e-5)  # a pair on slides


class _BundleModel:
    """A stand-in for the bundle's networks: the spacing each case reached them with, an empty label map."""

    seen: ClassVar[list[list[float]]] = []

    def __init__(self, root: Path, meta: dict[str, Any], runtime: str, **kw: Any) -> None:
        self.n_channels, self.dimension, self.tta = 1, 2, True

    def predict(self, channels: np.ndarray, spacing: list[float]) -> tuple[np.ndarray, None]:
        self.seen.append(spacing)
        return np.zeros(channels.shape[1:], dtype=np.int16), None


@pytest.mark.parametrize("legacy", [False, True])
def test_the_bundle_reads_pngs_as_its_preprocess_json_records(
    planned: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, legacy: bool
) -> None:
    plan = _plan(planned, legacy=False)
    spec = spec_for(plan, plan.configurations["2d"]).to_json()
    if legacy:  # exported before picture_spacing was recorded
        del spec["picture_spacing"]
    root = _mkdir(tmp_path / "bundle")
    meta = {
        "inference": {"step": 0.5, "tta": True},
        "files": {"onnx": ["networks/onnx/fold_0.onnx"]},
        "spec": spec,
    }
    (root / "preprocess.json").write_text(json.dumps(meta))
    _patch(tmp_path / "in" / "a.png")
    _patch(tmp_path / "in" / "a2.png")
    monkeypatch.setattr(cli, "BundleModel", _BundleModel)
    monkeypatch.setattr(cli, "_runtime", lambda *a: "onnx")
    _BundleModel.seen = []
    assert cli.main(["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out")], bundle=root) == 0
    want = [1.0, 1.0, 1.0] if legacy else [1.0, MM, MM]
    assert [pytest.approx(s, rel=1e-5) for s in _BundleModel.seen] == [want, want]
    out = sitk.ReadImage(str(tmp_path / "out" / "a.nii.gz"))
    assert out.GetSpacing()[:2] == pytest.approx(want[1:], rel=1e-5)


def test_a_bundle_pair_reading_pictures_differently_is_refused_before_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = {"inference": {"step": 0.5, "tta": True}, "files": {"onnx": ["m/fold_0.onnx"]}}
    meta = {"inference": {"postprocessing": []}, "files": {"onnx": ["m/fold_0.onnx"] * 2},
            "members": [{**member, "spec": {"picture_spacing": PHYS_PICTURE_SPACING}}, {**member, "spec": {}}]}  # fmt: skip
    root = _mkdir(tmp_path / "bundle")
    (root / "preprocess.json").write_text(json.dumps(meta))
    _patch(tmp_path / "in" / "a.png")
    monkeypatch.setattr(cli, "BundleModel", _BundleModel)
    with pytest.raises(
        SystemExit, match=r"preprocess.json: the trainings of a pair must read pictures alike"
    ):
        cli.main(["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out")], bundle=root)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("legacy", [False, True])
def test_automed_predict_with_an_export_reads_as_its_preprocess_json_records(
    planned: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, legacy: bool
) -> None:
    """``automed predict`` with an export's networks (a linked or registered bundle): its spec's reading, and slide
    blocks at its spacing."""
    from automed.infer import exported
    from automed.runtime import model

    plan = _plan(planned, legacy=False)
    spec = spec_for(plan, plan.configurations["2d"]).to_json()
    if legacy:
        del spec["picture_spacing"]
    inference = {"step": 0.5, "tta": True, "patch": [16, 16], "n_classes": 2}
    root = _mkdir(tmp_path / "export")
    meta = {"inference": inference, "files": {"onnx": ["networks/onnx/fold_0.onnx"]}, "spec": spec}
    (root / "preprocess.json").write_text(json.dumps(meta))
    monkeypatch.setattr(model, "forwards_for", lambda *a, **kw: [])  # no networks needed to read the record
    monkeypatch.setattr(exported, "choose_runtime", lambda *a: "onnx")
    predictor = exported.ExportedPredictor(root)
    assert picture_reading(predictor) == (LEGACY_PICTURE_SPACING if legacy else PHYS_PICTURE_SPACING)
    assert block_spacing(predictor) == pytest.approx((MM, MM), rel=1e-5)
