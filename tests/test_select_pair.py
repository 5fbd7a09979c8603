"""A pair of trainings chosen by selection is registered and predicts as the mean of its members' probabilities
with the pair's postprocessing: from the registry (champion), from the selection folder and as an MLflow pyfunc."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from mlflow.tracking import MlflowClient

from automed import api
from automed.data.io import read_image
from automed.errors import AutomedError
from automed.infer.predictor import Predictor
from automed.runtime.model import average
from automed.runtime.postprocess import apply
from automed.select.register import register_members
from automed.testing.synthetic import make_dataset
from automed.tracking import Tracker

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    root = tmp_path_factory.mktemp("pair")
    ds = make_dataset(root / "data", n_cases=6, shape=(12, 24, 24), spacing=(2.5, 1.0, 1.0), seed=5)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    work = []
    for seed in (0, 1):
        cfg = root / f"cfg{seed}.yaml"
        cfg.write_text(f"epochs: 2\niterations_per_epoch: 4\nval_iterations: 2\nseed: {seed}\n")
        api.train(
            ds, root / f"W{seed}", config=cfg, folds=2, tracking_uri=uri, workers=0, show_progress=False
        )
        work.append(root / f"W{seed}")
    inputs = root / "in"
    inputs.mkdir()
    image = sorted((ds / "imagesTr").iterdir())[0]
    (inputs / image.name).symlink_to(image)
    return {
        "root": root,
        "ds": ds,
        "uri": uri,
        "w0": work[0],
        "w1": work[1],
        "image": image,
        "inputs": inputs,
    }


def test_selection_of_two_trainings_is_recorded(pair: dict[str, Path | str]) -> None:
    root = Path(pair["root"])
    res = api.select([pair["w0"], pair["w1"]], root / "sel", inference=False)
    assert len(res["candidates"]) == 3 and len(res["candidates"][2]["members"]) == 2  # W0, W1, W0 + W1
    assert json.loads((root / "sel" / "selection.json").read_text())["chosen"] == res["chosen"]
    # two undertrained models: their average wins on CV (0.516 vs 0.470 and 0.457 here), so the pair is registered
    assert len(res["chosen"]["members"]) == 2, res["candidates"]
    assert res["registered"]["uri"].startswith("models:/automed-Synthetic/")
    assert (root / "sel" / "model_bundle" / "ensemble.json").is_file()
    assert res["registered"]["champion"] == res["registered"]["version"]  # better CV than either member
    # the same selection again: the same bundle, byte for byte, so no new version in the registry
    client = MlflowClient(str(pair["uri"]))
    name = res["registered"]["name"]
    before = len(client.search_model_versions(f"name='{name}'"))
    again = api.select([pair["w0"], pair["w1"]], root / "sel", inference=False)
    assert again["registered"]["version"] == res["registered"]["version"]
    assert len(client.search_model_versions(f"name='{name}'")) == before


def test_registered_pair_predicts_the_mean_of_its_members(pair: dict[str, Path | str]) -> None:
    root, w0, w1 = Path(pair["root"]), Path(pair["w0"]), Path(pair["w1"])
    steps = [{"kind": "largest_component", "labels": [1, 2]}]
    tracker = Tracker(str(pair["uri"]), "Synthetic")
    run = tracker.start_run("select-test")
    reg = register_members([w0, w1], root / "sel2", steps, 2.0, tracker, run)  # score 2: beats any champion
    tracker.end_run(run)
    assert reg["champion"] == reg["version"]
    ens = json.loads((root / "sel2" / "model_bundle" / "ensemble.json").read_text())
    assert [m["folder"] for m in ens["members"]] == ["member_0", "member_1"] and ens[
        "postprocessing"
    ] == steps

    arrays, geo = read_image(Path(pair["image"]))
    channels = np.stack(arrays).astype(np.float32)
    probs = [
        Predictor.from_workdir(w, postprocessing=[])
        .predict_arrays(channels, geo, probabilities=True)
        .probabilities
        for w in (w0, w1)
    ]
    assert probs[0] is not None and probs[1] is not None
    values = np.asarray(sorted(int(k) for k in json.loads((w0 / "model.json").read_text())["labels"]))
    expected = apply(values[((probs[0] + probs[1]) / 2).argmax(0)].astype(np.int16), steps)

    for model in ("models:/automed-Synthetic@champion", root / "sel2"):
        out = root / f"out-{'uri' if isinstance(model, str) else 'dir'}"
        paths = api.predict(model, pair["inputs"], out, tracking_uri=str(pair["uri"]), show_progress=False)
        got = sitk.GetArrayFromImage(sitk.ReadImage(str(paths[0])))
        assert np.array_equal(got, expected), model

    import mlflow

    mlflow.set_tracking_uri(str(pair["uri"]))
    model = mlflow.pyfunc.load_model("models:/automed-Synthetic@champion")
    sp = geo.spacing_zyx
    labels = model.predict(
        channels[None], params={"spacing_z": sp[0], "spacing_y": sp[1], "spacing_x": sp[2]}
    )
    assert labels.shape == (1, *channels.shape[1:]) and set(np.unique(labels)) <= {0, 1, 2}


def test_a_pair_predicts_with_the_folds_asked_of_each_member(pair: dict[str, Path | str]) -> None:
    """`automed predict SEL --folds 1` on a selection that chose a pair was refused ("predict with one training's
    work dir") while the exported pair's predict.py takes it: fold 1 of each member, averaged."""
    root, w0, w1 = Path(pair["root"]), Path(pair["w0"]), Path(pair["w1"])
    sel = root / "sel"
    if not (sel / "model_bundle" / "ensemble.json").is_file():
        api.select([w0, w1], sel, inference=False)
    loaded = api.load_predictor(sel, None, folds=[1])
    assert [len(m.models) for m in loaded.members] == [1, 1]  # fold 1 alone of each
    arrays, geo = read_image(Path(pair["image"]))
    channels = np.stack(arrays).astype(np.float32)
    probs = [
        Predictor.from_workdir(w, folds=[1], postprocessing=[])
        .predict_arrays(channels, geo, probabilities=True)
        .probabilities
        for w in (w0, w1)
    ]
    assert probs[0] is not None and probs[1] is not None
    values = np.asarray(sorted(int(k) for k in json.loads((w0 / "model.json").read_text())["labels"]))
    steps = json.loads((sel / "model_bundle" / "ensemble.json").read_text())["postprocessing"]
    expected, _ = average(probs, values, steps)  # a class bias among the steps is applied at the argmax
    paths = api.predict(sel, pair["inputs"], root / "out-sel-fold1", folds=[1], show_progress=False)
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(paths[0]))), expected)
    with pytest.raises(
        AutomedError,
        match=r"member 1 \(3d_fullres, member_0\) of this pair holds \(0, 1\); found --folds 3 \(no fold 3\)",
    ) as err:
        api.predict(sel, pair["inputs"], root / "out-sel-fold3", folds=[3], show_progress=False)
    assert "pass some of 0, 1 (those every member holds)" in str(err.value)


