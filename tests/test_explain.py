"""``automed explain``: medcam attention maps in the input's geometry for a 2D classification and a 3D segmentation
model (tiny models trained on CPU), every backend, the documented medcam facts, clear errors, and the CLI verb."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from typer.testing import CliRunner

from automed import api
from automed.cli import app
from automed.errors import ArtifactError, ConfigError, DatasetError
from automed.interpret.attention import BACKENDS, ExplainedOutput, check_layer, default_layer, guided_copy
from automed.interpret.geometry import to_input_grid, undo_fit
from automed.runtime.image_model import fit_centre
from automed.runtime.pipeline import Spec
from automed.testing.synthetic import make_dataset
from automed.testing.synthetic_image_level import make_classification
from automed.train.classifier import EncoderHead
from automed.train.networks import PlainUNet
from tests.conftest import tiny_unet_plan


def _medcam() -> Any:
    from medcam import medcam

    return medcam


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("explain")
    cfg = root / "cfg.yaml"
    cfg.write_text("epochs: 1\niterations_per_epoch: 4\nval_iterations: 1\nnum_workers: 0\nexplain: true\n")
    common: dict[str, Any] = dict(
        config=cfg,
        folds=2,
        workers=0,
        show_progress=False,
        register=False,
        tracking_uri=f"sqlite:///{root / 'm.db'}",
    )
    csv = make_classification(root / "c", 6, shape=(32, 28))
    seg = make_dataset(root / "s", n_cases=4, shape=(12, 24, 24), n_channels=2)  # MSD: one 4D file per case
    out = {
        "cls": api.train(csv, root / "Wc", **{**common, "register": True}).workdir,
        "seg": api.train(seg, root / "Ws", configuration="3d_fullres", **common).workdir,
        "cls_in": root / "cls_in",
        "seg_in": root / "seg_in",
        "root": root,
    }
    for image, folder in (
        (root / "c" / "images" / "case_001.png", out["cls_in"]),
        (sorted((root / "s" / "imagesTr").iterdir())[0], out["seg_in"]),
    ):
        folder.mkdir()
        shutil.copy(image, folder / image.name)
    return out


def _same_geometry(a: Path, b: Path) -> np.ndarray:
    """The map at ``a`` as an array, after checking it has the geometry of the image at ``b`` (a 4D image's channels
    on the last axis: the geometry of its first three axes)."""
    m, img = sitk.ReadImage(str(a)), sitk.ReadImage(str(b))
    n = m.GetDimension()
    assert n == min(img.GetDimension(), 3) and m.GetSize() == img.GetSize()[:n]
    assert np.allclose(m.GetSpacing(), img.GetSpacing()[:n]) and np.allclose(
        m.GetOrigin(), img.GetOrigin()[:n]
    )
    d = np.asarray(img.GetDirection()).reshape(img.GetDimension(), -1)[:n, :n]
    assert np.allclose(np.asarray(m.GetDirection()).reshape(n, n), d)
    arr = sitk.GetArrayFromImage(m)
    assert arr.dtype == np.float32 and arr.min() == 0.0 and arr.max() == pytest.approx(1.0)  # README: [0, 1]
    return arr


def _png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000


@pytest.mark.slow
def test_classification_map_in_the_png_inputs_geometry(models: dict[str, Any]) -> None:
    out = api.explain(models["cls"], models["cls_in"], models["root"] / "E1", show_progress=False)
    assert [p.name for p in out] == ["case_001_gcam.nii.gz", "case_001_gcam.png"]
    arr = _same_geometry(out[0], models["cls_in"] / "case_001.png")
    assert arr.shape == (32, 28)  # a 2D input gives a 2D map
    _png(out[1])
    # the same names again (here: another --label) replace the earlier maps only with --overwrite
    before = out[0].read_bytes()
    with pytest.raises(ArtifactError, match=r"earlier maps.*case_001_gcam"):
        api.explain(models["cls"], models["cls_in"], models["root"] / "E1", label="one", show_progress=False)
    assert out[0].read_bytes() == before
    # another backend's maps go beside them
    assert api.explain(
        models["cls"], models["cls_in"], models["root"] / "E1", backend="gcampp", show_progress=False
    )
    # a class given by name; an unknown one names the closest
    out = api.explain(
        models["cls"],
        models["cls_in"],
        models["root"] / "E1",
        label="one",
        overwrite=True,
        show_progress=False,
    )
    _same_geometry(out[0], models["cls_in"] / "case_001.png")
    with pytest.raises(ConfigError, match="Did you mean 'two'"):
        api.explain(models["cls"], models["cls_in"], models["root"] / "E1b", label="tow", show_progress=False)


@pytest.mark.slow
def test_a_small_pictures_map_spans_0_to_1_on_its_own_grid(
    models: dict[str, Any], drawn: list[tuple[Any, dict[str, Any]]], caplog: pytest.LogCaptureFixture
) -> None:
    """README: each map is rescaled to [0, 1] on its own. Normalized at the network's input only, a map lost its peak
    with the padding a small picture got and in resampling: a 7x5 picture's map was 0.028-0.638 (a volume's
    0.241-0.869: every map of this file is checked by ``_same_geometry``). explain warns of the small picture as
    automed predict does (it had said nothing)."""
    small = models["root"] / "small_in"
    small.mkdir()
    picture = sitk.ReadImage(str(models["cls_in"] / "case_001.png"))
    sitk.WriteImage(picture[10:15, 12:19], str(small / "tiny.png"))  # 5 pixels wide, 7 high
    with caplog.at_level(logging.WARNING, logger="automed"):
        out = api.explain(models["cls"], small, models["root"] / "E_small", show_progress=False)
    said = [r.getMessage() for r in caplog.records if "covers less than half" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("warning: tiny: the image is 7 x 5 pixels"), said
    assert _same_geometry(out[0], small / "tiny.png").shape == (7, 5)
    overlay = drawn[-1][0]  # the map drawn over the picture
    assert overlay.shape == (7, 5) and overlay.min() == 0.0 and overlay.max() == pytest.approx(1.0)


@pytest.mark.slow
def test_a_registered_model_explains_as_its_work_dir(models: dict[str, Any]) -> None:
    """``automed explain models:/NAME@ALIAS`` (as predict takes it): the registered bundle's fold networks give the
    work dir's map; a registered model that is not there is named as predict names it."""
    uri = f"sqlite:///{models['root'] / 'm.db'}"
    name = json.loads((models["cls"] / "tracking.json").read_text())["registered"]["name"]
    root = models["root"]
    own = api.explain(models["cls"], models["cls_in"], root / "R_wd", show_progress=False)
    out = api.explain(
        f"models:/{name}@champion", models["cls_in"], root / "R_reg", tracking_uri=uri, show_progress=False
    )
    assert [p.name for p in out] == [p.name for p in own]
    np.testing.assert_allclose(
        _same_geometry(out[0], models["cls_in"] / "case_001.png"),
        _same_geometry(own[0], models["cls_in"] / "case_001.png"),
        atol=1e-6,
    )
    with pytest.raises(ArtifactError, match="registered here"):
        api.explain("models:/nope@champion", models["cls_in"], root / "R_bad", tracking_uri=uri)
    r = CliRunner().invoke(
        app,
        [
            "-q",
            "explain",
            f"models:/{name}@champion",
            "-i",
            str(models["cls_in"]),
            "-o",
            str(root / "R_cli"),
            "--tracking-uri",
            uri,
        ],
    )
    assert r.exit_code == 0, r.output
    assert len(list((root / "R_cli").glob("*.nii.gz"))) == 1


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_gives_a_map(
    models: dict[str, Any], backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="automed"):
        out = api.explain(
            models["cls"],
            models["cls_in"],
            models["root"] / f"B_{backend}",
            backend=backend,
            show_progress=False,
        )
    _same_geometry(out[0], models["cls_in"] / "case_001.png")
    _png(out[1])
    hooks = "deprecated non-full backward hooks" in caplog.text
    assert hooks == (backend in ("gbp", "ggcam"))  # torch's flood of FutureWarnings, reported once


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["gcam", "gcampp"])
def test_segmentation_map_in_the_volumes_geometry(models: dict[str, Any], backend: str) -> None:
    img = next(models["seg_in"].iterdir())
    out = api.explain(
        models["seg"], models["seg_in"], models["root"] / f"S_{backend}", backend=backend, show_progress=False
    )
    stem = img.name.removesuffix(".nii.gz")
    assert [p.name for p in out] == [f"{stem}_{backend}.nii.gz", f"{stem}_{backend}.png"]
    arr = _same_geometry(out[0], img)
    assert arr.ndim == 3 and (arr > 0.5).mean() < 0.5  # attention is somewhere, not everywhere
    _png(out[1])
    with pytest.raises(ConfigError, match=r"Did you mean 'decoder\."):
        api.explain(models["seg"], models["seg_in"], models["root"] / "S_bad", layer="decoder.9")
    with pytest.raises(ConfigError, match=r"medcam must compute an attention map.*layer: heads\.0"):
        api.explain(
            models["seg"], models["seg_in"], models["root"] / "S_bad", layer="heads.0"
        )  # unused in eval
    with pytest.raises(ConfigError, match="label value or name"):
        api.explain(models["seg"], models["seg_in"], models["root"] / "S_bad", label="7")


