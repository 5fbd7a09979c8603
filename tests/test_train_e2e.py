"""Train -> register -> predict on tiny synthetic data; MLflow contents; prediction geometry; kill and resume.

Every test here trains (or serves) for real: the module is marked ``slow``; ``make test-fast`` leaves it out."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

from automed import api
from automed.errors import ArtifactError, ConfigError, DatasetError
from automed.testing.synthetic import make_dataset
from automed.workdir import WorkDir
from tests.conftest import automed_ui

pytestmark = pytest.mark.slow

TINY = {"epochs": 2}


def _tiny_config(path: Path, **kw: object) -> Path:
    cfg = {"epochs": 2, "iterations_per_epoch": 4, "val_iterations": 2, **kw}
    path.write_text("\n".join(f"{k}: {v}" for k, v in cfg.items()) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("e2e")
    ds = make_dataset(
        root / "data",
        n_cases=6,
        shape=(12, 24, 24),
        spacing=(2.5, 1.0, 1.0),
        n_channels=1,
        seed=3,
        direction=(0, 1, 0, 1, 0, 0, 0, 0, -1),
    )
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg = _tiny_config(root / "cfg.yaml")
    res = api.train(
        ds, root / "W", config=cfg, folds=2, tracking_uri=uri, workers=0, show_progress=False, overlays=1
    )
    return {"root": root, "ds": ds, "uri": uri, "res": res}


def test_train_writes_everything(trained: dict[str, object]) -> None:
    res = trained["res"]
    wd = res.workdir  # type: ignore[attr-defined]
    for f in (
        "model.json",
        "tracking.json",
        "train_config.json",
        "cv/metrics.csv",
        "cv/summary.json",
        "model_bundle/fold_0.pt",
        "model_bundle/fold_1.pt",
        "model_bundle/plan.json",
    ):
        assert (wd / f).is_file(), f
    for k in (0, 1):
        fold = wd / "train" / "3d_fullres" / f"fold_{k}"
        for f in ("checkpoint_final.pt", "checkpoint_latest.pt", "progress.json", "progress.png"):
            assert (fold / f).is_file(), f
        assert len(json.loads((fold / "progress.json").read_text())["history"]) == 2
    summary = json.loads((wd / "cv" / "summary.json").read_text())
    assert set(summary["mean"]) == {"1", "2"} and "dice" in summary["foreground_mean"]
    assert res.registered["version"] == "1" and res.registered["champion"] == "1"  # type: ignore[attr-defined]


def test_mlflow_contents(trained: dict[str, object], tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=str(trained["uri"]), registry_uri=str(trained["uri"]))
    exp = client.get_experiment_by_name("Synthetic")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert parent.data.params["config.optimizer"] == "auto"
    assert "plan.patch_size" in parent.data.params
    for tag in ("dataset.fingerprint", "git.commit", "automed.version", "device"):
        assert tag in parent.data.tags
    assert "cv_dice_fg_mean" in parent.data.metrics and "cv_dice_large" in parent.data.metrics
    assert parent.inputs.dataset_inputs[0].dataset.digest == parent.data.tags["dataset.fingerprint"]
    art = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"fingerprint.json", "plan.json", "splits.json", "cv"} <= art
    # the training's own selection is logged without the places relative to it (local folders stay here)
    own = Path(client.download_artifacts(parent.info.run_id, "selection/selection.json", str(tmp_path)))
    local = WorkDir(trained["res"].workdir).own_selection / "selection.json"  # type: ignore[attr-defined]
    assert '"relative"' in local.read_text()
    assert '"relative"' not in own.read_text() and str(trained["root"]) not in own.read_text()
    child = children[0]
    assert child.data.tags["optimizer"] == "adamw lr 0.003"  # auto: a few iterations are a short schedule
    hist = client.get_metric_history(child.info.run_id, "train_loss")
    assert [m.step for m in hist] == [1, 2]
    for key in (
        "val_loss",
        "pseudo_dice",
        "pseudo_dice_ema",
        "learning_rate",
        "epoch_seconds",
        "data_wait_fraction",
    ):
        assert key in child.data.metrics
    cart = {a.path for a in client.list_artifacts(child.info.run_id)}
    assert {"progress.png", "validation_metrics.csv", "overlays"} <= cart
    assert all(r.info.status == "FINISHED" for r in runs)
    mv = client.get_model_version_by_alias("automed-Synthetic", "champion")
    assert str(mv.version) == "1" and "cv_score" in mv.tags
    # the CV before postprocessing, the measure automed select chooses by and registers the same bundle with
    before = json.loads(local.read_text())["cv_dice_before_postprocessing"]["foreground_mean"]
    summary = json.loads((WorkDir(trained["res"].workdir).cv_summary).read_text())  # type: ignore[attr-defined]
    assert mv.tags["cv_score"] == f"{before:.6f}" == f"{summary['foreground_mean']['dice']:.6f}"
    assert str(client.get_model_version_by_alias("automed-Synthetic", "candidate").version) == "1"


def test_predict_geometry_and_registry_uri(trained: dict[str, object], tmp_path: Path) -> None:
    ds = trained["ds"]
    src = ds / "imagesTr" / "case_000.nii.gz"  # type: ignore[operator]
    inp = tmp_path / "in"
    inp.mkdir()
    img = sitk.ReadImage(str(src))
    sitk.WriteImage(img, str(inp / "scan.nii.gz"))
    # from another directory, with the store given explicitly
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        paths = api.predict(
            "models:/automed-Synthetic@champion",
            inp,
            tmp_path / "out",
            tracking_uri=str(trained["uri"]),
            show_progress=False,
        )
    finally:
        os.chdir(cwd)
    out = sitk.ReadImage(str(paths[0]))
    assert paths[0].name == "scan.nii.gz"
    assert out.GetSize() == img.GetSize()
    assert np.allclose(out.GetSpacing(), img.GetSpacing()) and np.allclose(out.GetOrigin(), img.GetOrigin())
    assert np.allclose(out.GetDirection(), img.GetDirection()) and img.GetDirection()[0] == 0
    # the work dir gives the same prediction as the registered model
    paths2 = api.predict(trained["res"].workdir, inp, tmp_path / "out2", show_progress=False)  # type: ignore[attr-defined]
    a = sitk.GetArrayFromImage(out)
    b = sitk.GetArrayFromImage(sitk.ReadImage(str(paths2[0])))
    assert np.array_equal(a, b)
    # so does the selection folder train wrote (it chose this training)
    sel = trained["res"].workdir / "selection"  # type: ignore[attr-defined]
    paths3 = api.predict(sel, inp, tmp_path / "out3", show_progress=False)
    assert np.array_equal(a, sitk.GetArrayFromImage(sitk.ReadImage(str(paths3[0]))))


def test_pyfunc_predict(trained: dict[str, object]) -> None:
    import mlflow

    mlflow.set_tracking_uri(str(trained["uri"]))
    mlflow.set_registry_uri(str(trained["uri"]))
    model = mlflow.pyfunc.load_model("models:/automed-Synthetic@champion")
    x = np.random.default_rng(0).normal(size=(1, 1, 12, 24, 24)).astype(np.float32)
    y = model.predict(x, params={"spacing_z": 2.5, "spacing_y": 1.0, "spacing_x": 1.0})
    assert y.shape == (1, 12, 24, 24) and y.dtype == np.int64


def test_the_registered_model_is_code_not_a_pickle(trained: dict[str, object], tmp_path: Path) -> None:
    """Logged from code: no pickle in the model; the automed package it carries is what a new process loads."""
    import subprocess
    import sys

    import mlflow

    mlflow.set_tracking_uri(str(trained["uri"]))
    mlflow.set_registry_uri(str(trained["uri"]))
    local = Path(
        mlflow.artifacts.download_artifacts("models:/automed-Synthetic@champion", dst_path=str(tmp_path))
    )
    files = [p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()]
    assert (
        not [f for f in files if f.endswith((".pkl", ".pickle"))]
        and "code/automed/registry_model.py" in files
    )
    assert not [f for f in files if "__pycache__" in f]
    import automed

    assert str(Path(automed.__file__).resolve().parent.parent) not in (local / "MLmodel").read_text()
    assert {"torch", "torchio", "SimpleITK"} <= {
        r.split("<")[0].split(">")[0].split("=")[0] for r in (local / "requirements.txt").read_text().split()
    }
    probe = (
        "import mlflow, numpy as np, sys; m = mlflow.pyfunc.load_model(sys.argv[1]); import automed; "
        "y = m.predict(np.zeros((1, 1, 12, 24, 24), np.float32)); print(automed.__file__ + '|' + str(y.shape))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(local)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    where, shape = out.stdout.strip().splitlines()[-1].split("|")
    assert Path(where).resolve().is_relative_to(local.resolve()) and shape == "(1, 12, 24, 24)"


def _epochs_done(progress: Path) -> int:
    """Epochs recorded in a fold's progress.json (0 before the first; it is replaced atomically)."""
    return len(json.loads(progress.read_text())["history"]) if progress.is_file() else 0