def test_pair_is_exported_as_one_bundle(pair: dict[str, Path | str]) -> None:
    """`automed export SEL` on a selection that chose a pair: every member's networks, parity of the averaged
    prediction, the bundle's predict.py and `automed predict SEL` (linked export, no torch) agree with torch; the
    cube packs both members."""
    root = Path(pair["root"])
    sel = root / "sel"
    if not (sel / "model_bundle" / "ensemble.json").is_file():
        api.select([pair["w0"], pair["w1"]], sel, inference=False)
    res = api.export(sel, ov_precision="f32", tracking_uri=str(pair["uri"]))
    b = res.folder
    assert b == sel / "export" and res.report["members"] == 2
    for f in ("networks/member_0/onnx/fold_0.onnx", "networks/member_1/openvino/fold_1.xml", "predict.py"):
        assert (b / f).is_file(), f
    meta = json.loads((b / "preprocess.json").read_text())
    assert len(meta["members"]) == 2 and all(m["inference"]["postprocessing"] == [] for m in meta["members"])
    assert set(res.report["parity"]) == {
        "onnxruntime",
        "openvino_f32",
        "bundle_openvino",
    }  # + the bundle's code
    assert all(p["passed"] and p["max_abs_prob"] <= 1e-3 for p in res.report["parity"].values())
    assert res.report["link"]["parity_passed"] and len(res.report["link"]["checkpoints"]) == 4

    arrays, geo = read_image(Path(pair["image"]))
    channels = np.stack(arrays).astype(np.float32)
    torch_pred = api.load_predictor(sel, None, runtime="torch")
    for m in torch_pred.members:
        m.amp_dtype = None  # float32, as the exported networks run
    expected = torch_pred.predict_arrays(channels, geo).labels

    got = {}
    for runtime in ("openvino", "onnx"):
        loaded: list[str] = []
        paths = api.predict(sel, pair["inputs"], root / f"out-{runtime}", runtime=runtime, on_load=loaded.append,
                            show_progress=False)  # fmt: skip
        assert loaded[0].startswith(f"{runtime} export"), loaded
        got[runtime] = sitk.GetArrayFromImage(sitk.ReadImage(str(paths[0])))
    run = subprocess.run(
        [sys.executable, str(b / "predict.py"), "-i", str(pair["inputs"]), "-o", str(root / "out-bundle"),
         "--runtime", "onnx"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    got["bundle"] = sitk.GetArrayFromImage(
        sitk.ReadImage(str(root / "out-bundle" / Path(pair["image"]).name))
    )
    for name, labels in got.items():
        assert (labels == expected).mean() >= 0.999, name
    # --folds on a pair takes those fold numbers from each member (it was refused: "each member would need its own")
    assert "only those folds of each member (0, 1)" in (b / "README.md").read_text()
    one = subprocess.run(
        [sys.executable, str(b / "predict.py"), "-i", str(pair["inputs"]), "-o", str(root / "out-fold1"),
         "--runtime", "onnx", "--folds", "1"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-2000:]
    assert json.loads((root / "out-fold1" / ".bundle-predict.json").read_text())["folds"] == [1]
    assert (root / "out-fold1" / Path(pair["image"]).name).is_file()
    # automed predict SEL --folds 1 with the export's runtime: the same folds of each member as predict.py
    by_automed = api.predict(sel, pair["inputs"], root / "out-onnx-fold1", runtime="onnx", folds=[1],
                             show_progress=False)  # fmt: skip
    assert np.array_equal(
        sitk.GetArrayFromImage(sitk.ReadImage(str(by_automed[0]))),
        sitk.GetArrayFromImage(sitk.ReadImage(str(root / "out-fold1" / Path(pair["image"]).name))),
    )
    with pytest.raises(AutomedError, match=r"no fold 3"):
        api.predict(
            sel, pair["inputs"], root / "out-onnx-fold3", runtime="onnx", folds=[3], show_progress=False
        )

    reg = json.loads((sel / "selection.json").read_text())["registered"]
    version = MlflowClient(str(pair["uri"])).get_model_version(reg["name"], reg["version"])
    assert version.description.startswith("# Synthetic: automed ensemble of 2 trainings")
    assert "| member | work dir |" in version.description and "## Export" in version.description

    champion = "models:/automed-Synthetic@champion"  # a registered pair exports too (parity on a given case)
    by_uri = api.export(
        champion, root / "exp-uri", formats="onnx", case=pair["image"], tracking_uri=str(pair["uri"])
    )
    assert by_uri.report["members"] == 2 and by_uri.report["parity"]["onnxruntime"]["passed"]
    # its members' fold numbers, read from the registered bundle as the selection folder's export has them
    by_uri_meta = json.loads((by_uri.folder / "preprocess.json").read_text())
    assert (
        [m["folds"] for m in by_uri_meta["members"]] == [m["folds"] for m in meta["members"]] == [[0, 1]] * 2
    )
    champ = MlflowClient(str(pair["uri"])).get_model_version_by_alias("automed-Synthetic", "champion")
    assert champ.description.startswith("# Synthetic: automed ensemble of 2 trainings")

    cube = api.package(sel, root / "cube", export_dir=b).folder
    packed = json.loads((cube / "mlcube" / "workspace" / "additional_files" / "preprocess.json").read_text())
    assert len(packed["members"]) == 2
    assert (cube / "mlcube" / "workspace" / "additional_files" / "networks" / "member_1" / "onnx").is_dir()
    assert (
        "# folds: 0,1  # only these folds of each member"
        in (cube / "mlcube" / "workspace" / "parameters.yaml").read_text()
    )


def test_report_of_two_trainings(pair: dict[str, Path | str], tmp_path: Path) -> None:
    res = api.report([pair["w0"], pair["w1"]], tmp_path / "R")
    page = res.page.read_text()
    assert "Training curves (every fold)" in page and (res.folder / "curves.png").is_file()
    thumbs = sorted((res.folder / "thumbnails").glob("*.png"))
    assert len(thumbs) == 2 * 6 * 2  # per run, case and structure (6 cases, labels 1 and 2)
    assert page.count("data:image/png;base64,") == 3 + len(thumbs)  # boxplots, curves, scatter, thumbnails
    assert {t["run_a"] for t in res.tests} == {"W0"} and all(t["n_cases"] == 6 for t in res.tests)
    assert res.logged == [str(pair["w0"]), str(pair["w1"])]  # into each training's MLflow run
    from mlflow.tracking import MlflowClient

    track = json.loads((Path(pair["w0"]) / "tracking.json").read_text())
    client = MlflowClient(tracking_uri=str(pair["uri"]))
    names = [f.path for f in client.list_artifacts(track["parent_run_id"], "report/W0_vs_W1")]
    assert "report/W0_vs_W1/report.html" in names and "report/W0_vs_W1/cases.csv" in names
    logged = Path(
        client.download_artifacts(track["parent_run_id"], "report/W0_vs_W1/report.html", str(tmp_path))
    )
    assert "case_000" not in logged.read_text() and "case_000" in page  # pseudonyms in MLflow, IDs locally
    assert (
        "Max-slice thumbnails" in page and "Max-slice thumbnails" not in logged.read_text()
    )  # no pictures sent
    # a report of one of them goes beside it, never among its files (the scatter and Wilcoxon tests of the pair
    # had stayed beside the one-run page); the same training given twice is compared once
    again = api.report([pair["w0"], pair["w0"]], tmp_path / "R1")
    assert again.tests == [] and not (again.folder / "scatter.png").exists()
    assert {f.path for f in client.list_artifacts(track["parent_run_id"], "report")} == {
        "report/W0",
        "report/W0_vs_W1",
    }
    assert not [f for f in client.list_artifacts(track["parent_run_id"], "report/W0") if "scatter" in f.path]


def test_report_of_an_mlflow_run_and_of_a_selection(pair: dict[str, Path | str], tmp_path: Path) -> None:
    """RUN = ``runs:/<id>`` (the training run's cv/ artifact and its folds' metric histories) or a selection folder
    (its candidate trainings, and the selection's table)."""
    root = Path(pair["root"])
    track = json.loads((Path(pair["w0"]) / "tracking.json").read_text())
    run = f"runs:/{track['parent_run_id']}"
    res = api.report([run, pair["w1"]], tmp_path / "R", tracking_uri=str(pair["uri"]), log_to_mlflow=False)
    page = res.page.read_text()
    name = f"run-{track['parent_run_id'][:8]}"
    assert "Training curves (every fold)" in page and (res.folder / "curves.png").is_file()
    assert "Mean per run and structure" in page and name in page
    cases = pd.read_csv(res.folder / "cases.csv")
    assert len(cases[cases["run"] == name]) == len(cases[cases["run"] == "W1"]) == 12  # 6 cases x 2 labels
    # the MLflow copy carries W0's pseudonyms, W1 its real IDs: nothing to pair, and the page says so
    assert res.tests == [] and "Not compared" in page and "no case ID in common" in page
    with pytest.raises(AutomedError, match="MLflow run"):
        api.report(["runs:/0123456789abcdef"], tmp_path / "X", tracking_uri=str(pair["uri"]))

    sel = root / "sel-report"
    api.select([pair["w0"], pair["w1"]], sel, inference=False)
    res = api.report([sel], tmp_path / "S", log_to_mlflow=False)
    page = res.page.read_text()
    assert (
        "Selection sel-report (" in page and "W0 + W1" in page and str(root) not in page.split("Per case")[0]
    )
    assert "{'kind'" not in page and "{&#x27;kind" not in page  # postprocessing in words, not a Python repr
    assert {t["run_a"] for t in res.tests} == {"W0"}  # its two candidate trainings, compared
