"""Export to ONNX / OpenVINO with parity on a trained tiny model, and the standalone bundle run from clean venvs
(numpy + SimpleITK + onnxruntime, or + openvino; no torch, no automed) matching automed's own prediction."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

from automed import api
from automed.errors import ArtifactError, ConfigError, DatasetError
from automed.testing.synthetic import make_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export")
    ds = make_dataset(
        root / "data", n_cases=6, shape=(12, 24, 24), spacing=(2.5, 1.0, 1.0), seed=3,
        direction=(0, 1, 0, 1, 0, 0, 0, 0, -1),
    )  # fmt: skip
    cfg = root / "cfg.yaml"
    cfg.write_text("epochs: 2\niterations_per_epoch: 4\nval_iterations: 2\n")
    api.train(
        ds,
        root / "W",
        config=cfg,
        folds=2,
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        workers=0,
        show_progress=False,
    )
    res = api.export(root / "W", root / "bundle", ov_precision="bf16")
    inputs = root / "in"
    inputs.mkdir()
    for f in sorted((ds / "imagesTr").iterdir())[:2]:
        (inputs / f.name).symlink_to(f)
    return {"root": root, "bundle": res.folder, "work": root / "W", "inputs": inputs}


def test_export_files_and_parity(exported: dict[str, Path]) -> None:
    b = exported["bundle"]
    for f in ("networks/onnx/fold_0.onnx", "networks/onnx/fold_1.onnx", "networks/openvino/fold_0.xml",
              "networks/openvino/fold_1.bin", "predict.py", "runtime/cli.py", "preprocess.json", "README.md",
              "requirements-onnx.txt", "requirements-openvino.txt", "export.json"):  # fmt: skip
        assert (b / f).is_file(), f
    from automed.export.bundle import CONTINUE_TEXT, OUTPUT_TEXT

    assert CONTINUE_TEXT in (b / "README.md").read_text()  # how to take up an unfinished run
    assert OUTPUT_TEXT in (b / "README.md").read_text()  # where predict.py writes
    card = (b / "MODEL_CARD.md").read_text()
    assert "## Cross-validation" in card and "## Intended use" in card and "Not a medical device" in card
    import onnx

    model = onnx.load(str(b / "networks/onnx/fold_0.onnx"))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert (
        dims[0] == "batch" and dims[1] == 1 and all(isinstance(d, str) for d in dims[2:])
    )  # dynamic spatial axes
    assert model.opset_import[0].version >= 17
    rep = json.loads((b / "export.json").read_text())
    assert set(rep["parity"]) == {"onnxruntime", "openvino_f32", "openvino_bf16", "bundle_openvino"}
    # the bundle's own code (its runtime/ copy, settings from preprocess.json: OpenVINO bf16, what predict.py picks
    # here) was run at export, not only its networks
    assert (
        rep["parity"]["bundle_openvino"]["precision"] == "bf16"
        and rep["latency_seconds"]["bundle_openvino"] > 0
    )
    assert (
        rep["parity"]["onnxruntime"]["max_abs_prob"] <= 1e-3
        and rep["parity"]["onnxruntime"]["dice_vs_torch"] >= 0.999
    )
    assert rep["parity"]["openvino_f32"]["max_abs_prob"] <= 1e-3
    assert all(p["passed"] for p in rep["parity"].values())
    assert set(rep["latency_seconds"]) >= {
        "torch_fp32",
        "torch_default",
        "onnxruntime",
        "openvino_f32",
        "openvino_bf16",
    }
    # FP32 weights on disk (OpenVINO's default would have halved them)
    assert (b / "networks/openvino/fold_0.bin").stat().st_size > 0.9 * (
        b / "networks/onnx/fold_0.onnx"
    ).stat().st_size


def _venv(root: Path, packages: list[str]) -> Path:
    venv = root / f"venv-{'-'.join(packages)}"
    if not venv.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "numpy", "SimpleITK", *packages], check=True
        )
    return venv / "bin" / "python"


def _reference(work: Path, image: Path, **options: Any) -> np.ndarray:
    """Torch's label map of ``image`` in float32; ``options``: ``folds``, ``step`` (automed predict's)."""
    from automed.data.io import read_image
    from automed.infer.predictor import Predictor

    pred = Predictor.from_workdir(work, **options)
    pred.amp_dtype = None  # float32, as the exported networks run
    arrays, geo = read_image(image)
    return pred.predict_arrays(np.stack(arrays).astype(np.float32), geo).labels


@pytest.mark.parametrize(("runtime", "package"), [("onnx", "onnxruntime"), ("openvino", "openvino")])
def test_bundle_runs_in_a_clean_venv(exported: dict[str, Path], runtime: str, package: str) -> None:
    py = _venv(exported["root"], [package])
    no_torch = subprocess.run([str(py), "-c", "import torch"], capture_output=True)
    no_automed = subprocess.run([str(py), "-c", "import automed"], capture_output=True, cwd=exported["root"])
    assert no_torch.returncode != 0 and no_automed.returncode != 0
    out = exported["root"] / f"out-{runtime}"
    bundle = exported["root"] / f"bundle-{runtime}"
    shutil.copytree(exported["bundle"], bundle, dirs_exist_ok=True)
    meta = json.loads((bundle / "preprocess.json").read_text())
    if runtime == "openvino":  # compare at float32 (the bundle's setting is what export chose)
        assert meta["inference"]["openvino_precision"] == "bf16"
        meta["inference"]["openvino_precision"] = "f32"
        (bundle / "preprocess.json").write_text(json.dumps(meta))
    run = subprocess.run(
        [str(py), str(bundle / "predict.py"), "-i", str(exported["inputs"]), "-o", str(out), "--runtime", runtime],
        capture_output=True, text=True, cwd=exported["root"],
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    for image in sorted(exported["inputs"].iterdir()):
        got = sitk.ReadImage(str(out / image.name))
        ref_img = sitk.ReadImage(str(image))
        assert got.GetSize() == ref_img.GetSize() and got.GetSpacing() == ref_img.GetSpacing()
        assert got.GetOrigin() == ref_img.GetOrigin() and got.GetDirection() == ref_img.GetDirection()
        assert (sitk.GetArrayFromImage(got) == _reference(exported["work"], image)).mean() >= 0.999


def test_bad_format_is_refused(exported: dict[str, Path]) -> None:
    with pytest.raises(ConfigError) as e:
        api.export(exported["work"], exported["root"] / "x", formats="onnx,openvnio")
    assert "Did you mean 'openvino'?" in str(e.value) and not (exported["root"] / "x").exists()


def test_failed_parity_keeps_the_earlier_export(
    exported: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from automed.export import export as export_mod

    root, bundle = exported["root"], exported["bundle"]
    before = {p.relative_to(bundle): p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    monkeypatch.setitem(export_mod.THRESHOLDS, "f32", {"max_abs_prob": -1.0, "min_dice": 2.0})
    with pytest.raises(ConfigError) as e:
        api.export(exported["work"], bundle, formats="onnx")
    kept = exported["work"] / "bundle.parity-failed.json"  # in the work dir, not among the user's files
    assert str(kept) in str(e.value) and "onnxruntime: max |dp|" in str(e.value)
    assert json.loads(kept.read_text())["parity"]["onnxruntime"]["passed"] is False
    after = {p.relative_to(bundle): p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    assert after == before  # the earlier export is untouched
    assert not [p for p in root.iterdir() if p.name.startswith(".bundle.tmp-")]  # nothing half-written
    assert not (root / "bundle.parity-failed.json").exists()


def test_a_registry_failure_leaves_no_url_or_path_in_the_export(
    exported: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """export.json travels (package ships it): a failing registry's message, which may hold the store's password
    or a local path, stays on the console."""
    import automed.export.mlflow_attach as attach

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("API request to http://alice:s3cret@10.0.0.1/api failed; see /home/alice/secret/x")

    monkeypatch.setattr(attach, "attach_export", fail)
    out = exported["root"] / "export_registry_down"
    api.export(exported["work"], out, formats="onnx", link=False)
    text = (out / "export.json").read_text()
    assert "s3cret" not in text and "/home/alice" not in text
    assert json.loads(text)["registered"]["error"].startswith("RuntimeError")


def test_package_ships_the_work_dirs_own_export_while_it_is_the_models(exported: dict[str, Path]) -> None:
    """Without --export, package ships the export `automed export` linked to the work dir (the model's weights,
    parity passed, both runtimes, case IDs as asked) instead of exporting again (40-76 s each); otherwise it
    exports into a temporary folder and leaves the work dir's link as it was."""
    from typer.testing import CliRunner

    from automed import cli

    link = exported["work"] / "export_link.json"
    before = json.loads(link.read_text())["path"]
    cube = exported["root"] / "cube_linked"
    r = CliRunner().invoke(cli.app, ["package", str(exported["work"]), "--mlcube", str(cube)])
    assert r.exit_code == 0, r.output
    assert "not exported again" in r.output and str(exported["bundle"].resolve()) in r.output.replace(
        "\n", ""
    )
    onnx = "networks/onnx/fold_0.onnx"
    shipped = cube / "mlcube" / "workspace" / "additional_files" / onnx
    assert shipped.read_bytes() == (exported["bundle"] / onnx).read_bytes()
    # settings chosen after the export (automed select's inference.json): the export is not shipped
    from automed.train.meta import InferenceChoice, load_model
    from automed.workflow.export import _linked_export

    inference = load_model(exported["work"]).inference
    choice = InferenceChoice(selection="S", inference=inference.model_copy(update={"tta": not inference.tta}))
    choice.save(exported["work"] / "inference.json")
    try:
        assert _linked_export(exported["work"], keep_case_ids=False) is None
    finally:
        (exported["work"] / "inference.json").unlink()
    assert _linked_export(exported["work"], keep_case_ids=False) is not None
    # the export hides case IDs: asked to keep them, package exports afresh
    res = api.package(exported["work"], exported["root"] / "cube_tmp_export", keep_case_ids=True)
    assert res.export is None and (res.folder / "mlcube" / "mlcube.yaml").is_file()
    assert json.loads(link.read_text())["path"] == before == str(exported["bundle"].resolve())