@pytest.mark.slow
def test_channel_files_on_different_grids_are_refused(models: dict[str, Any]) -> None:
    four = sitk.ReadImage(str(next(models["seg_in"].iterdir())))  # the two-channel model's 4D input
    folder = models["root"] / "off_grid_in"
    folder.mkdir()
    for ch in (0, 1):
        img = sitk.Extract(four, [*four.GetSize()[:3], 0], [0, 0, 0, ch])
        if ch == 1:
            img.SetSpacing((1.0, 1.0, 2.0))
        sitk.WriteImage(img, str(folder / f"pat_{ch:04d}.nii.gz"))
    with pytest.raises(DatasetError, match="one voxel grid") as err:
        api.explain(models["seg"], folder, models["root"] / "off_grid_maps", show_progress=False)
    assert "pat_0001.nii.gz: channel spacing must equal" in str(err.value)
    assert not (models["root"] / "off_grid_maps").exists()


@pytest.mark.slow
def test_the_overlay_shows_the_axial_slice_as_a_viewer_does(
    models: dict[str, Any], drawn: list[tuple[Any, dict[str, Any]]]
) -> None:
    """The PNG shows an axial slice in radiological convention (anterior up, the patient's right on the left) as a
    viewer does, whatever the input's direction (it showed the voxel order: an image stored rotated in-plane and
    flipped head to foot appeared so); the NIfTI map keeps the input's grid."""
    image = sitk.ReadImage(str(next(models["seg_in"].iterdir())))
    d = np.eye(4)
    d[:3, :3] = [[0, 1, 0], [-1, 0, 0], [0, 0, -1]]  # x index runs posterior, y index right, z index down
    image.SetDirection(d.ravel().tolist())
    folder = models["root"] / "rotated_in"
    folder.mkdir()
    sitk.WriteImage(image, str(folder / "case_r.nii.gz"))
    out = api.explain(models["seg"], folder, models["root"] / "rotated_out", show_progress=False)
    _same_geometry(out[0], folder / "case_r.nii.gz")
    lps = sitk.GetArrayFromImage(sitk.DICOMOrient(sitk.ReadImage(str(out[0])), "LPS"))
    k = int(np.argmax(lps.reshape(lps.shape[0], -1).sum(1)))
    first = sitk.GetArrayFromImage(sitk.DICOMOrient(image[:, :, :, 0], "LPS"))
    assert np.array_equal(drawn[0][0], first[k]) and np.array_equal(drawn[1][0], lps[k])


