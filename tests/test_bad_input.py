"""Bad input: every error names the file, the rule, the value and the fix, and nothing is written."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from automed import api
from automed.errors import AutomedError, ConfigError, DatasetError, Problem
from automed.plan.preset import load_preset
from automed.testing.synthetic import make_dataset
from tests.conftest import two_series_folder


def _img(path: Path) -> sitk.Image:
    return sitk.ReadImage(str(path))


def _save(img: sitk.Image, path: Path) -> None:
    sitk.WriteImage(img, str(path), useCompression=True)


def _set_voxels(
    path: Path, index: object, value: float, dtype: type | None = None, out: Path | None = None
) -> None:
    """Set voxels of an image file (optionally casting it first) and save it, geometry kept."""
    img = _img(path)
    arr = sitk.GetArrayFromImage(img)
    if dtype is not None:
        arr = arr.astype(dtype)
    arr[index] = value
    new = sitk.GetImageFromArray(arr)
    new.CopyInformation(img)
    _save(new, out or path)


def _fails(dataset: Path, tmp_path: Path) -> list[Problem]:
    """Run the whole `automed plan` chain; it must fail and leave no work directory behind."""
    wd = tmp_path / "W"
    with pytest.raises(DatasetError) as info:
        api.plan_dataset(dataset, wd, workers=1, show_progress=False)
    assert not wd.exists(), "nothing may be written when the input is bad"
    return info.value.problems


def _has(problems: list[Problem], file: str | Path, rule: str, fix: str) -> Problem:
    for p in problems:
        if str(file) in p.file and rule in p.rule and fix in p.fix:
            assert p.value, "the offending value must be named"
            return p
    raise AssertionError(
        f"no problem with file~{file}, rule~{rule!r}, fix~{fix!r} in:\n" + "\n".join(map(str, problems))
    )


@pytest.fixture()
def ds(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "ds", n_cases=3, shape=(10, 12, 12), seed=3)


@pytest.fixture()
def ds2(tmp_path: Path) -> Path:
    """Two channels, nnU-Net layout."""
    return make_dataset(
        tmp_path / "ds2", n_cases=3, shape=(10, 12, 12), n_channels=2, layout="nnunetv2", seed=4
    )


def test_missing_image(ds: Path, tmp_path: Path) -> None:
    f = ds / "imagesTr" / "case_001.nii.gz"
    f.unlink()
    _has(_fails(ds, tmp_path), f, "must exist", "fix the path")


def test_missing_label(ds: Path, tmp_path: Path) -> None:
    f = ds / "labelsTr" / "case_002.nii.gz"
    f.unlink()
    _has(_fails(ds, tmp_path), f, "label must exist", "add the file")


def test_duplicate_subject_ids(ds: Path, tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    img, lab = ds / "imagesTr" / "case_000.nii.gz", ds / "labelsTr" / "case_000.nii.gz"
    csv.write_text(f"SubjectID,Channel_0,Label\nA,{img},{lab}\nA,{img},{lab}\n")
    p = _has(_fails(csv, tmp_path), csv, "IDs must be unique", "give every case its own ID")
    assert "A" in p.value


def test_channel_size_differs(ds2: Path, tmp_path: Path) -> None:
    f = ds2 / "imagesTr" / "case_001_0001.nii.gz"
    _save(sitk.Image([12, 12, 9], sitk.sitkFloat32), f)
    _has(_fails(ds2, tmp_path), f, "channel size must equal", "resample")


def test_channel_spacing_differs(ds2: Path, tmp_path: Path) -> None:
    f = ds2 / "imagesTr" / "case_000_0001.nii.gz"
    img = _img(f)
    img.SetSpacing((1.0, 1.0, 2.0))
    _save(img, f)
    p = _has(_fails(ds2, tmp_path), f, "channel spacing must equal", "resample")
    assert "2.0" in p.value


def test_channel_origin_differs(ds2: Path, tmp_path: Path) -> None:
    f = ds2 / "imagesTr" / "case_000_0001.nii.gz"
    img = _img(f)
    img.SetOrigin((5.0, 5.0, 5.0))
    _save(img, f)
    _has(_fails(ds2, tmp_path), f, "channel origin must equal", "resample")


def test_channel_direction_differs(ds2: Path, tmp_path: Path) -> None:
    f = ds2 / "imagesTr" / "case_002_0001.nii.gz"
    img = _img(f)
    img.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    _save(img, f)
    _has(_fails(ds2, tmp_path), f, "channel direction must equal", "resample")


def test_label_geometry_differs(ds: Path, tmp_path: Path) -> None:
    f = ds / "labelsTr" / "case_000.nii.gz"
    lab = _img(f)
    lab.SetSpacing((1.0, 1.5, 1.0))
    _save(lab, f)
    _has(_fails(ds, tmp_path), f, "label spacing must equal", "nearest-neighbour")


def test_label_size_differs(ds: Path, tmp_path: Path) -> None:
    f = ds / "labelsTr" / "case_001.nii.gz"
    _save(sitk.Image([5, 5, 5], sitk.sitkUInt8), f)
    _has(_fails(ds, tmp_path), f, "label size must equal", "resample the label")


def test_non_integer_label(ds: Path, tmp_path: Path) -> None:
    f = ds / "labelsTr" / "case_000.nii.gz"
    _set_voxels(f, (0, 0, 0), 0.5, dtype=np.float32)
    p = _has(_fails(ds, tmp_path), f, "label voxels must be integers", "nearest-neighbour")
    assert "0.5" in p.value


def test_undeclared_label_value(ds: Path, tmp_path: Path) -> None:
    f = ds / "labelsTr" / "case_002.nii.gz"
    _set_voxels(f, (0, 0, 0), 7)
    p = _has(_fails(ds, tmp_path), f, "must be declared in 'labels'", "add them to 'labels'")
    assert "7" in p.value


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_voxels(ds: Path, tmp_path: Path, bad: float) -> None:
    # NRRD keeps NaN as written (ITK's NIfTI reader turns NaN into 0), so the image is stored as .nrrd
    f = ds / "imagesTr" / "case_001.nrrd"
    _set_voxels(ds / "imagesTr" / "case_001.nii.gz", (1, 2, 3), bad, out=f)
    meta = json.loads((ds / "dataset.json").read_text())
    meta["training"][1]["image"] = "./imagesTr/case_001.nrrd"
    (ds / "dataset.json").write_text(json.dumps(meta))
    p = _has(_fails(ds, tmp_path), f, "must be finite", "replace NaN/Inf")
    assert "1 NaN/Inf" in p.value


@pytest.mark.parametrize(("bad", "dtype"), [(-np.finfo(np.float32).max, np.float32), (1e40, np.float64)])
def test_no_data_markers_are_refused(ds: Path, tmp_path: Path, bad: float, dtype: type) -> None:
    """float32's lowest (a common "no data" background) passed verify, then preprocessing wrote all-NaN images that
    trained to a null loss; one float64 voxel at 1e40 crashed planning with a pydantic error naming no file."""
    f = ds / "imagesTr" / "case_001.nii.gz"
    _set_voxels(f, (1, 2, 3), bad, dtype=dtype)
    p = _has(_fails(ds, tmp_path), f, "must be intensities (|value| <= 1e+15)", "background intensity")
    assert "1 voxels beyond it" in p.value and f"{bad:g}" in p.value


def test_4d_image_where_3d_declared(ds: Path, tmp_path: Path) -> None:
    f = ds / "imagesTr" / "case_000.nii.gz"
    img = _img(f)
    _save(sitk.JoinSeries([img, img]), f)
    _has(_fails(ds, tmp_path), f, "images must be 3D", "tensorImageSize")


def test_empty_dataset(ds: Path, tmp_path: Path) -> None:
    meta = json.loads((ds / "dataset.json").read_text())
    meta["training"] = []
    (ds / "dataset.json").write_text(json.dumps(meta))
    _has(_fails(ds, tmp_path), ds / "dataset.json", "at least one training case", "list the cases")


def test_unreadable_file(ds: Path, tmp_path: Path) -> None:
    f = ds / "imagesTr" / "case_002.nii.gz"
    f.write_bytes(b"this is not an image")
    _has(_fails(ds, tmp_path), f, "must be readable", "re-export")


def test_broken_dataset_json(ds: Path, tmp_path: Path) -> None:
    (ds / "dataset.json").write_text("{not json")
    _has(_fails(ds, tmp_path), ds / "dataset.json", "valid JSON", "fix the JSON")


def test_csv_unknown_column_did_you_mean(tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text("SubjectID,Chanel_0,Label\nA,a.nii.gz,b.nii.gz\n")
    p = _has(_fails(csv, tmp_path), csv, "CSV columns must be", "Did you mean")
    assert "Chanel_0" in p.value


def test_csv_without_subject_id(tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text("Channel_0,Label\na.nii.gz,b.nii.gz\n")
    _has(_fails(csv, tmp_path), csv, "needs a SubjectID column", "add SubjectID")


def test_negative_label_values(ds: Path, tmp_path: Path) -> None:
    meta = json.loads((ds / "dataset.json").read_text())
    meta["labels"]["-1"] = "weird"
    (ds / "dataset.json").write_text(json.dumps(meta))
    f = ds / "labelsTr" / "case_000.nii.gz"
    _set_voxels(f, (0, 0, 0), -1, dtype=np.int16)
    _has(_fails(ds, tmp_path), f, "label values must be >= 0", "relabel")


def test_two_dicom_series_in_one_folder(tmp_path: Path) -> None:
    mixed = two_series_folder(tmp_path / "mixed")
    csv = tmp_path / "d.csv"
    csv.write_text(f"SubjectID,Channel_0\nA,{mixed}\n")
    p = _has(_fails(csv, tmp_path), mixed, "exactly one DICOM series", "its own folder")
    assert p.value.startswith("2 series")


def test_every_problem_is_reported_in_one_pass(ds: Path, tmp_path: Path) -> None:
    (ds / "imagesTr" / "case_000.nii.gz").unlink()
    (ds / "labelsTr" / "case_001.nii.gz").unlink()
    (ds / "imagesTr" / "case_002.nii.gz").write_bytes(b"junk")
    problems = _fails(ds, tmp_path)
    assert len(problems) >= 3


def test_earlier_results_survive_a_failed_run(ds: Path, tmp_path: Path) -> None:
    wd = tmp_path / "W"
    api.plan_dataset(ds, wd, workers=1, show_progress=False, configurations=["3d_fullres"])
    before = {p.relative_to(wd): p.read_bytes() for p in wd.rglob("*") if p.is_file()}
    (ds / "imagesTr" / "case_000.nii.gz").write_bytes(b"junk")
    with pytest.raises(DatasetError):
        api.plan_dataset(ds, wd, workers=1, show_progress=False)
    after = {p.relative_to(wd): p.read_bytes() for p in wd.rglob("*") if p.is_file()}
    assert before == after


def test_preset_unknown_key_did_you_mean(tmp_path: Path) -> None:
    y = tmp_path / "p.yaml"
    y.write_text("schema_version: 1\nname: x\nmemory:\n  target_gbb: 4\n")
    with pytest.raises(ConfigError) as info:
        load_preset(y)
    p = info.value.problems[0]
    assert (
        str(y) in p.file
        and "unknown key 'memory.target_gbb'" in p.rule
        and "Did you mean 'target_gb'" in p.fix
    )


def test_preset_bad_value(tmp_path: Path) -> None:
    y = tmp_path / "p.yaml"
    y.write_text("schema_version: 1\nname: x\nbatch:\n  min_batch_size: 0\n")
    with pytest.raises(ConfigError) as info:
        load_preset(y)
    p = info.value.problems[0]
    assert "batch.min_batch_size" in p.rule and "0" in p.value and "planners/default.yaml" in p.fix


def test_unknown_preset_name() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'default'") as err:
        load_preset("defualt")
    assert str(err.value.problems[0].file) == "--preset"  # what the user typed, not automed's presets folder


def test_cli_error_is_one_message_without_traceback(
    ds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The console entry point in this process (the subprocess form of the same exit path, a missing dataset,
    is tests/test_cli.py::test_console_script_errors_exit_1): a problem verify finds deep in the dataset is one
    message naming the file, the rule and the fix, exit status 1, no traceback, no work dir."""
    from automed import cli

    (ds / "imagesTr" / "case_000.nii.gz").unlink()
    wd = tmp_path / "W"
    monkeypatch.setattr(cli, "handle_sigterm", lambda: None)  # leave pytest's own SIGTERM handling alone
    monkeypatch.setattr(sys, "argv", ["automed", "plan", str(ds), "-o", str(wd)])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "case_000.nii.gz" in err and "must exist" in err and "Fix:" in err
    assert not wd.exists()


