"""Export to ONNX / OpenVINO with parity on a trained tiny model, and the standalone bundle run from clean venvs
(numpy + SimpleITK + onnxruntime, or + openvino; no torch, no automed) matching automed's own prediction."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from automed import api
from automed.errors import ConfigError
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
    import onnx

    model = onnx.load(str(b / "networks/onnx/fold_0.onnx"))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert (
        dims[0] == "batch" and dims[1] == 1 and all(isinstance(d, str) for d in dims[2:])
    )  # dynamic spatial axes
    assert model.opset_import[0].version >= 17
    rep = json.loads((b / "export.json").read_text())
    assert set(rep["parity"]) == {"onnxruntime", "openvino_f32", "openvino_bf16"}
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


def _reference(work: Path, image: Path) -> np.ndarray:
    from automed.data.io import read_image
    from automed.infer.predictor import Predictor

    pred = Predictor.from_workdir(work)
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