@pytest.mark.slow
def test_a_2d_segmentation_maps_each_slice_and_says_so_once(
    models: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A 2d configuration explains slice by slice, each normalized on its own: said once per run (it was said for
    every case), as is guided backpropagation's hook warning."""
    import yaml

    root = models["root"]
    (root / "two.yaml").write_text(
        yaml.safe_dump({"extends": "cpu", "name": "two", "configurations": ["2d"]})
    )
    wd = api.train(
        root / "s", root / "W2d", configuration="2d", preset=str(root / "two.yaml"), config=root / "cfg.yaml",
        folds=2, workers=0, show_progress=False, register=False, tracking_uri=f"sqlite:///{root / 'm.db'}",
    ).workdir  # fmt: skip
    images = sorted((root / "s" / "imagesTr").iterdir())[:2]
    caplog.clear()  # the training's own (explain: true)
    with caplog.at_level(logging.WARNING, logger="automed"):
        out = api.explain(wd, root / "s" / "imagesTr", root / "E2d", backend="gbp", show_progress=False)
    assert len(out) == 8
    for image in images:
        stem = image.name.removesuffix(".nii.gz")
        arr = _same_geometry(root / "E2d" / f"{stem}_gbp.nii.gz", image)
        assert arr.ndim == 3
    assert caplog.text.count("normalized per slice") == 1
    assert caplog.text.count("deprecated non-full backward hooks") == 1


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cls", "seg"])
def test_explain_true_logs_validation_maps_to_mlflow(models: dict[str, Any], kind: str) -> None:
    """``explain: true`` in the training config: three validation cases' maps under ``explain/`` of the training's
    MLflow run, named by pseudonym (issue 15)."""
    import json

    from mlflow.tracking import MlflowClient

    track = json.loads((models[kind] / "tracking.json").read_text())
    client = MlflowClient(tracking_uri=f"sqlite:///{models['root'] / 'm.db'}")
    files = [f.path for f in client.list_artifacts(track["parent_run_id"], "explain")]
    assert len(files) == 3 and all(f.endswith("_gcam.png") for f in files)
    assert not any("case_" in f for f in files)  # pseudonyms, not the case IDs


@pytest.mark.slow  # the `models` fixture trains two models (10 s)
def test_the_cli_verb_runs(models: dict[str, Any]) -> None:
    out = models["root"] / "CLI"
    args = ["-q", "explain", str(models["seg"]), "-i", str(models["seg_in"]), "-o", str(out)]
    r = CliRunner().invoke(app, [*args, "--label", "large", "--layer", "decoder.0"])
    assert r.exit_code == 0, r.output
    assert "wrote 1 attention map(s)" in r.output and len(list(out.glob("*.nii.gz"))) == 1


@pytest.mark.slow
def test_overwrite_replaces_another_kind_of_output(models: dict[str, Any]) -> None:
    """--overwrite into a folder automed wrote as another output (predictions) left those files beside the maps and
    relabelled the folder: a later predict there was refused, and with --overwrite removed the maps."""
    from automed.artifacts import mark_output, output_kind

    out = models["root"] / "was_predictions"
    out.mkdir()
    mark_output(out, "predictions")
    (out / "case_000.nii.gz").write_bytes(b"an earlier label map")
    with pytest.raises(ArtifactError, match="only with --overwrite"):
        api.explain(
            models["seg"], models["seg_in"], out, label="large", layer="decoder.0", show_progress=False
        )
    written = api.explain(models["seg"], models["seg_in"], out, label="large", layer="decoder.0", overwrite=True,
                          show_progress=False)  # fmt: skip
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        p.name for p in written
    )
    assert output_kind(out) == "explanations"