def test_errors_are_automed_errors() -> None:
    assert issubclass(DatasetError, AutomedError) and issubclass(ConfigError, AutomedError)


def test_channel_count_must_agree_across_cases(tmp_path: Path) -> None:
    rows = ["SubjectID,Channel_0"]
    for i, rgb in enumerate([False, False, True]):
        arr = np.zeros((8, 8, 3) if rgb else (8, 8), np.uint8) + 10
        sitk.WriteImage(sitk.GetImageFromArray(arr, isVector=rgb), str(tmp_path / f"i{i}.png"))
        rows.append(f"c{i},i{i}.png")
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    p = _has(_fails(tmp_path / "d.csv", tmp_path), tmp_path / "d.csv", "same number of channels", "grayscale")
    assert "c2" in p.value


def test_nnunet_unexpected_files(ds2: Path, tmp_path: Path) -> None:
    extra = ds2 / "imagesTr" / "case_000_0002.nii.gz"
    shutil.copy(ds2 / "imagesTr" / "case_000_0001.nii.gz", extra)
    orphan = ds2 / "labelsTr" / "ghost.nii.gz"
    shutil.copy(ds2 / "labelsTr" / "case_000.nii.gz", orphan)
    problems = _fails(ds2, tmp_path)
    _has(problems, extra, "must belong to a declared case and channel", "declare the channel")
    _has(problems, orphan, "must belong to a declared case", "name its images ghost_XXXX.nii.gz")