def test_package_cube(exported: dict[str, Path]) -> None:
    import shutil as sh

    import yaml

    from automed.package.schemas import validate_cube

    cube = api.package(exported["work"], exported["root"] / "cube", export_dir=exported["bundle"]).folder
    packed = (cube / "additional_files.tar.gz").read_bytes()
    # an export of other weights (another model, or this one before retraining) is refused
    other = exported["root"] / "other_export"
    sh.copytree(exported["bundle"], other)
    report = json.loads((other / "export.json").read_text())
    assert report["checkpoints"] and all(len(d) == 64 for d in report["checkpoints"])
    (other / "export.json").write_text(json.dumps({**report, "checkpoints": ["0" * 64]}))
    with pytest.raises(ArtifactError, match="another model's export"):
        api.package(exported["work"], exported["root"] / "cube_other", export_dir=other)
    # an export of one format would build an image that cannot predict (CPU: OpenVINO, CUDA: ONNX)
    (other / "export.json").write_text(json.dumps({**report, "formats": ["onnx"]}))
    with pytest.raises(ArtifactError, match="formats \\['onnx'\\]: no openvino"):
        api.package(exported["work"], exported["root"] / "cube_other", export_dir=other)
    mlcube, container = validate_cube(cube)
    assert (
        "## Intended use" in (cube / "MODEL_CARD.md").read_text()
        and "MODEL_CARD.md" in (cube / "README.md").read_text()
    )
    infer = mlcube.tasks["infer"].parameters
    assert set(infer.inputs) == {"data_path", "parameters_file", "additional_files"} and set(
        infer.outputs
    ) == {"output_path"}
    assert all(p.opts == "ro" for p in infer.inputs.values()) and "evaluate" in mlcube.tasks
    vols = container.tasks["infer"]
    assert vols.input_volumes["data_path"].mount_path == "/mlcommons/volumes/data"
    assert vols.output_volumes["output_path"].mount_path == "/mlcommons/volumes/predictions"
    for req in ("requirements.txt", "requirements-cuda.txt"):
        text = (cube / "project" / req).read_text().lower()
        assert all(bad not in text for bad in ("torch", "automed", "ray", "mlflow")) and "==" in text
    hadolint = sh.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if Path(hadolint).is_file():
        for f in ("Dockerfile", "Dockerfile.cuda"):
            lint = subprocess.run([hadolint, str(cube / "project" / f)], capture_output=True, text=True)
            assert lint.returncode == 0, lint.stdout
    # schema checks catch a broken description
    broken = yaml.safe_load((cube / "container_config.yaml").read_text())
    broken["tasks"]["infer"]["input_volumes"]["data_path"]["mount_path"] = "/data"
    (cube / "container_config.yaml").write_text(yaml.safe_dump(broken))
    with pytest.raises(ConfigError) as e:
        validate_cube(cube)
    assert "/mlcommons/volumes/" in str(e.value)
    # rebuilt over a cube whose workspace links the user's dataset (MLCube's habit): replaced whole, the link
    # removed with the earlier cube, the dataset's files untouched (the link was refused as if written through)
    data = exported["root"] / "users_data"
    data.mkdir()
    (data / "case.nii.gz").write_text("the user's image")
    (cube / "mlcube" / "workspace" / "data").symlink_to(data, target_is_directory=True)
    again = api.package(exported["work"], cube, export_dir=exported["bundle"]).folder
    validate_cube(again)  # the broken description above replaced too
    # the same model packs into the same bytes (gzip's header and the members had stamped the time of packing)
    assert (again / "additional_files.tar.gz").read_bytes() == packed
    assert not (again / "mlcube" / "workspace" / "data").exists()
    assert [p.name for p in data.iterdir()] == ["case.nii.gz"] and (data / "case.nii.gz").read_text() == (
        "the user's image"
    )


