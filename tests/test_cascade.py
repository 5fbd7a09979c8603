"""The 3d_lowres -> 3d_cascade_fullres cascade: the first stage's out-of-fold predictions as one-hot input channels
of the full-resolution stage, prediction through both stages in the input geometry, the bundle carrying both, and
the export refusing clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torchio as tio

from automed import api
from automed.data.io import read_image
from automed.errors import ArtifactError, ConfigError
from automed.plan.planner import make_plan
from automed.plan.preset import load_preset
from automed.plan.schema import Plan
from automed.preprocess.pipeline import preprocess_label
from automed.preprocess.previous_stage import link_previous
from automed.testing.fingerprints import synthetic_fingerprint
from automed.testing.synthetic import make_dataset
from automed.train.config import TrainConfig
from automed.train.data import augment_pair, with_previous
from automed.workflow.prepare import choose_configuration
from tests.conftest import cascade_options


def test_cascade_needs_its_previous_stage_and_only_it_takes_one() -> None:
    plan = make_plan(synthetic_fingerprint((1.0, 1.0, 1.0), (512, 512, 512)), load_preset("default"))
    casc = TrainConfig(configuration="3d_cascade_fullres")
    with pytest.raises(ConfigError) as err:
        choose_configuration(casc, plan, auto=False)
    p = err.value.problems[0]
    assert p.file == "--previous" and "refines the prediction of 3d_lowres" in p.rule
    assert "--configuration 3d_lowres --folds 5" in p.fix and "--previous LOWRES" in p.fix
    assert (
        choose_configuration(casc, plan, auto=False, previous="/x/LOW").configuration == "3d_cascade_fullres"
    )
    with pytest.raises(ConfigError, match="only a cascade stage"):
        choose_configuration(TrainConfig(configuration="3d_fullres"), plan, auto=False, previous="/x/LOW")


def test_previous_stage_is_one_hot_and_moves_with_the_image() -> None:
    prev = np.array([[0, 1], [2, 0]])
    out = with_previous(np.zeros((1, 2, 2), np.float32), prev, 3)
    assert out.shape == (4, 2, 2) and out.dtype == np.float32
    assert (out[1:].argmax(0) == prev).all() and (out[1:].sum(0) == 1).all()
    rng = np.random.default_rng(0)
    seg = (rng.random((12, 16, 16)) > 0.7).astype(np.int64) + (rng.random((12, 16, 16)) > 0.9)
    data = rng.normal(size=(1, 12, 16, 16)).astype(np.float32)
    transform = tio.Compose([tio.RandomAffine(degrees=20, scales=0.2), tio.RandomGamma(), tio.RandomFlip(0)])
    torch.manual_seed(1)
    _, s, p2 = augment_pair(transform, data, seg, [1.0, 1.0, 1.0], False, seg.copy())
    assert (
        p2 is not None and (p2 == s).all()
    )  # nearest-neighbour, same spatial transform, no intensity change
    assert not (s == seg).all()


@pytest.fixture(scope="module")
def cascade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cascade")
    ds = make_dataset(root / "data", n_cases=4, shape=(40, 40, 40), shape_jitter=0, seed=3)
    common = cascade_options(root)
    api.train(ds, root / "LOW", configuration="3d_lowres", **common)  # type: ignore[arg-type]
    api.train(ds, root / "CASC", configuration="3d_cascade_fullres", previous=root / "LOW", **common)  # type: ignore[arg-type]
    return {"root": root, "data": ds, "low": root / "LOW", "casc": root / "CASC"}


@pytest.mark.slow
def test_cascade_trains_on_out_of_fold_predictions(cascade: dict[str, Path]) -> None:
    casc, low = cascade["casc"], cascade["low"]
    plan = Plan.load(casc / "plan.json")
    assert plan.configurations["3d_cascade_fullres"].network.in_channels == 1 + 3
    splits = json.loads((low / "splits.json").read_text())
    for k, fold in enumerate(splits["folds"]):
        cid = fold["val"][0]  # its previous-stage input is the prediction of the model that held it out
        first, _ = read_image(low / "train" / "3d_lowres" / f"fold_{k}" / "validation" / f"{cid}.nii.gz")
        props = json.loads((casc / "preprocessed" / "3d_fullres" / f"{cid}.json").read_text())
        want = preprocess_label(first[0], props, plan, plan.configurations["3d_cascade_fullres"], [0, 1, 2])
        got = np.load(casc / "previous_stage" / f"{cid}.npy")
        with np.load(casc / "preprocessed" / "3d_fullres" / f"{cid}.npz") as z:
            assert got.shape == z["data"].shape[1:]
        assert (got == want).all()
    ck = torch.load(
        casc / "train" / "3d_cascade_fullres" / "fold_0" / "checkpoint_final.pt", weights_only=True
    )
    first_conv = next(v for k, v in ck["model"].items() if v.ndim == 5)
    assert first_conv.shape[1] == 4  # image + one-hot of three classes
    meta = json.loads((casc / "model.json").read_text())
    assert meta["configuration"] == "3d_cascade_fullres" and meta["folds"] == [0, 1]
    from mlflow.tracking import MlflowClient

    track = json.loads((casc / "tracking.json").read_text())
    run = MlflowClient(tracking_uri=track["uri"]).get_run(track["parent_run_id"])
    logged = json.dumps(run.data.params)  # the first stage's folder as a placeholder, never its path
    assert "<workdir1>" in logged and str(low) not in logged


@pytest.mark.slow
def test_cascade_predicts_through_both_stages_from_workdir_and_bundle(cascade: dict[str, Path]) -> None:
    from automed.infer.predictor import Predictor
    from automed.registry_model import load_bundle

    casc, root = cascade["casc"], cascade["root"]
    image = cascade["data"] / "imagesTr" / "case_001.nii.gz"
    from automed.train.meta import load_model

    pred = Predictor.from_workdir(casc)
    own = load_model(
        cascade["low"]
    ).inference  # the first stage predicts with its own settings, as its bundle does
    assert pred.previous is not None and (pred.previous.tta, pred.previous.step) == (own.tta, own.step)
    pred.tta = False  # `automed predict --no-tta`: both stages
    assert pred.previous.tta is False and len(pred.previous.models) == 2
    assert pred.previous.postprocessing == []  # the cascade trained on raw first-stage predictions
    calls: list[int] = []
    inner = pred.previous.predict_arrays
    pred.previous.predict_arrays = lambda *a, **k: calls.append(1) or inner(*a, **k)  # type: ignore[method-assign]
    arrays, geo = read_image(image)
    labels = pred.predict_arrays(np.stack(arrays), geo).labels
    assert calls == [1] and labels.shape == arrays[0].shape
    bundle = load_bundle(casc / "model_bundle")
    assert bundle.previous is not None and len(bundle.previous.models) == 2
    bundle.tta = False
    bundle.previous.tta = False
    assert (bundle.predict_arrays(np.stack(arrays), geo).labels == labels).all()
    (out,) = api.predict(casc, image, root / "P", show_progress=False)
    assert sitk.ReadImage(str(out)).GetSize() == sitk.ReadImage(str(image)).GetSize()
    with pytest.raises(ArtifactError, match="a cascade chains two"):
        api.export(casc, root / "E", formats="onnx")
    assert not (root / "E" / "networks").exists()


@pytest.mark.slow
def test_explain_gives_the_cascade_its_first_stages_prediction(cascade: dict[str, Path]) -> None:
    """``automed explain`` of a cascade: the network's input holds the first stage's one-hot prediction too (it was
    given the image alone, and medcam's failure told to choose another layer)."""
    inputs = cascade["root"] / "explain_in"
    inputs.mkdir(exist_ok=True)
    image = cascade["data"] / "imagesTr" / "case_001.nii.gz"
    shutil.copy(image, inputs / image.name)
    out = api.explain(cascade["casc"], inputs, cascade["root"] / "explained", show_progress=False)
    m, img = sitk.ReadImage(str(out[0])), sitk.ReadImage(str(image))
    assert m.GetSize() == img.GetSize() and np.allclose(m.GetSpacing(), img.GetSpacing())
    arr = sitk.GetArrayFromImage(m)
    assert arr.min() >= 0.0 and arr.max() == pytest.approx(1.0)


@pytest.mark.slow
def test_previous_stage_must_have_validated_every_case(cascade: dict[str, Path]) -> None:
    casc, low, root = cascade["casc"], cascade["low"], cascade["root"]
    plan = Plan.load(casc / "plan.json")
    partial = root / "LOW_partial"
    shutil.copytree(low, partial)
    shutil.rmtree(partial / "train" / "3d_lowres" / "fold_1" / "validation")
    with pytest.raises(ArtifactError) as err:
        link_previous(casc, partial, plan, "3d_cascade_fullres")
    p = err.value.problems[0]
    assert "out-of-fold prediction" in p.rule and "--folds 5" in p.fix
    with pytest.raises(ArtifactError, match="refines 3d_lowres"):
        link_previous(casc, casc, plan, "3d_cascade_fullres")  # a cascade is no first stage


@pytest.mark.slow
def test_cascade_folds_are_not_reused_over_another_first_stage(cascade: dict[str, Path]) -> None:
    root, low, casc = cascade["root"], cascade["low"], cascade["casc"]
    common = {**cascade_options(root), "register": False}
    link = (casc / "previous_stage.json").read_bytes()
    # the same command again: the same first stage, the finished cascade folds are reused
    api.train(cascade["data"], casc, configuration="3d_cascade_fullres", previous=low, **common)  # type: ignore[arg-type]
    assert (casc / "previous_stage.json").read_bytes() == link
    model = (low / "model.json").read_bytes()
    try:  # the first stage is another model now (as after `automed train --resume LOW --extend N`)
        (low / "model.json").write_text(json.dumps({**json.loads(model), "cv_score": 0.123}))
        with pytest.raises(ArtifactError) as err:
            api.train(cascade["data"], casc, configuration="3d_cascade_fullres", previous=low, **common)  # type: ignore[arg-type]
        assert "cascade folds keep the first-stage model they were trained on" in str(err.value)
        assert (casc / "previous_stage.json").read_bytes() == link
        # nor does the finished cascade predict, go on, or register over it (it predicted from the new model)
        from automed.infer.predictor import Predictor

        with pytest.raises(ArtifactError, match="keeps the first-stage model it was trained on"):
            Predictor.from_workdir(casc)
        with pytest.raises(ArtifactError, match="keeps the first-stage model it was trained on"):
            api.train(None, casc, resume=True, extend=1, show_progress=False, workers=0)  # type: ignore[arg-type]
    finally:
        (low / "model.json").write_bytes(model)
    assert Predictor.from_workdir(casc).previous is not None  # the same model again: predicts


@pytest.mark.slow
def test_a_cascade_on_all_data_takes_the_first_stage_split_and_its_fold_ensemble(
    cascade: dict[str, Path],
) -> None:
    """--folds all on a cascade: the split is the first stage's (no --folds to match), every case trains, and
    prediction runs the first stage's fold ensemble (it has no all-data model) - it crashed after training."""
    from automed.infer.predictor import Predictor

    root, low = cascade["root"], cascade["low"]
    common = {**cascade_options(root), "register": False, "folds": "all"}
    api.train(cascade["data"], root / "CALL", configuration="3d_cascade_fullres", previous=low, **common)  # type: ignore[arg-type]
    assert json.loads((root / "CALL" / "model.json").read_text())["folds"] == [-1]
    pred = Predictor.from_workdir(root / "CALL")
    assert pred.previous is not None and len(pred.previous.models) == 2  # LOW's two folds
    pred.tta = False
    arrays, geo = read_image(cascade["data"] / "imagesTr" / "case_001.nii.gz")
    assert pred.predict_arrays(np.stack(arrays), geo).labels.shape == arrays[0].shape


def test_a_new_work_dir_refused_for_its_cascade_options_keeps_nothing(tmp_path: Path) -> None:
    """-c 3d_cascade_fullres without --previous (or --previous without it) into a new folder: refused, and the
    folder holds no fingerprint, plan, split or cache of the refused run."""
    from automed.errors import AutomedError

    ds = make_dataset(tmp_path / "data", n_cases=4, shape=(40, 40, 40), shape_jitter=0, seed=3)
    common = {**cascade_options(tmp_path), "register": False}
    for kwargs in ({"configuration": "3d_cascade_fullres"}, {"previous": tmp_path / "data"}):
        out = tmp_path / f"W{len(kwargs)}{sorted(kwargs)[0]}"
        with pytest.raises(AutomedError):
            api.train(ds, out, **common, **kwargs)  # type: ignore[arg-type]
        left = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
        assert not {"fingerprint.json", "plan.json", "splits.json", "preprocessed"} & set(left), left