def test_nnunet_misnamed_images_and_num_training(ds2: Path, tmp_path: Path) -> None:
    """An image not named CASE_XXXX was left out without a word (verify said OK with one case fewer than
    numTraining), or its label was blamed with "remove the file"."""
    img = ds2 / "imagesTr" / "case_001_0001.nii.gz"
    img.rename(img.with_name("case_001_0001.nii.gz.bak.nii.gz"))
    misnamed = ds2 / "imagesTr" / "case_002.nii.gz"
    (ds2 / "imagesTr" / "case_002_0000.nii.gz").rename(misnamed)
    (ds2 / "imagesTr" / "case_002_0001.nii.gz").unlink()
    problems = _fails(ds2, tmp_path)
    assert (
        "not named CASE_XXXX"
        in _has(problems, misnamed, "must belong to a declared case", "case_002_0000").value
    )
    label = _has(
        problems, ds2 / "labelsTr" / "case_002.nii.gz", "must belong", "name its images case_002_XXXX"
    )
    assert "no image named case_002_0000" in label.value
    misnamed.unlink()
    (ds2 / "labelsTr" / "case_002.nii.gz").unlink()
    for f in (ds2 / "imagesTr").glob("*.bak.nii.gz"):
        f.rename(img)
    _has(
        _fails(ds2, tmp_path),
        ds2 / "dataset.json",
        "numTraining counts",
        "correct numTraining",
    )