def test_cube_entry_point_offline_unprivileged_read_only(exported: dict[str, Path]) -> None:
    """The cube's entry point in a clean venv, without network, as user nobody, with read-only inputs: MLCube's
    argv convention, MedPerf's no-argument convention, and the evaluate task."""
    import os
    import shutil as sh
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="automed-cube-"))  # world-readable, unlike pytest's tmp dirs
    base.chmod(0o755)
    try:
        cube = api.package(exported["work"], base / "cube", export_dir=exported["bundle"]).folder
        py = _venv(base, ["onnxruntime"])
        ws = cube / "mlcube" / "workspace"
        (ws / "parameters.yaml").write_text("runtime: onnx\ntta: true\nthreads: 1\n")
        data = base / "data"
        data.mkdir()
        for f in sorted(exported["inputs"].iterdir()):
            sh.copy(f.resolve(), data / f.name)
        vols = base / "volumes"
        for sub in ("parameters", "predictions"):
            (vols / sub).mkdir(parents=True)
        sh.copy(ws / "parameters.yaml", vols / "parameters" / "parameters_file.yaml")
        (vols / "data").symlink_to(data)
        (vols / "additional_files").symlink_to(ws / "additional_files")
        out = base / "out"
        out.mkdir()
        sandbox: list[str] = []
        if os.geteuid() == 0 and sh.which("unshare") and sh.which("setpriv"):
            sandbox = ["unshare", "-n", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
            for d in (out, vols / "predictions"):
                os.chown(d, 65534, 65534)
        for p in [data, ws, cube / "project", vols / "parameters"]:  # inputs read-only for everyone
            for f in [p, *p.rglob("*")]:
                f.chmod(f.stat().st_mode & ~0o222)
        entry = str(cube / "project" / "entry.py")
        mlcube_run = subprocess.run(
            [*sandbox, str(py), entry, "infer", f"--data_path={data}", f"--parameters_file={ws / 'parameters.yaml'}",
             f"--additional_files={ws / 'additional_files'}", f"--output_path={out}"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert mlcube_run.returncode == 0, mlcube_run.stderr[-2000:]
        medperf_run = subprocess.run(
            [*sandbox, str(py), entry],
            capture_output=True,
            text=True,
            env={**os.environ, "MLCOMMONS_VOLUMES": str(vols)},
        )
        assert medperf_run.returncode == 0, medperf_run.stderr[-2000:]
        for image in sorted(data.iterdir()):
            ref = _reference(exported["work"], image)
            for folder in (out, vols / "predictions"):
                got = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / image.name)))
                assert (got == ref).mean() >= 0.999
        if sandbox:  # nothing could be written next to the inputs
            assert sorted(p.name for p in data.iterdir()) == sorted(
                p.name for p in exported["inputs"].iterdir()
            )
        labels = (
            base / "labels"
        )  # references that differ from the predictions: the first label loses half its voxels
        labels.mkdir()
        expected: dict[str, dict[str, float]] = {}
        for f in sorted(data.iterdir()):
            pred = sitk.ReadImage(str(out / f.name))
            arr = sitk.GetArrayFromImage(pred)
            ref = arr.copy()
            first = np.flatnonzero(ref == 1)
            ref.flat[first[: len(first) // 2]] = 0
            img = sitk.GetImageFromArray(ref)
            img.CopyInformation(pred)
            sitk.WriteImage(img, str(labels / f.name))
            expected[f.name] = {
                str(v): 2
                * float(((arr == v) & (ref == v)).sum())
                / float((arr == v).sum() + (ref == v).sum())
                for v in (1, 2)
                if (arr == v).any() or (ref == v).any()
            }
        result = base / "results.yaml"
        ev = subprocess.run(
            [str(py), entry, "evaluate", f"--predictions={out}", f"--labels={labels}", f"--output_path={result}"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert ev.returncode == 0, ev.stderr[-2000:]
        import yaml

        scored = yaml.safe_load(result.read_text())
        assert "0" not in scored["dice_mean"]  # background is never scored
        for i, (name, want) in enumerate(
            sorted(expected.items()), start=1
        ):  # numbered: names stay at the site
            assert scored["dice_per_case"][f"case_{i}"] == pytest.approx(want)
            assert name not in result.read_text()
        assert scored["dice_mean"]["1"] < 1.0
    finally:
        for f in [base, *base.rglob("*")]:
            if not f.is_symlink():
                f.chmod(0o755)
        sh.rmtree(base, ignore_errors=True)


def test_predict_runs_the_linked_export_without_torch(exported: dict[str, Path]) -> None:
    """`automed export WORKDIR` links the export; `automed predict WORKDIR` then runs OpenVINO (torch never imported)
    and agrees with torch; changed checkpoints make it fall back to torch, and forcing the export then fails."""
    link = json.loads((exported["work"] / "export_link.json").read_text())
    assert link["parity_passed"] and Path(link["path"]) == exported["bundle"].resolve()
    out = exported["root"] / "pred-auto"
    script = (
        "import sys; from automed import api; seen = [];"
        f"api.predict({str(exported['work'])!r}, {str(exported['inputs'])!r}, {str(out)!r}, show_progress=False,"
        " on_load=seen.append); print(seen[0]); print('torch' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    used, torch_loaded = run.stdout.strip().splitlines()[-2:]
    assert used.startswith("openvino export") and torch_loaded == "False", run.stdout
    for image in sorted(exported["inputs"].iterdir()):
        got = sitk.GetArrayFromImage(sitk.ReadImage(str(out / image.name)))
        assert (got == _reference(exported["work"], image)).mean() >= 0.99  # bf16 vs float32

    moved = exported["root"] / "W-retrained"
    shutil.copytree(exported["work"], moved)
    ckpt = moved / "train" / "3d_fullres" / "fold_0" / "checkpoint_final.pt"
    import torch

    state = torch.load(ckpt, weights_only=False)
    state["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in state["model"].items()}
    torch.save(state, ckpt)
    seen: list[str] = []
    api.predict(
        moved, exported["inputs"], exported["root"] / "pred-moved", show_progress=False, on_load=seen.append
    )
    assert seen[0].startswith("torch")
    with pytest.raises(ArtifactError) as e:
        api.predict(
            moved, exported["inputs"], exported["root"] / "pred-x", show_progress=False, runtime="openvino"
        )
    assert "folds changed" in str(e.value) and "automed export" in str(e.value)


def test_folds_and_step_run_through_the_export_and_its_bundle(exported: dict[str, Path]) -> None:
    """`automed predict --runtime onnx --folds 1 --step-size 1` was refused ("runs the export with the folds and window
    step it was exported with"); it now runs the export's fold 1 alone at that step, as torch does, and so does the
    bundle's predict.py (the export records which fold each network is)."""
    from automed.runtime import cli

    work, bundle, inputs = exported["work"], exported["bundle"], exported["inputs"]
    assert json.loads((bundle / "preprocess.json").read_text())["folds"] == [0, 1]
    with pytest.raises(ConfigError, match=r"has \(0, 1\); found --folds 3"):
        api.predict(work, inputs, exported["root"] / "no", show_progress=False, runtime="onnx", folds=[3])
    assert not (exported["root"] / "no").exists()
    seen: list[str] = []
    out, own = exported["root"] / "pred-fold1", exported["root"] / "bundle-fold1"
    api.predict(
        work, inputs, out, show_progress=False, runtime="onnx", folds=[1], step=1.0, on_load=seen.append
    )
    assert seen[0].startswith("onnx export"), seen
    args = ["-i", str(inputs), "-o", str(own), "--runtime", "onnx", "--folds", "1", "--step-size", "1"]
    assert cli.main(args, bundle=bundle) == 0
    for image in sorted(inputs.iterdir()):
        got = sitk.GetArrayFromImage(sitk.ReadImage(str(out / image.name)))
        assert np.array_equal(got, sitk.GetArrayFromImage(sitk.ReadImage(str(own / image.name))))
        assert (got == _reference(work, image, folds=[1], step=1.0)).mean() >= 0.999
    # the bundle's --save-probabilities writes what automed predict --save-probabilities writes
    probs, own_probs = exported["root"] / "pred-fold1-probs", exported["root"] / "bundle-fold1-probs"
    api.predict(
        work, inputs, probs, show_progress=False, runtime="onnx", folds=[1], step=1.0, save_probabilities=True
    )
    assert cli.main([*args[:2], "-o", str(own_probs), *args[4:], "--save-probabilities"], bundle=bundle) == 0
    for image in sorted(inputs.iterdir()):
        case = image.name.removesuffix(".nii.gz")
        with np.load(probs / f"{case}.npz") as a, np.load(own_probs / f"{case}.npz") as b:
            assert (
                a["labels"].tolist() == b["labels"].tolist()
                and a["probabilities"].shape == b["probabilities"].shape
            )
            assert float(np.abs(a["probabilities"] - b["probabilities"]).max()) <= 1e-5
    # fold 1's network, not fold 0's: the probabilities match torch's fold 1 and not its fold 0
    from automed.data.io import read_image
    from automed.infer.exported import ExportedPredictor
    from automed.infer.predictor import Predictor

    arrays, geo = read_image(sorted(inputs.iterdir())[0])
    channels = np.stack(arrays).astype(np.float32)
    mine = ExportedPredictor(bundle, runtime="onnx", folds=[1], step=1.0).predict_arrays(
        channels, geo, probabilities=True
    )
    gaps = []
    for fold in (1, 0):
        torch_pred = Predictor.from_workdir(work, folds=[fold], step=1.0)
        torch_pred.amp_dtype = None
        theirs = torch_pred.predict_arrays(channels, geo, probabilities=True)
        assert mine.probabilities is not None and theirs.probabilities is not None
        gaps.append(float(np.abs(mine.probabilities - theirs.probabilities).max()))
    assert gaps[0] <= 1e-3 < gaps[1], gaps


def test_a_registered_models_export_knows_its_folds(exported: dict[str, Path]) -> None:
    """`automed export models:/...` recorded no fold numbers (the downloaded bundle was not read), so its bundle's
    predict.py refused --folds that the work dir's export takes; the registered bundle's model.json gives them."""
    from automed.runtime import cli

    store = f"sqlite:///{exported['root'] / 'mlflow.db'}"
    reg = api.export(
        "models:/automed-Synthetic@champion",
        exported["root"] / "reg_bundle",
        formats="onnx",
        tracking_uri=store,
        case=sorted(exported["inputs"].iterdir())[0],
    ).folder
    assert json.loads((reg / "preprocess.json").read_text())["folds"] == [0, 1]
    assert "predicts with only those of its folds (0, 1)" in (reg / "README.md").read_text()
    outs = {name: exported["root"] / f"{name}-fold1" for name in ("registered", "work")}
    for name, bundle in (("registered", reg), ("work", exported["bundle"])):
        args = ["-i", str(exported["inputs"]), "-o", str(outs[name]), "--runtime", "onnx", "--folds", "1"]
        assert cli.main(args, bundle=bundle) == 0
    for image in sorted(exported["inputs"].iterdir()):
        mine, theirs = (sitk.GetArrayFromImage(sitk.ReadImage(str(outs[n] / image.name))) for n in outs)
        assert np.array_equal(mine, theirs)
    with pytest.raises(SystemExit, match=r"holds \(0, 1\); found --folds 2"):
        cli.main(
            ["-i", str(exported["inputs"]), "-o", str(exported["root"] / "no2"), "--folds", "2"], bundle=reg
        )


def test_the_cube_takes_folds_and_step_size(exported: dict[str, Path]) -> None:
    """A cube's parameters file sets ``folds`` and ``step_size`` (``automed predict`` and ``predict.py`` took them, a
    cube did not): its entry point, run as MLCube runs it, predicts as the bundle's ``--folds 1 --step-size 1``."""
    from automed.runtime import cli

    root, inputs = exported["root"], exported["inputs"]
    cube = api.package(exported["work"], root / "cube_folds", export_dir=exported["bundle"]).folder
    ws = cube / "mlcube" / "workspace"
    assert "# folds: 0,1" in (ws / "parameters.yaml").read_text()
    assert "`folds`" in (cube / "README.md").read_text() and "`step_size`" in (cube / "README.md").read_text()
    (root / "cube_params.yaml").write_text("runtime: onnx\nthreads: 1\nfolds: 1\nstep_size: 1\n")
    entry = [sys.executable, str(cube / "project" / "entry.py"), "infer", f"--data_path={inputs}",
             f"--parameters_file={root / 'cube_params.yaml'}", f"--additional_files={ws / 'additional_files'}"]  # fmt: skip
    run = subprocess.run([*entry, f"--output_path={root / 'cube_out'}"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    own = root / "cube_ref"
    args = ["-i", str(inputs), "-o", str(own), "--runtime", "onnx", "--folds", "1", "--step-size", "1"]
    assert cli.main(args, bundle=exported["bundle"]) == 0
    for image in sorted(inputs.iterdir()):
        got = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "cube_out" / image.name)))
        assert np.array_equal(got, sitk.GetArrayFromImage(sitk.ReadImage(str(own / image.name))))
    (root / "cube_params.yaml").write_text("runtime: onnx\nfolds: 3\n")
    bad = subprocess.run([*entry, f"--output_path={root / 'cube_out3'}"], capture_output=True, text=True)
    assert bad.returncode != 0 and "holds (0, 1); found --folds 3" in bad.stderr
    assert not (root / "cube_out3").exists()


def test_bundle_refuses_non_finite_voxels_unless_nan_to(exported: dict[str, Path], tmp_path: Path) -> None:
    from automed.runtime import cli

    src = sorted(exported["inputs"].iterdir())[0]
    img = sitk.ReadImage(str(src))
    arr = sitk.GetArrayFromImage(img).astype(np.float32)
    arr[0, 0, :2] = np.nan
    arr[0, 1, 0] = -np.finfo(
        np.float32
    ).max  # a 'no data' marker: normalised, it had made the whole image NaN
    bad = sitk.GetImageFromArray(arr)
    bad.CopyInformation(img)
    inputs = tmp_path / "in"
    inputs.mkdir()
    sitk.WriteImage(bad, str(inputs / "nan.mha"))
    args = ["-i", str(inputs), "-o", str(tmp_path / "out"), "--runtime", "onnx"]
    with pytest.raises(
        SystemExit, match=r"must be finite intensities, found 3 NaN, infinite or beyond .*--nan-to"
    ):
        cli.main(args, bundle=exported["bundle"])
    assert cli.main([*args, "--nan-to", "0"], bundle=exported["bundle"]) == 0
    assert (tmp_path / "out" / "nan.mha").is_file()


def test_the_bundle_continues_an_unfinished_run(exported: dict[str, Path], tmp_path: Path) -> None:
    from automed.runtime import cli

    out = tmp_path / "out"
    args = ["-i", str(exported["inputs"]), "-o", str(out), "--runtime", "onnx"]
    assert cli.main(args, bundle=exported["bundle"]) == 0
    first, second = sorted(p for p in out.iterdir() if not p.name.startswith("."))
    second.unlink()  # the run was killed before its second case
    before = first.stat().st_mtime_ns
    with pytest.raises(SystemExit, match="already holds"):
        cli.main(args, bundle=exported["bundle"])
    with pytest.raises(SystemExit, match=r"same --no-tta, --folds and --step-size settings.*new folder"):
        cli.main([*args, "--continue", "--no-tta"], bundle=exported["bundle"])
    with pytest.raises(SystemExit, match=r"--continue keeps .* --overwrite replaces"):
        cli.main([*args, "--continue", "--overwrite"], bundle=exported["bundle"])
    assert cli.main([*args, "--continue"], bundle=exported["bundle"]) == 0
    assert second.is_file() and first.stat().st_mtime_ns == before  # only the missing case was predicted


def test_every_openvino_precision_has_parity_thresholds() -> None:
    """`--ov-precision` offers exactly the precisions both parity checks can judge (f16 was offered without)."""
    from automed.export import export, image_level

    assert set(export.THRESHOLDS) == set(image_level.THRESHOLDS) == {"f32", "bf16", "f16"}
    assert image_level.THRESHOLDS == {"f32": 1e-3, "bf16": 0.1, "f16": 0.1}


def test_a_3d_segmentation_model_refuses_a_picture(exported: dict[str, Path], tmp_path: Path) -> None:
    """A 3D network over a PNG wrote a meaningless 2D label map: refused before writing, by automed predict (the
    export, or torch) and by the bundle."""
    from automed.runtime import cli

    pics = tmp_path / "pics"
    pics.mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((32, 32), np.uint8)), str(pics / "x.png"))
    for runtime in ("auto", "torch"):
        with pytest.raises(DatasetError, match=r"trained on volumes \(3D\)"):
            api.predict(
                exported["work"], pics, tmp_path / f"p_{runtime}", show_progress=False, runtime=runtime
            )
        assert not (tmp_path / f"p_{runtime}").exists()
    with pytest.raises(SystemExit, match=r"trained on volumes \(3D\), this is a picture"):
        cli.main(["-i", str(pics), "-o", str(tmp_path / "b"), "--runtime", "onnx"], bundle=exported["bundle"])


def test_the_bundles_overwrite_replaces_its_earlier_run_whole(exported: dict[str, Path]) -> None:
    """predict.py --overwrite replaced only the cases of its own input: an earlier run's other label maps stayed,
    recorded as made with the new settings, so --continue skipped them and the cube's evaluate scored them. They go
    now (named), as automed predict --overwrite removes them; a refused input leaves no folder behind."""
    from automed.runtime import cli

    bundle, inputs, root = exported["bundle"], exported["inputs"], exported["root"]
    out = root / "bundle-overwrite"
    assert cli.main(["-i", str(inputs), "-o", str(out), "--no-tta"], bundle=bundle) == 0
    first, second = sorted(inputs.iterdir())
    fewer = root / "in-one"
    fewer.mkdir()
    (fewer / second.name).symlink_to(second.resolve())
    result = subprocess.run(
        [sys.executable, str(bundle / "predict.py"), "-i", str(fewer), "-o", str(out), "--overwrite", "--runtime", "onnx"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        f"--overwrite removed 1 earlier prediction(s) this run did not write: {first.name}" in result.stderr
    )
    assert sorted(p.name for p in out.iterdir()) == sorted([".bundle-predict.json", second.name])
    assert json.loads((out / ".bundle-predict.json").read_text())["tta"] is True
    # a picture for a 3D model: refused, and the folder this run would have made is not left behind
    picture = root / "in-picture"
    picture.mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((24, 24), np.uint8)), str(picture / "p.png"))
    with pytest.raises(SystemExit, match="the model was trained on volumes"):
        cli.main(["-i", str(picture), "-o", str(root / "never")], bundle=bundle)
    assert not (root / "never").exists()