def test_kill_and_resume(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "data", n_cases=4, shape=(12, 24, 24), seed=5)
    cfg = _tiny_config(tmp_path / "cfg.yaml", epochs=6, iterations_per_epoch=6)
    wd = tmp_path / "W"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [
        sys.executable,
        "-m",
        "automed.cli",
        "-q",
        "train",
        str(ds),
        "-o",
        str(wd),
        "--config",
        str(cfg),
        "--folds",
        "2",
        "--fold",
        "0",
        "--tracking-uri",
        uri,
        "--workers",
        "0",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    progress = wd / "train" / "3d_fullres" / "fold_0" / "progress.json"
    # kill as soon as progress.json (written after checkpoint_latest.pt) shows epoch 2: the run is then past its
    # second checkpoint, 4 epochs before the end
    deadline = time.monotonic() + 300
    try:
        while _epochs_done(progress) < 2:
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline, "no second epoch within 300 s"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = len(json.loads(progress.read_text())["history"])
    assert 2 <= done < 6, "the kill must land mid-run"
    assert not (progress.parent / "checkpoint_final.pt").exists()
    r = subprocess.run(
        [sys.executable, "-m", "automed.cli", "-q", "train", "--resume", str(wd), "--workers", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    hist = json.loads(progress.read_text())["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4, 5, 6]
    assert hist[-1]["iterations"] == 6 * 6
    assert (progress.parent / "checkpoint_final.pt").is_file()
    paths = api.predict(wd, ds / "imagesTr", tmp_path / "pred", show_progress=False)
    assert len(paths) == 4
    # the killed-then-resumed fold equals an uninterrupted one: same weights, same per-epoch metrics
    ref = api.train(
        ds,
        tmp_path / "W_ref",
        config=cfg,
        folds=2,
        only_folds=[0],
        tracking_uri=uri,
        workers=0,
        show_progress=False,
    )
    ref_folder = ref.workdir / "train" / "3d_fullres" / "fold_0"
    _assert_same_training(progress.parent, ref_folder)
    # --extend adds epochs to the finished fold with a fresh, lower learning-rate cycle
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "automed.cli",
            "-q",
            "train",
            "--resume",
            str(wd),
            "--extend",
            "2",
            "--workers",
            "0",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    hist = json.loads(progress.read_text())["history"]
    assert len(hist) == 8 and hist[6]["learning_rate"] < 1e-2 * 0.1 + 1e-9
    # as if that extension had been killed before it finished (its latest checkpoint written, progress.json not
    # yet "finished") and the last validation were of the earlier weights: typing --extend again continues the
    # fold from its latest checkpoint (no retraining from epoch 0) and validates the new weights
    prog = json.loads(progress.read_text())
    progress.write_text(json.dumps({**prog, "finished": False}))
    concluded = json.loads((wd / "train_config.json").read_text())  # a killed --extend leaves its record
    killed = {**concluded, "extension": {"epochs": 2, "targets": {"0": 8}}}
    (wd / "train_config.json").write_text(json.dumps(killed))
    metrics = progress.parent / "validation_metrics.json"
    stale = [{**row, "dice_mean": -1.0} for row in json.loads(metrics.read_text())]
    metrics.write_text(json.dumps(stale))
    again = [sys.executable, "-m", "automed.cli", "-q", "train", "--resume", str(wd), "--extend", "2"]
    other = subprocess.run([*again[:-1], "3", "--workers", "0"], capture_output=True, text=True, check=False)
    assert other.returncode != 0 and "after an unfinished --extend 2" in other.stderr  # another N: refused
    r = subprocess.run([*again, "--workers", "0"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert [h["epoch"] for h in json.loads(progress.read_text())["history"]] == list(range(1, 9))
    assert json.loads(progress.read_text())["finished"] and json.loads(metrics.read_text()) != stale
    # a kill after this fold completed its part of an --extend 2 (others had not): typed again, the command
    # completes the extension without extending this fold a second time, and forgets it once concluded
    saved = json.loads((wd / "train_config.json").read_text())
    assert "extension" not in saved
    pending = {"epochs": 2, "targets": {"0": 8}}
    (wd / "train_config.json").write_text(json.dumps({**saved, "extension": pending}))
    r = subprocess.run([*again, "--workers", "0"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(json.loads(progress.read_text())["history"]) == 8
    assert "extension" not in json.loads((wd / "train_config.json").read_text())


def _assert_same_training(a: Path, b: Path) -> None:
    """Two fold folders hold identical final weights and the same per-epoch losses and scores."""
    import torch

    wa = torch.load(a / "checkpoint_final.pt", weights_only=True)["model"]
    wb = torch.load(b / "checkpoint_final.pt", weights_only=True)["model"]
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "weights differ"
    keys = ("train_loss", "val_loss", "val_score", "val_score_ema", "learning_rate", "iterations")
    ha = [{k: h[k] for k in keys} for h in json.loads((a / "progress.json").read_text())["history"]]
    hb = [{k: h[k] for k in keys} for h in json.loads((b / "progress.json").read_text())["history"]]
    assert ha == hb


def test_same_seed_and_epochs_give_identical_weights(tmp_path: Path) -> None:
    """Also with ``deterministic: true`` (torch's deterministic algorithms, for CUDA): the same weights on CPU, and
    the process's torch settings are back afterwards."""
    import torch

    ds = make_dataset(tmp_path / "data", n_cases=4, shape=(12, 24, 24), seed=6)
    cfg = _tiny_config(tmp_path / "cfg.yaml", epochs=2, iterations_per_epoch=3)
    det = _tiny_config(tmp_path / "det.yaml", epochs=2, iterations_per_epoch=3, deterministic="true")
    runs = [
        api.train(
            ds,
            tmp_path / name,
            config=det if name == "C" else cfg,
            folds=2,
            only_folds=[0],
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
            workers=0,
            show_progress=False,
            register=False,
        )
        for name in ("A", "B", "C")
    ]
    a, b, c = (r.workdir / "train" / "3d_fullres" / "fold_0" for r in runs)
    _assert_same_training(a, b)
    _assert_same_training(a, c)
    assert not torch.are_deterministic_algorithms_enabled()


def test_parallel_folds_log_every_run_once(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    ds = make_dataset(tmp_path / "data", n_cases=4, shape=(12, 24, 24), seed=8)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = _tiny_config(tmp_path / "cfg.yaml")
    res = api.train(
        ds,
        tmp_path / "W",
        config=cfg,
        folds=2,
        tracking_uri=uri,
        workers=0,
        parallel_folds=2,
        register=False,
        show_progress=False,
    )
    assert res.fold_epochs == {0: 2, 1: 2}
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("Synthetic")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.data.tags["fold"] for r in children) == ["0", "1"]
    for r in children:
        assert r.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(r.info.run_id, "train_loss")] == [1, 2]


def test_ui_serves_the_store(tmp_path: Path) -> None:
    log = tmp_path / "ui.log"
    with automed_ui(f"sqlite:///{tmp_path / 'mlflow.db'}", log) as port:
        pass  # it answered on /health
    assert f"http://127.0.0.1:{port}" in log.read_text()


@pytest.mark.skipif(
    __import__("shutil").which("chromium") is None, reason="Debian's chromium is not installed here"
)
def test_mlflow_ui_lists_the_runs_in_headless_chromium(trained: dict[str, object], tmp_path: Path) -> None:
    """The runs page of ``automed ui``'s experiment lists the training of a tiny run."""
    from mlflow.tracking import MlflowClient

    uri = str(trained["uri"])
    (exp,) = [e for e in MlflowClient(tracking_uri=uri).search_experiments() if e.name != "Default"]
    with automed_ui(uri, tmp_path / "ui.log") as port:
        r = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000",
             "--disable-background-networking", "--dump-dom", f"http://127.0.0.1:{port}/#/experiments/{exp.experiment_id}/runs"],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "train-3d_fullres" in r.stdout  # the parent run (its fold runs are nested under it, collapsed)


def test_predict_review_writes_json_png_and_index(trained: dict[str, object], tmp_path: Path) -> None:
    """``automed predict --review``: a JSON and a PNG per input and one index page (tests/test_review.py has the
    unit checks)."""
    ds = Path(str(trained["ds"]))
    wd = trained["res"].workdir  # type: ignore[attr-defined]
    out = tmp_path / "P"
    api.predict(wd, ds / "imagesTr", out, review=True, show_progress=False)
    cases = sorted(p.name[: -len(".nii.gz")] for p in (ds / "imagesTr").iterdir())
    for cid in cases:
        found = json.loads((out / "review" / f"{cid}.json").read_text())
        pred = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{cid}.nii.gz")))
        for entry in found["labels"].values():
            assert sum(c["voxels"] for c in entry["components"]) == int((pred == entry["value"]).sum())
            assert all(0 <= c.get("mean_probability", 0.5) <= 1 for c in entry["components"])
        assert (out / "review" / f"{cid}.png").stat().st_size > 1000
    assert not list(out.glob("*.npz"))  # probabilities were used for the review, not saved
    index = (out / "review" / "index.html").read_text()
    assert all(f'src="{cid}.png"' in index for cid in cases)
    # --log-review: the same pages under review/ of a child run of the training's MLflow run (only when asked)
    from mlflow.tracking import MlflowClient

    api.predict(wd, ds / "imagesTr", tmp_path / "Q", log_review=True, show_progress=False)
    track = json.loads((wd / "tracking.json").read_text())
    client = MlflowClient(tracking_uri=track["uri"])
    exp = client.get_experiment_by_name(track["experiment"])
    child = client.search_runs([exp.experiment_id], "tags.`automed.kind` = 'predict-review'")
    assert len(child) == 1 and child[0].data.tags["mlflow.parentRunId"] == track["parent_run_id"]
    names = {f.path for f in client.list_artifacts(child[0].info.run_id, "review")}
    assert "review/index.html" in names and f"review/{cases[0]}.png" in names
    page = Path(
        client.download_artifacts(child[0].info.run_id, "review/index.html", str(tmp_path))
    ).read_text()
    assert str(tmp_path) not in page  # no local paths


def read_seg_labels(path: Path, source_files: list[str]) -> np.ndarray:
    """The label map (slices x rows x columns, label values) of a SEG written by automed's ``write_seg``, in the
    order of ``source_files`` (the test's reader: highdicom's frames back to a volume)."""
    import highdicom as hd
    import pydicom

    seg = hd.seg.segread(path)
    uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in source_files]
    values = []
    for number in seg.segment_numbers:
        tracking = str(seg.get_segment_description(number).TrackingID)
        values.append(int(tracking.split(":")[0].removeprefix("label ")))
    rows, cols = int(seg.Rows), int(seg.Columns)
    out = np.zeros((len(uids), rows, cols), dtype=np.int64)
    referenced = {str(u) for (_, _, u) in seg.get_source_image_uids()}
    present = [i for i, u in enumerate(uids) if u in referenced]
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[uids[i] for i in present],
        ignore_spatial_locations=True,
        assert_missing_frames_are_empty=True,
    )  # (frames, rows, columns, segments), binary
    for k, value in enumerate(values):
        out[present] = np.where(pixels[..., k] > 0, value, out[present])
    return out


def test_predict_dicom_seg_round_trip(trained: dict[str, object], tmp_path: Path) -> None:
    """``--output-format dicom-seg`` on DICOM series: one SEG per series, referencing it, one segment per label named
    from the plan, read back with highdicom equal to the NIfTI label map voxel for voxel (issue 17)."""
    import highdicom as hd
    import pydicom

    from automed.data.io import dicom_series_files
    from automed.errors import AutomedError
    from tests.conftest import shared

    series = shared("dicom", "hippo_crop_series")
    wd = trained["res"].workdir  # type: ignore[attr-defined]
    out = tmp_path / "P"
    api.predict(wd, series, out, output_format="dicom-seg", show_progress=False)
    names = json.loads((wd / "plan.json").read_text())["labels"]
    for study in ("Study1", "Study2", "Study3"):
        files = dicom_series_files(series / study)
        nifti = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{study}.nii.gz")))
        assert np.array_equal(read_seg_labels(out / f"{study}.seg.dcm", files), nifti)
        seg = hd.seg.segread(out / f"{study}.seg.dcm")
        src = pydicom.dcmread(files[0], stop_before_pixels=True)
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
        assert seg.FrameOfReferenceUID == src.FrameOfReferenceUID
        labels = [str(seg.get_segment_description(n).SegmentLabel) for n in seg.segment_numbers]
        assert labels == [names[k] for k in sorted(names, key=int) if k != "0"]
    with pytest.raises(AutomedError, match="DICOM series"):
        api.predict(wd, Path(str(trained["ds"])) / "imagesTr", tmp_path / "Q", output_format="dicom-seg")
    assert not list((tmp_path / "Q").glob("*.nii.gz")) if (tmp_path / "Q").exists() else True


def test_fresh_run_refuses_another_config_in_the_same_workdir(tmp_path: Path) -> None:
    from automed.errors import ArtifactError

    ds = make_dataset(tmp_path / "data", n_cases=4, shape=(10, 20, 20), seed=9)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def train(config: Path) -> Any:
        return api.train(
            ds,
            tmp_path / "W",
            config=config,
            folds=2,
            only_folds=[0],
            tracking_uri=uri,
            workers=0,
            register=False,
            show_progress=False,
        )

    train(_tiny_config(tmp_path / "a.yaml"))
    first = json.loads((tmp_path / "W" / "tracking.json").read_text())
    with pytest.raises(ArtifactError, match="new --output"):
        train(_tiny_config(tmp_path / "b.yaml", learning_rate=0.001))
    # the same config reuses the finished fold instead of training it again, in the same MLflow parent run (it
    # opened an empty one and pointed tracking.json, and later registrations, at it)
    res = train(_tiny_config(tmp_path / "a.yaml"))
    assert res.fold_epochs == {0: 2}
    again = json.loads((tmp_path / "W" / "tracking.json").read_text())
    assert again["parent_run_id"] == first["parent_run_id"] and again["fold_runs"] == first["fold_runs"]


def test_2d_dataset_trains_with_the_2d_configuration(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = ["SubjectID,Channel_0,Label"]
    for i in range(4):
        lab = np.zeros((32, 32), np.uint8)
        lab[8 + i : 20 + i, 10:24] = 1
        img = (lab * 100 + rng.normal(50, 10, lab.shape)).clip(0, 255).astype(np.uint8)
        sitk.WriteImage(sitk.GetImageFromArray(img), str(tmp_path / f"i{i}.png"))
        sitk.WriteImage(sitk.GetImageFromArray(lab), str(tmp_path / f"l{i}.png"))
        rows.append(f"c{i},i{i}.png,l{i}.png")
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    res = api.train(
        tmp_path / "d.csv",
        tmp_path / "W",
        config=_tiny_config(tmp_path / "c.yaml"),
        folds=2,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        workers=0,
        show_progress=False,
    )
    assert res.model.configuration == "2d"
    out = api.predict(tmp_path / "W", tmp_path / "i0.png", tmp_path / "pred", show_progress=False)
    pred = sitk.ReadImage(str(out[0]))
    assert pred.GetSize() == (32, 32)


def test_predict_msd_4d_input(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "m4", n_cases=4, n_channels=2, layout="msd", shape=(10, 20, 20), seed=2)
    res = api.train(
        ds,
        tmp_path / "W",
        config=_tiny_config(tmp_path / "c.yaml"),
        folds=2,
        only_folds=[0],
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        workers=0,
        show_progress=False,
    )
    assert res.model.folds == [0]
    out = api.predict(
        tmp_path / "W", ds / "imagesTr" / "case_000.nii.gz", tmp_path / "pred", show_progress=False
    )
    assert sitk.ReadImage(str(out[0])).GetDimension() == 3
    # the same case as nnU-Net channel files: channels in order (the 4D file's prediction); a channel on another
    # grid (here shifted 5 mm) is refused before anything is written, not stacked voxel by voxel
    four = sitk.ReadImage(str(ds / "imagesTr" / "case_000.nii.gz"))
    size = [*four.GetSize()[:3], 0]
    for folder in ("split", "shifted"):
        (tmp_path / folder).mkdir()
    for ch in (0, 1):
        img = sitk.Extract(four, size, [0, 0, 0, ch])
        sitk.WriteImage(img, str(tmp_path / "split" / f"case_000_{ch:04d}.nii.gz"))
        if ch == 1:
            img.SetOrigin(tuple(o + d for o, d in zip(img.GetOrigin(), (5.0, 0.0, 0.0), strict=True)))
        sitk.WriteImage(img, str(tmp_path / "shifted" / f"case_000_{ch:04d}.nii.gz"))
    (split,) = api.predict(tmp_path / "W", tmp_path / "split", tmp_path / "pred_split", show_progress=False)
    assert np.array_equal(
        sitk.GetArrayFromImage(sitk.ReadImage(str(split))),
        sitk.GetArrayFromImage(sitk.ReadImage(str(out[0]))),
    )
    with pytest.raises(DatasetError, match="one voxel grid") as err:
        api.predict(tmp_path / "W", tmp_path / "shifted", tmp_path / "pred_shifted", show_progress=False)
    (p,) = err.value.problems
    assert p.file.endswith("case_000_0001.nii.gz") and "channel origin must equal" in p.rule
    assert "resample case_000_0001.nii.gz onto case_000_0000.nii.gz" in p.fix
    assert not (tmp_path / "pred_shifted").exists()
    # a CSV names the channels (MSD's modality names MRI0, MRI1 here): its columns in the training's order only
    csv = "SubjectID,Channel_{},Channel_{}\na,{},{}\n"
    split_files = [tmp_path / "split" / f"case_000_{ch:04d}.nii.gz" for ch in (0, 1)]
    (tmp_path / "swapped.csv").write_text(csv.format("MRI1", "MRI0", *reversed(split_files)))
    with pytest.raises(DatasetError, match=r"trained on, in its order \(MRI0, MRI1\)") as err:
        api.predict(tmp_path / "W", tmp_path / "swapped.csv", tmp_path / "pred_csv", show_progress=False)
    assert "order the columns as Channel_MRI0,Channel_MRI1" in str(err.value)
    (tmp_path / "ordered.csv").write_text(csv.format("MRI0", "MRI1", *split_files))
    (by_csv,) = api.predict(
        tmp_path / "W", tmp_path / "ordered.csv", tmp_path / "pred_csv", show_progress=False
    )
    assert np.array_equal(
        sitk.GetArrayFromImage(sitk.ReadImage(str(by_csv))),
        sitk.GetArrayFromImage(sitk.ReadImage(str(split))),
    )
    # the registered model has no fingerprint: the names travel in its bundle (a swapped CSV was predicted silently)
    assert json.loads((tmp_path / "W" / "model_bundle" / "channels.json").read_text())["channels"] == [
        "MRI0",
        "MRI1",
    ]
    assert res.registered is not None
    uri, store = res.registered["uri"], f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(DatasetError, match=r"trained on, in its order \(MRI0, MRI1\)"):
        api.predict(
            uri, tmp_path / "swapped.csv", tmp_path / "reg_csv", tracking_uri=store, show_progress=False
        )
    (registered,) = api.predict(uri, tmp_path / "ordered.csv", tmp_path / "reg_csv", tracking_uri=store,
                                show_progress=False)  # fmt: skip
    assert np.array_equal(
        sitk.GetArrayFromImage(sitk.ReadImage(str(registered))),
        sitk.GetArrayFromImage(sitk.ReadImage(str(split))),
    )


def test_a_refused_retraining_leaves_the_earlier_plan(tmp_path: Path) -> None:
    """Training into a work dir whose folds another plan made is refused, and the refusal puts back the plan and
    fingerprint it had re-written (they still describe the folds on disk)."""
    ds = make_dataset(tmp_path / "data", n_cases=4, shape=(12, 24, 24), seed=8)
    cfg = _tiny_config(tmp_path / "cfg.yaml", epochs=1, iterations_per_epoch=2)
    kw: dict[str, Any] = {
        "config": cfg,
        "folds": 2,
        "only_folds": [0],
        "workers": 0,
        "show_progress": False,
        "register": False,
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    api.train(ds, tmp_path / "W", **kw)
    plan_before = (tmp_path / "W" / "plan.json").read_bytes()
    other = tmp_path / "other.yaml"  # a preset that plans a smaller memory target: another plan
    other.write_text("extends: cpu\nname: other\nmemory:\n  target_gb: 0.05\n  device: cpu\n")
    fingerprint_before = (tmp_path / "W" / "fingerprint.json").read_bytes()
    with pytest.raises(ArtifactError, match=r"a work dir with trained folds keeps its plan\.json"):
        api.train(ds, tmp_path / "W", preset=str(other), **kw)
    assert (tmp_path / "W" / "plan.json").read_bytes() == plan_before
    assert (tmp_path / "W" / "fingerprint.json").read_bytes() == fingerprint_before


def test_predict_with_folds_0_is_fold_0_alone(trained: dict[str, object], tmp_path: Path) -> None:
    """nnU-Net's ``-f 0``: the probabilities of fold 0's validation cases are those its own validation wrote (same
    network, TTA and step; the two-fold ensemble differs from them by about 0.1)."""
    wd = trained["res"].workdir  # type: ignore[attr-defined]
    fold0 = wd / "train" / "3d_fullres" / "fold_0"
    val = json.loads((wd / "splits.json").read_text())["folds"][0]["val"]
    inp = tmp_path / "in"
    inp.mkdir()
    for cid in val:
        (inp / f"{cid}.nii.gz").symlink_to(Path(str(trained["ds"])) / "imagesTr" / f"{cid}.nii.gz")
    api.predict(wd, inp, tmp_path / "P", folds=[0], save_probabilities=True, show_progress=False)
    for cid in val:
        mine = np.load(tmp_path / "P" / f"{cid}.npz")["probabilities"]
        own = np.load(fold0 / "validation" / f"{cid}.npz")["probabilities"].astype(np.float32)
        assert np.abs(mine - own).max() < 1e-3  # float16 storage of the validation's
    # the registered model holds both folds' weights: --folds 0 predicts as the work dir's fold 0
    api.predict("models:/automed-Synthetic@champion", inp, tmp_path / "R", folds=[0], save_probabilities=True,
                tracking_uri=str(trained["uri"]), show_progress=False)  # fmt: skip
    for cid in val:
        registered = np.load(tmp_path / "R" / f"{cid}.npz")["probabilities"]
        assert np.allclose(registered, np.load(tmp_path / "P" / f"{cid}.npz")["probabilities"], atol=1e-5)
    with pytest.raises(ConfigError, match=r"has \(0, 1\); found --folds 2"):
        api.load_predictor("models:/automed-Synthetic@champion", str(trained["uri"]), folds=[2])
    one = api.load_predictor(wd, None, folds=[1], step=0.25)
    assert len(one.models) == 1 and one.step == 0.25
    with pytest.raises(ConfigError, match=r"has \(0, 1\); found --folds 2"):
        api.predict(wd, inp, tmp_path / "P2", folds=[2], show_progress=False)
    assert not (tmp_path / "P2").exists()