def test_nnunet_natural_images_in_one_rgb_file(tmp_path: Path) -> None:
    """nnU-Net's convention for RGB pictures (its road segmentation example): channel_names R, G, B and one
    CASE_0000.png per case; it was refused as two missing files per case."""
    from PIL import Image

    from automed.data.dataset import load_dataset
    from automed.data.verify import verify

    root = tmp_path / "Road"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        lab = np.zeros((32, 32), np.uint8)
        lab[4 + i : 20 + i, 8:24] = 1
        Image.fromarray(rng.integers(0, 80, (32, 32, 3), dtype=np.uint8), "RGB").save(
            root / "imagesTr" / f"road_{i:03d}_0000.png"
        )
        Image.fromarray(lab).save(root / "labelsTr" / f"road_{i:03d}.png")
    meta = {"channel_names": {"0": "R", "1": "G", "2": "B"}, "labels": {"background": 0, "road": 1},
            "numTraining": 4, "file_ending": ".png"}  # fmt: skip
    (root / "dataset.json").write_text(json.dumps(meta))
    ds = load_dataset(root)
    assert [len(c.images) for c in ds.cases] == [1] * 4
    assert verify(ds, show_progress=False).n_cases == 4
    from automed import api

    api.fingerprint(root, tmp_path / "W", workers=0, show_progress=False)
    fp = json.loads((tmp_path / "W" / "fingerprint.json").read_text())
    assert [c["declared"] for c in fp["channels"]] == ["R", "G", "B"] and fp["dimension"] == 2