def test_an_unknown_backend_names_the_closest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Did you mean 'gcampp'"):
        api.explain(tmp_path, tmp_path, tmp_path / "out", backend="gcamp")
    assert not (tmp_path / "out").exists()  # checked before any work


def test_a_selection_that_chose_a_pair_names_its_trainings(tmp_path: Path) -> None:
    """A pair's selection folder holds no fold networks of its own: explain says to explain each training (it told
    to train into the selection folder)."""
    import json

    members = [str(tmp_path / "W3d"), str(tmp_path / "W2d")]
    (tmp_path / "sel" / "model_bundle").mkdir(parents=True)
    (tmp_path / "sel" / "selection.json").write_text(json.dumps({"chosen": {"members": members}}))
    bundle = {"members": [{"folder": Path(m).name, "workdir": m} for m in members]}
    (tmp_path / "sel" / "model_bundle" / "ensemble.json").write_text(json.dumps(bundle))
    (tmp_path / "in").mkdir()
    with pytest.raises(ArtifactError, match=r"explain each.*W3d.*W2d") as err:
        api.explain(tmp_path / "sel", tmp_path / "in", tmp_path / "out", show_progress=False)
    assert "automed train" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_default_layers_and_medcams_auto_choice() -> None:
    unet, head = PlainUNet(tiny_unet_plan(3)), EncoderHead(tiny_unet_plan(2), 2, 0.0)
    assert default_layer(unet) == "decoder.0" and default_layer(head) == "encoder.1"
    assert check_layer(unet, None) == "decoder.0" and check_layer(unet, "heads.0") == "heads.0"
    # medcam's `auto` picks the U-Net's 1x1 output head: a map of the logits, hence the named default
    net = _medcam().inject(unet.eval(), backend="gcam", layer="auto", label=1, return_attention=True)
    net(torch.randn(1, 1, 8, 8, 8))
    assert net.medcam_dict["current_layer"] == "heads.0"


def test_a_container_of_blocks_is_no_layer() -> None:
    """``--layer decoder`` (a ModuleList: no forward of its own) was accepted and medcam failed on the first case;
    the list of layers offered named such containers too."""
    unet = PlainUNet(tiny_unet_plan(3))
    with pytest.raises(ConfigError, match=r"Did you mean 'decoder\.0'") as err:
        check_layer(unet, "decoder")
    listed = str(err.value).split("(PlainUNet: ")[1].split(")")[0]
    assert listed.startswith("encoder.0, encoder.1") and "decoder.0" in listed
    assert not {"encoder", "decoder", "up", "heads"} & set(listed.split(", "))


def test_guided_backprop_on_leaky_relu_networks() -> None:
    """medcam's gbp rectifies only at nn.ReLU: on automed's LeakyReLU networks it is the plain gradient; on
    guided_copy it is guided backpropagation (full backward hooks as the reference), with unchanged outputs; with
    ExplainedOutput's magnitude, the guided gradient's magnitude."""
    torch.manual_seed(0)
    net = EncoderHead(tiny_unet_plan(2), 2, 0.0).eval()
    x = torch.randn(1, 1, 16, 16)
    reference = guided_copy(net)  # before medcam marks net's modules for non-full hooks
    for m in reference.modules():
        if isinstance(m, torch.nn.ReLU):
            m.register_full_backward_hook(lambda _m, gi, _go: (gi[0].clamp(min=0),))

    def gradient(model: torch.nn.Module) -> torch.Tensor:
        xi = x.clone().requires_grad_()
        model(xi)[0, 1].backward()
        assert xi.grad is not None
        return xi.grad.mean(1, keepdim=True)

    def rescaled(g: torch.Tensor) -> torch.Tensor:
        return (g - g.min()) / (g.max() - g.min())

    def gbp(model: torch.nn.Module) -> torch.Tensor:
        with pytest.warns(FutureWarning, match="non-full backward hook"):
            _, att = _medcam().inject(model, backend="gbp", label=1, return_attention=True)(x.clone())
        out: torch.Tensor = att
        return out

    plain = gbp(net)
    assert torch.allclose(plain, rescaled(gradient(net)), atol=1e-6)
    guided = guided_copy(net)
    assert torch.allclose(guided(x), net(x))
    signed = gbp(ExplainedOutput(guided, None))
    assert torch.allclose(signed, rescaled(gradient(reference)), atol=1e-5)
    assert not torch.allclose(signed, plain, atol=1e-3)
    magnitude = gbp(ExplainedOutput(guided_copy(net), None, magnitude=True))
    assert torch.allclose(magnitude, rescaled(gradient(reference).abs()), atol=1e-5)