def test_empty_channel_cell(tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text("SubjectID,Channel_0,Channel_1\nA,a.nii.gz,\n")
    _has(_fails(csv, tmp_path), "d.csv:2", "every channel cell needs an image path", "fill in the path")


def test_label_problems_reported_even_when_images_are_bad(ds: Path, tmp_path: Path) -> None:
    (ds / "imagesTr" / "case_000.nii.gz").unlink()
    f = ds / "labelsTr" / "case_000.nii.gz"
    _set_voxels(f, (0, 0, 0), 9)
    problems = _fails(ds, tmp_path)
    _has(problems, "case_000.nii.gz", "must exist", "add the file")
    _has(problems, f, "must be declared in 'labels'", "add them")


def test_problems_survive_worker_processes() -> None:
    import pickle

    err = DatasetError([Problem("a.nii.gz", "rule", "v", "fix"), Problem("b", "r2", "v2", "f2")], "two")
    back = pickle.loads(pickle.dumps(err))
    assert back.problems == err.problems and str(back) == str(err)


def test_stale_cache_is_refused(ds: Path, tmp_path: Path) -> None:
    from automed.errors import ArtifactError

    wd = tmp_path / "W"
    api.plan_dataset(ds, wd, workers=1, show_progress=False, configurations=["3d_fullres"])
    f = ds / "labelsTr" / "case_001.nii.gz"
    _set_voxels(f, (...), 0)
    with pytest.raises(ArtifactError, match="run `automed plan"):
        api.preprocess(ds, wd, configurations=["3d_fullres"], workers=1, show_progress=False)
    # `automed plan` refreshes every stage and rebuilds the cache
    res = api.plan_dataset(ds, wd, workers=1, show_progress=False, configurations=["3d_fullres"])
    assert not res.fingerprint_reused and res.preprocessed == {"3d_fullres": "written"}


def test_preset_lowres_needs_fullres(tmp_path: Path) -> None:
    y = tmp_path / "p.yaml"
    y.write_text("schema_version: 1\nname: x\nconfigurations: [3d_lowres]\n")
    with pytest.raises(ConfigError, match="add 3d_fullres"):
        load_preset(y)


def test_resume_of_a_folder_that_is_no_work_dir_leaves_no_trace(tmp_path: Path) -> None:
    """``--resume DATASET`` by mistake: a clear error before the lock file is created in the user's folder."""
    from automed.errors import ArtifactError

    data = make_dataset(tmp_path / "d", n_cases=2, shape=(8, 8, 8))
    before = sorted(p.name for p in data.iterdir())
    with pytest.raises(ArtifactError, match="need a training work dir"):
        api.train(None, data, resume=True, show_progress=False)
    assert sorted(p.name for p in data.iterdir()) == before


def test_cv_without_folds_all_is_refused(tmp_path: Path) -> None:
    from automed.errors import ConfigError

    data = make_dataset(tmp_path / "d", n_cases=2, shape=(8, 8, 8))
    with pytest.raises(ConfigError, match="--cv goes with --folds all"):
        api.train(data, tmp_path / "W", folds=2, cv=tmp_path / "CV", show_progress=False)
    assert not (tmp_path / "W").exists()


def test_a_tracking_uri_no_store_answers_to_is_refused_before_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from automed.errors import ConfigError
    from automed.tracking import check_tracking_uri

    monkeypatch.setenv(
        "MLFLOW_ALLOW_FILE_STORE", "true"
    )  # folder stores (mlruns) taken: MLflow 3 asks for it

    data = make_dataset(tmp_path / "d", n_cases=2, shape=(8, 8, 8))
    with pytest.raises(ConfigError, match=r"names an MLflow store.*Did you mean 'sqlite'"):
        api.train(data, tmp_path / "W", tracking_uri="sqlit:///x.db", show_progress=False)
    assert not (tmp_path / "W").exists()
    for fine in (
        None,
        "sqlite:///a.db",
        "postgresql+psycopg2://u@h/db",
        "mlruns",
        "/abs/mlruns",
    ):
        check_tracking_uri(fine)
    with pytest.raises(ConfigError, match=r"the tracking server answers.*127\.0\.0\.1:9") as err:
        check_tracking_uri("http://alice:s3cret@127.0.0.1:9")  # nothing listens on the discard port
    assert "s3cret" not in str(err.value)  # asked before any work, not after minutes of MLflow retries
    with pytest.raises(ConfigError, match="Port could not be cast"):
        check_tracking_uri("http://host:abc")


def test_a_relative_sqlite_store_is_recorded_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A work dir records the store it logged to; a relative one would name another store when resumed elsewhere."""
    from automed.tracking import resolve_uri

    monkeypatch.chdir(tmp_path)
    assert resolve_uri("sqlite:///runs/x.db") == f"sqlite:///{tmp_path.resolve() / 'runs' / 'x.db'}"
    assert resolve_uri("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert resolve_uri("http://h:5000") == "http://h:5000"


def test_a_work_dir_inside_the_dataset_folder_is_refused(tmp_path: Path) -> None:
    from automed.errors import ArtifactError

    data = make_dataset(tmp_path / "d", n_cases=2, shape=(8, 8, 8))
    before = sorted(p.name for p in data.iterdir())
    for out in (data, data / "work"):
        with pytest.raises(ArtifactError, match="a work dir lies outside the dataset folder"):
            api.train(data, out, show_progress=False)
        with pytest.raises(ArtifactError, match="a work dir lies outside the dataset folder"):
            api.sweep(data, out, show_progress=False)
    assert sorted(p.name for p in data.iterdir()) == before


def test_fingerprint_refuses_a_work_dir_in_the_dataset_before_reading_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `automed fingerprint DS -o DS/w` verified every case first, then refused (README: "before the dataset is read")
    from typer.testing import CliRunner

    import automed.workflow.prepare as prepare
    from automed.cli import app

    data = make_dataset(tmp_path / "d", n_cases=2, shape=(8, 8, 8))
    read: list[object] = []
    monkeypatch.setattr(prepare, "_verify", lambda *a, **k: read.append(a))
    r = CliRunner().invoke(app, ["-q", "fingerprint", str(data), "-o", str(data / "w")])
    assert r.exit_code == 1 and "a work dir lies outside the dataset folder" in str(r.exception)
    assert read == [] and not (data / "w").exists()
    r = CliRunner().invoke(app, ["-q", "fingerprint", str(data), "-o", str(tmp_path / "W")])
    assert r.exit_code == 0 and len(read) == 1  # verified once, then fingerprinted


def test_prediction_refuses_no_data_markers_unless_nan_to(tmp_path: Path) -> None:
    """predict normalised a -3.4e38 background into an all-NaN image and predicted nothing, without a word."""
    from automed.errors import DatasetError
    from automed.workflow.predict import _finite

    x = np.ones((1, 2, 3, 4), np.float32)
    assert _finite(x, (tmp_path / "a.nii.gz",), None) is x
    x[0, 0, 0, :2] = -np.finfo(np.float32).max
    x[0, 1, 0, 0] = np.nan
    with pytest.raises(
        DatasetError, match=r"a.nii.gz: .*finite intensities.*3 voxel\(s\) NaN, infinite or beyond"
    ):
        _finite(x, (tmp_path / "a.nii.gz",), None)
    fixed = _finite(x, (tmp_path / "a.nii.gz",), 0.0)
    assert fixed.min() == 0.0 and fixed.max() == 1.0 and np.isfinite(x).sum() == x.size - 1  # input untouched