def test_gcampp_on_a_unet_layer_needs_the_one_class_output() -> None:
    unet = PlainUNet(tiny_unet_plan(3)).eval()
    x = torch.randn(1, 1, 8, 8, 8)
    medcam = _medcam()
    with pytest.raises(RuntimeError, match="must match"):
        medcam.inject(unet, backend="gcampp", layer="decoder.0", label=1, return_attention=True)(x.clone())
    wrapped = medcam.inject(
        ExplainedOutput(unet, 1), backend="gcampp", layer="net.decoder.0", label=0, return_attention=True
    )
    _, att = wrapped(x.clone())
    assert att.shape == (1, 1, 8, 8, 8) and torch.isfinite(att).all()


@pytest.mark.parametrize("size", [[1, 6, 9], [1, 12, 4], [3, 8, 8]])
def test_undo_fit_inverts_the_centre_crop_and_padding(size: list[int]) -> None:
    data = np.random.default_rng(0).random((1, 1, 8, 7)).astype(np.float32)
    back = undo_fit(fit_centre(data, size)[0], [1, 8, 7])
    assert back.shape == (1, 8, 7)
    kept = back != 0
    assert np.array_equal(back[kept], data[0][kept])
    assert kept.sum() == min(8, size[1]) * min(7, size[2])


@pytest.mark.parametrize("dimension", [2, 3])
def test_a_map_back_on_the_input_grid_spans_0_to_1(dimension: int) -> None:
    """After the crop to non-zero is undone and the map resampled, it is rescaled over the input's grid (a 2D
    configuration's slice by slice, as medcam normalized them); a constant map becomes zeros."""
    spec = Spec([0, 1, 2], [0, 1, 2], [1.0, 1.0], dimension, [], 3, 0, 3.0, [], 1)
    props = {"separate_axis": None, "shape_after_crop": [2, 8, 8], "shape_before_crop": [3, 10, 10],
             "crop_box": [[0, 2], [1, 9], [1, 9]]}  # fmt: skip
    values = np.zeros((2, 4, 4), np.float32)
    values[0] = np.linspace(0.2, 0.6, 16).reshape(4, 4)  # its peak (1) was in the padding, now dropped
    values[1] = values[0] / 2
    out = to_input_grid(values, props, spec)
    assert out.shape == (3, 10, 10) and out.dtype == np.float32 and out.min() == 0.0 and out[2].max() == 0.0
    assert out[0].max() == pytest.approx(1.0)
    assert out[1].max() == pytest.approx(1.0 if dimension == 2 else 0.5)  # a 2D configuration's: each slice
    whole = {**props, "shape_before_crop": [2, 8, 8], "crop_box": [[0, 2], [0, 8], [0, 8]]}
    with np.errstate(all="raise"):
        assert not to_input_grid(np.full((2, 4, 4), 0.7, np.float32), whole, spec).any()


@pytest.mark.slow  # last in this file: it extends the module's segmentation model
def test_a_training_with_explain_true_concludes_its_extend(models: dict[str, Any]) -> None:
    """Concluding, the training reads its own model to log the maps while its --extend is still pending: that read
    was refused as "an --extend that did not finish", so every retry trained and failed at the same point."""
    import json

    res = api.train(None, models["seg"], resume=True, extend=1, workers=0, show_progress=False)
    assert "extension" not in json.loads((models["seg"] / "train_config.json").read_text())
    assert res.fold_epochs and all(e >= 2 for e in res.fold_epochs.values())


@pytest.mark.slow
def test_maps_that_fail_are_said_and_the_training_concludes(
    models: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``explain: true``'s maps are pictures, not the model: a failure making them is a warning and the training
    concludes with its model (it failed the conclusion, and each ``--resume`` failed again)."""
    import automed.workflow.explain as explain_module

    def broken(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("hook failed")

    monkeypatch.setattr(explain_module, "log_validation_maps", broken)
    root = models["root"]
    with caplog.at_level(logging.WARNING, logger="automed"):
        res = api.train(
            root / "s", root / "Wfail", config=root / "cfg.yaml", folds=2, workers=0, show_progress=False,
            register=False, tracking_uri=f"sqlite:///{root / 'm.db'}",
        )  # fmt: skip
    assert (res.workdir / "model.json").is_file() and res.model.folds == [0, 1]
    assert "attention maps were not logged (RuntimeError: hook failed)" in caplog.text
