"""Intake of image-level targets: class names and integer classes in a CSV, regression targets, the folder-per-class
layout, the class-size and finite-target rules of verify, class names in the fingerprint, 2D PNG channels."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image
from typer.testing import CliRunner

from automed import api
from automed.cli import app
from automed.data.cases import read_case
from automed.data.csv_layout import MIXED_VALUES_RULE
from automed.data.dataset import load_dataset
from automed.data.schema import Case, Dataset
from automed.data.verify import verify
from automed.errors import DatasetError
from automed.fingerprint.schema import Fingerprint
from automed.workflow.prepare import dataset_source
from automed.workflow.prepare import fingerprint as run_fingerprint


def _png(path: Path, seed: int, rgb: bool = False) -> Path:
    """A small random uint8 PNG (distinct per seed: verify rejects one image under two IDs)."""
    rng = np.random.default_rng(seed)
    shape = (12, 10, 3) if rgb else (12, 10)
    arr = rng.integers(1, 255, size=shape, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(arr, isVector=rgb), str(path))
    return path


def _nifti(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    img = sitk.GetImageFromArray(rng.normal(100, 20, size=(4, 6, 5)).astype(np.float32))
    img.SetSpacing((0.8, 0.8, 2.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))
    return path


def _csv(tmp_path: Path, values: list[str], name: str = "d.csv") -> Path:
    rows = ["SubjectID,Channel_0,ValueToPredict"]
    for i, v in enumerate(values):
        _nifti(tmp_path / "img" / f"s{i:02d}.nii.gz", seed=i)
        rows.append(f"s{i:02d},img/s{i:02d}.nii.gz,{v}")
    out = tmp_path / name
    out.write_text("\n".join(rows) + "\n")
    return out


def _class_folders(root: Path, per_class: dict[str, int]) -> Path:
    seed = 0
    for name, n in per_class.items():
        for i in range(n):
            seed += 1
            _png(root / name / f"img{i}.png", seed)
    return root


def test_csv_text_class_names(tmp_path: Path) -> None:
    ds = load_dataset(_csv(tmp_path, ["pneumonia", "normal", " normal ", "covid", "pneumonia"]))
    assert ds.task_type == "classification"
    assert ds.labels == {0: "covid", 1: "normal", 2: "pneumonia"}
    assert [c.value for c in ds.cases] == [2.0, 1.0, 1.0, 0.0, 2.0]


def test_csv_text_classes_stay_classification_beyond_20(tmp_path: Path) -> None:
    names = [f"class_{i:02d}" for i in range(25)]
    ds = load_dataset(_csv(tmp_path, names))
    assert ds.task_type == "classification" and len(ds.labels or {}) == 25
    assert ds.labels is not None and ds.labels[24] == "class_24"


def test_csv_integer_classes(tmp_path: Path) -> None:
    ds = load_dataset(_csv(tmp_path, ["2", "0", "1", "2", "0"]))
    assert ds.task_type == "classification"
    assert ds.labels == {0: "0", 1: "1", 2: "2"}
    assert [c.value for c in ds.cases] == [2.0, 0.0, 1.0, 2.0, 0.0]


def test_csv_regression_keeps_no_labels(tmp_path: Path) -> None:
    ds = load_dataset(_csv(tmp_path, ["0.5", "1.25", "3", "-2.5"]))
    assert ds.task_type == "regression" and ds.labels is None
    assert [c.value for c in ds.cases] == [0.5, 1.25, 3.0, -2.5]
    verify(ds, show_progress=False)


def test_csv_mixed_numbers_and_names_is_an_error(tmp_path: Path) -> None:
    csv = _csv(tmp_path, ["normal", "pneumonia", "3", "normal"])
    with pytest.raises(DatasetError) as exc:
        load_dataset(csv)
    assert len(exc.value.problems) == 1
    p = exc.value.problems[0]
    assert p.file == f"{csv}:4"  # the header is row 1: the third case is row 4
    assert p.rule == MIXED_VALUES_RULE
    assert p.value == "'3'" and "class name" in p.fix
    text = str(exc.value)
    assert str(csv) in text and MIXED_VALUES_RULE in text and "Fix:" in text


def test_csv_mixed_reports_the_text_among_numbers(tmp_path: Path) -> None:
    csv = _csv(tmp_path, ["1.5", "n/a", "2.0", "3.5"])
    with pytest.raises(DatasetError) as exc:
        load_dataset(csv)
    assert [(p.file, p.value) for p in exc.value.problems] == [(f"{csv}:3", "'n/a'")]
    assert "a number" in exc.value.problems[0].fix


def test_csv_mixed_half_and_half_says_neither_kind_is_most(tmp_path: Path) -> None:
    """Two class names and two numbers: the fix said 'most rows hold numbers' of rows that were half of them."""
    csv = _csv(tmp_path, ["grade1", "2", "grade1", "2"])
    with pytest.raises(DatasetError) as exc:
        load_dataset(csv)
    assert [p.value for p in exc.value.problems] == ["'grade1'", "'grade1'"]
    fix = exc.value.problems[0].fix
    assert "most rows" not in fix and "as many rows hold numbers as class names" in fix and "a number" in fix


def test_regression_nan_and_inf_are_errors(tmp_path: Path) -> None:
    ds = load_dataset(_csv(tmp_path, ["0.5", "nan", "1.5", "inf"]))
    assert ds.task_type == "regression"
    with pytest.raises(DatasetError) as exc:
        verify(ds, show_progress=False)
    bad = [p for p in exc.value.problems if p.rule == "ValueToPredict must be a finite number"]
    assert len(bad) == 1 and "s01" in bad[0].value and "s03" in bad[0].value


def test_missing_value_rule_stays(tmp_path: Path) -> None:
    ds = load_dataset(_csv(tmp_path, ["normal", "", "pneumonia"]))
    with pytest.raises(DatasetError, match="either every case has a ValueToPredict or none has"):
        verify(ds, show_progress=False)


def test_class_folders_layout(tmp_path: Path) -> None:
    root = _class_folders(tmp_path / "xray", {"pneumonia": 5, "normal": 6})
    _png(root / "normal" / "odd name (1).png", seed=99)
    (root / "normal" / ".DS_Store").write_bytes(b"junk")  # hidden files are ignored
    ds = load_dataset(root)
    assert ds.layout == "folders" and ds.name == "xray" and ds.source == root.resolve()
    assert ds.task_type == "classification" and ds.n_channels == 1
    assert ds.labels == {0: "normal", 1: "pneumonia"}
    ids = [c.case_id for c in ds.cases]
    assert ids == sorted(ids) and len(ids) == 12
    assert "normal_odd_name__1_" in ids and "pneumonia_img4" in ids
    by_id = {c.case_id: c for c in ds.cases}
    assert by_id["normal_img0"].value == 0.0 and by_id["pneumonia_img0"].value == 1.0
    assert by_id["normal_img0"].images == (root.resolve() / "normal" / "img0.png",)
    assert all(c.label is None and c.group is None for c in ds.cases)
    rep = verify(ds, show_progress=False)
    assert rep.n_cases == 12 and rep.warnings == ()
    assert load_dataset(dataset_source(ds)) == ds  # a work dir's record reloads the same dataset
    (root / "notes.csv").write_text("who,when\n")  # a stray CSV makes the folder ambiguous: said how to fix
    with pytest.raises(DatasetError, match="for one sub-folder of images per class, move the CSV out"):
        load_dataset(root)


def test_class_folders_verify_cli(tmp_path: Path) -> None:
    root = _class_folders(tmp_path / "ds", {"a": 5, "b": 5})
    r = CliRunner().invoke(app, ["-q", "verify", str(root)])
    assert r.exit_code == 0, r.output


def test_class_folders_nifti_volumes(tmp_path: Path) -> None:
    for k, name in enumerate(("benign", "malignant")):
        for i in range(5):
            _nifti(tmp_path / "ds" / name / f"case{i}.nii.gz", seed=10 * k + i)
    ds = load_dataset(tmp_path / "ds")
    assert ds.layout == "folders" and "benign_case0" in {c.case_id for c in ds.cases}
    verify(ds, show_progress=False)


def test_class_folders_problems_are_listed_together(tmp_path: Path) -> None:
    root = _class_folders(tmp_path / "ds", {"a": 2, "b": 2})
    (root / "empty").mkdir()
    (root / "a" / "notes.txt").write_text("x")
    (root / "b" / "photo.jpeg").write_bytes(b"x")
    with pytest.raises(DatasetError) as exc:
        load_dataset(root)
    files = {Path(p.file).name: p for p in exc.value.problems}
    assert set(files) == {"empty", "notes.txt", "photo.jpeg"}
    assert "needs images" in files["empty"].rule and files["empty"].value == "an empty class folder"
    assert files["notes.txt"].value == "suffix '.txt'" and "remove the file" in files["notes.txt"].fix
    assert "rename .jpeg to .jpg" in files["photo.jpeg"].fix


def test_an_automed_output_inside_class_folders_is_named_so(tmp_path: Path) -> None:
    """A work dir or an export written inside a folder-per-class dataset (``-o DS/W`` of another training) is read
    as a class: said as an automed output to move out, not as a class of wrong files ("remove the file")."""
    from automed.artifacts import mark_output

    root = _class_folders(tmp_path / "ds", {"a": 2, "b": 2})
    (root / "W").mkdir()
    (root / "W" / "fingerprint.json").write_text("{}")
    (root / "W" / "preprocessed").mkdir()
    (root / "E").mkdir()
    mark_output(root / "E", "export")
    (root / "E" / "model.onnx").write_bytes(b"x")
    with pytest.raises(DatasetError) as exc:
        load_dataset(root)
    files = {Path(p.file).name: p for p in exc.value.problems}
    assert set(files) == {"W", "E"}  # nothing inside them is listed
    assert files["W"].value == "an automed work dir" and files["E"].value == "an automed export output"
    for p in files.values():
        assert "every sub-folder is a class" in p.rule and f"out of {root}" in p.fix


def test_class_folders_clashing_ids_are_an_error(tmp_path: Path) -> None:
    root = _class_folders(tmp_path / "ds", {"a": 2, "b": 2})
    _png(root / "a" / "x y.png", seed=50)
    _png(root / "a" / "x_y.png", seed=51)
    with pytest.raises(DatasetError) as exc:
        load_dataset(root)
    (p,) = exc.value.problems
    assert "x y.png" in p.value and "x_y.png" in p.value and "'a_x_y'" in p.value


def test_folders_that_are_no_class_layout_keep_the_old_error(tmp_path: Path) -> None:
    nn = tmp_path / "nn"  # an nnU-Net folder that lost its dataset.json
    _nifti(nn / "imagesTr" / "c_0000.nii.gz", seed=1)
    _nifti(nn / "labelsTr" / "c.nii.gz", seed=2)
    one = _class_folders(tmp_path / "one", {"only": 3})
    for folder in (nn, one, tmp_path / "one" / "only"):
        with pytest.raises(DatasetError, match=r"a dataset folder must contain dataset\.json"):
            load_dataset(folder)


def test_class_with_one_case_is_an_error(tmp_path: Path) -> None:
    ds = load_dataset(_class_folders(tmp_path / "ds", {"common": 6, "rare": 1}))
    with pytest.raises(DatasetError) as exc:
        verify(ds, show_progress=False)
    (p,) = exc.value.problems
    assert p.value == "class 'rare' has 1 case(s)" and "at least 2 cases" in p.rule


def test_a_class_of_one_patient_is_an_error(tmp_path: Path) -> None:
    """A class whose cases all share one PatientID went into one fold: the fold validating it never learnt it
    (its CV said AUC 0.5 for the class, without a word)."""
    from automed.testing.synthetic_image_level import make_classification

    csv = make_classification(tmp_path / "d", 18, n_classes=3)
    lines = csv.read_text().splitlines()
    rows = [lines[0] + ",PatientID"]
    rows += [f"{r},{'P_X' if r.endswith(',three') else f'P{i}'}" for i, r in enumerate(lines[1:])]
    csv.write_text("\n".join(rows) + "\n")
    with pytest.raises(DatasetError) as exc:
        verify(load_dataset(csv), show_progress=False)
    (p,) = exc.value.problems
    assert (
        p.value == "class 'three' has 6 case(s), all of PatientID 'P_X'" and "at least 2 patients" in p.rule
    )


def test_class_with_three_cases_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ds = load_dataset(_class_folders(tmp_path / "ds", {"common": 6, "rare": 3}))
    with caplog.at_level(logging.WARNING, logger="automed"):
        rep = verify(ds, show_progress=False)
    (w,) = rep.warnings
    assert w.value == "class 'rare' has 3 case(s)"
    assert "as many cases as there are folds (5)" in w.rule and "--folds 2" in w.fix
    assert "class 'rare' has 3 case(s)" in caplog.text
    # trained with 3 folds (train --folds 3 passes them on), 3 cases are enough; with 4 they are not
    assert verify(ds, show_progress=False, folds=3).warnings == ()
    (w,) = verify(ds, show_progress=False, folds=4).warnings
    assert "as many cases as there are folds (4)" in w.rule


def test_one_class_only_is_an_error(tmp_path: Path) -> None:
    ds = load_dataset(_csv(tmp_path, ["normal"] * 6))
    assert ds.task_type == "classification" and ds.labels == {0: "normal"}
    with pytest.raises(DatasetError) as exc:
        verify(ds, show_progress=False)
    (p,) = exc.value.problems
    assert p.rule == "a classification dataset needs at least two classes" and "'normal'" in p.value


def test_integer_classes_are_counted_too(tmp_path: Path) -> None:
    ds = load_dataset(_csv(tmp_path, ["0", "0", "1", "1", "1", "1", "1", "0", "0", "0", "1"]))
    assert verify(ds, show_progress=False).warnings == ()
    small = load_dataset(_csv(tmp_path, ["0", "0", "0", "0", "0", "1"], name="small.csv"))
    with pytest.raises(DatasetError, match="class '1' has 1 case"):
        verify(small, show_progress=False)


def test_fingerprint_carries_class_names(tmp_path: Path) -> None:
    root = _class_folders(tmp_path / "ds", {"normal": 5, "pneumonia": 5})
    fp, reused = run_fingerprint(root, tmp_path / "W", workers=1, show_progress=False)
    assert not reused and fp.task_type == "classification" and fp.layout == "folders"
    assert fp.class_names == {"0": "normal", "1": "pneumonia"}
    assert fp.labels == []  # class indices are no label-map values
    assert fp.task_type_reason == "one folder of images per class" and fp.dimension == 2
    assert fp.compute_hash() == fp.hash
    again, reused = run_fingerprint(root, tmp_path / "W", workers=1, show_progress=False)
    assert reused and again == fp and Fingerprint.load(tmp_path / "W" / "fingerprint.json") == fp
    csv_fp, _ = run_fingerprint(
        _csv(tmp_path, ["2", "1", "0"]), tmp_path / "W2", workers=1, show_progress=False
    )
    assert csv_fp.class_names == {"0": "0", "1": "1", "2": "2"}


def test_fingerprint_without_class_names_keeps_its_hash(tmp_path: Path) -> None:
    fp, _ = run_fingerprint(
        _csv(tmp_path, ["0.5", "1.5", "2.25"]), tmp_path / "W", workers=1, show_progress=False
    )
    assert fp.class_names is None
    stored = (tmp_path / "W" / "fingerprint.json").read_text()
    old = stored.replace('"class_names": null,', "")  # as written before the field existed
    assert '"class_names"' in stored and '"class_names"' not in old
    (tmp_path / "W" / "fingerprint.json").write_text(old)
    loaded = Fingerprint.load(tmp_path / "W" / "fingerprint.json")
    assert loaded.class_names is None and loaded.compute_hash() == loaded.hash == fp.hash


def test_gray_and_rgb_png_read_as_one_and_three_channels(tmp_path: Path) -> None:
    gray = Case("g", (_png(tmp_path / "g.png", seed=1),))
    rgb = Case("c", (_png(tmp_path / "c.png", seed=2, rgb=True),))
    assert read_case(gray).channels.shape == (1, 1, 12, 10)
    cd = read_case(rgb)
    assert cd.channels.shape == (3, 1, 12, 10) and cd.channels.dtype == np.float32
    assert cd.geometry.dimension == 2


def test_rgb_class_folders_verify_and_fingerprint_as_three_channels(tmp_path: Path) -> None:
    for k, name in enumerate(("a", "b")):
        for i in range(5):
            _png(tmp_path / "ds" / name / f"{i}.png", seed=10 * k + i, rgb=True)
    ds = load_dataset(tmp_path / "ds")
    verify(ds, show_progress=False)
    fp, _ = run_fingerprint(ds, tmp_path / "W", workers=1, show_progress=False)
    assert fp.n_channels == 3 and fp.class_names == {"0": "a", "1": "b"}


def test_rgb_pictures_are_compared_on_every_colour(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Single-stain fluorescence saved as RGB (red and blue empty, the signal green): verify's same-image check read
    only the red channel, so every picture was 'blank (every voxel the same value)' and 'the same voxels' as the
    first; pictures that shared their red channel alone were refused as one image under two case IDs."""
    rng = np.random.default_rng(3)
    for k, name in enumerate(("a", "b")):
        for i in range(3):
            arr = np.zeros((12, 10, 3), np.uint8)
            arr[..., 1] = rng.integers(1, 255, size=(12, 10), dtype=np.uint8)
            if i == 2:  # the same red channel as another picture, other green and blue
                arr[..., 0] = 90
                arr[3:6, 2:5, 0] = 200
                arr[..., 2] = k + 1
            path = tmp_path / "ds" / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(sitk.GetImageFromArray(arr, isVector=True), str(path))
    with caplog.at_level("WARNING", logger="automed"):
        rep = verify(load_dataset(tmp_path / "ds"), show_progress=False)
    assert rep.n_cases == 6 and not [w for w in rep.warnings if "blank" in w.rule]
    assert "blank" not in caplog.text and "same voxels" not in caplog.text


def test_mixed_gray_and_rgb_class_folders_are_an_error(tmp_path: Path) -> None:
    root = _class_folders(tmp_path / "ds", {"a": 5, "b": 5})
    _png(root / "b" / "color.png", seed=77, rgb=True)
    with pytest.raises(DatasetError, match="same number of channels"):
        verify(load_dataset(root), show_progress=False)


def test_classification_dataset_model_rule() -> None:
    cases = tuple(Case(f"c{i}", (Path(f"{i}.png"),), value=float(i)) for i in range(30))
    assert Dataset("d", Path("d.csv"), "csv", ("",), None, cases).task_type == "regression"
    names = {i: f"n{i}" for i in range(30)}
    assert Dataset("d", Path("d.csv"), "csv", ("",), names, cases).task_type == "classification"


def test_single_dicom_files_in_a_csv_are_2d_images(tmp_path: Path) -> None:
    """An X-ray-like single DICOM file per case (here: single slices of a real MR series) as a CSV channel."""
    from tests.conftest import shared

    files = sorted(shared("dicom", "hippo_crop_series").glob("*/*.dcm"))[:8]
    csv = tmp_path / "data.csv"
    rows = [f"s{i},{f},{'a' if i % 2 else 'b'}" for i, f in enumerate(files)]
    csv.write_text("SubjectID,Channel_0,ValueToPredict\n" + "\n".join(rows) + "\n")
    res = api.plan_dataset(csv, tmp_path / "W", run_preprocess=False, workers=1, show_progress=False)
    assert res.plan.task_type == "classification" and list(res.plan.configurations) == ["2d"]
    assert res.fingerprint.class_names == {"0": "a", "1": "b"}


def test_task_override(tmp_path: Path) -> None:
    """``--task``: integer targets as a regression, or numbers as classes; refused where the data cannot be it."""
    from automed.data.dataset import load_dataset
    from automed.errors import DatasetError
    from automed.fingerprint.extract import task_reason

    rows = ["SubjectID,Channel_0,ValueToPredict"]
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(img)
    rows += [f"s{i},a.png,{v}" for i, v in enumerate([30, 41, 52, 30, 41, 63])]
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    auto = load_dataset(csv_path)
    assert auto.task_type == "classification" and auto.labels == {30: "30", 41: "41", 52: "52", 63: "63"}
    reg = load_dataset(csv_path, task="regression")
    assert reg.task_type == "regression" and reg.labels is None and "--task regression" in task_reason(reg)
    with pytest.raises(DatasetError, match="needs label maps"):
        load_dataset(csv_path, task="segmentation")
    floats = tmp_path / "f.csv"
    floats.write_text("SubjectID,Channel_0,ValueToPredict\ns0,a.png,1.5\ns1,a.png,2.5\n")
    with pytest.raises(DatasetError, match="integer classes"):
        load_dataset(floats, task="classification")
    with pytest.raises(Exception, match="Did you mean 'regression'"):
        load_dataset(csv_path, task="regresion")
    # class names as a regression had trained on their alphabetical positions (high 0, low 1, medium 2)
    names = tmp_path / "n.csv"
    names.write_text("SubjectID,Channel_0,ValueToPredict\ns0,a.png,low\ns1,a.png,medium\ns2,a.png,high\n")
    with pytest.raises(
        DatasetError, match=r"needs numeric ValueToPredict; found class names 'high', 'low', 'medium'"
    ):
        load_dataset(names, task="regression")


def test_a_class_name_that_often_means_missing_is_a_warning(tmp_path: Path) -> None:
    # "unknown" may be a real class (most of ISIC 2020's diagnoses) or a marker for missing: trained, with a warning
    csv = _csv(
        tmp_path, ["normal", "NA", "pneumonia", "normal", "NA", "pneumonia", "normal", "NA", "pneumonia"]
    )
    ds = load_dataset(csv)
    assert ds.labels == {0: "NA", 1: "normal", 2: "pneumonia"}
    report = verify(ds, show_progress=False)
    (w,) = [w for w in report.warnings if "often means 'no value'" in w.rule]
    assert "'NA' (3 case(s))" in w.value and "drop those rows" in w.fix


def test_class_names_differing_only_in_case_or_spaces_are_a_warning(tmp_path: Path) -> None:
    csv = _csv(tmp_path, ["Normal", "normal ", "pneumonia", "Normal", "normal ", "pneumonia"])
    ds = load_dataset(csv)
    assert len(ds.labels or {}) == 3  # trained as written, but said
    (w,) = [w for w in verify(ds, show_progress=False).warnings if "letter case or spaces" in w.rule]
    assert "['Normal', 'normal']" in w.value  # (cells are read stripped: "normal " is "normal")


def test_a_csv_without_any_target_is_refused_before_training(tmp_path: Path) -> None:
    csv = _csv(tmp_path, ["", "", ""])  # a ValueToPredict column left empty: no target anywhere
    verify(load_dataset(csv), show_progress=False)  # images alone may be verified (e.g. inputs to predict)
    with pytest.raises(DatasetError) as exc:
        api.train(csv, tmp_path / "W", show_progress=False)
    (p,) = exc.value.problems
    assert p.file == str(csv) and "needs a target" in p.rule and "ValueToPredict" in p.fix
    assert not (tmp_path / "W" / "fingerprint.json").exists()


def test_alpha_channels_and_mixed_dimensions_are_refused(tmp_path: Path) -> None:
    rows = ["SubjectID,Channel_0,ValueToPredict"]
    for i in range(4):
        _png(tmp_path / "img" / f"p{i}.png", seed=i)
        rows.append(f"p{i},img/p{i}.png,{i % 2}")
    rgba = np.random.default_rng(9).integers(1, 255, size=(12, 10, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "img" / "a.png")
    rows.append("a,img/a.png,1")
    _nifti(tmp_path / "img" / "v.nii.gz", seed=7)  # a volume among pictures
    rows.append("v,img/v.nii.gz,0")
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DatasetError) as exc:
        verify(load_dataset(tmp_path / "d.csv"), show_progress=False)
    rules = {p.rule: p for p in exc.value.problems}
    alpha = rules["a 2D image must be grayscale or RGB, without an alpha channel"]
    assert alpha.file.endswith("a.png") and "RGBA" in alpha.value and "convert" in alpha.fix
    mixed = rules["every case must be 2D (pictures, volumes of one slice) or every case 3D"]
    assert "1 3D" in mixed.value and "'v'" in mixed.value and "two datasets" in mixed.fix


def test_a_folder_meant_as_classes_gets_the_class_layout_rules_too(tmp_path: Path) -> None:
    _class_folders(tmp_path / "one", {"pneumonia": 3})  # one class folder is not the layout yet
    with pytest.raises(DatasetError) as exc:
        load_dataset(tmp_path / "one")
    rules = " | ".join(p.rule + " " + p.fix for p in exc.value.problems)
    assert "must contain dataset.json" in rules and "at least two classes" in rules
    (tmp_path / "seg" / "imagesTr").mkdir(parents=True)  # a segmentation layout without dataset.json
    with pytest.raises(DatasetError) as exc:
        load_dataset(tmp_path / "seg")
    assert [p.rule for p in exc.value.problems] == ["a dataset folder must contain dataset.json"]


def test_a_folder_of_images_without_classes_is_told_both_layouts_that_take_them(tmp_path: Path) -> None:
    """A folder of pictures (no dataset.json, no CSV, no sub-folders) was told to add a dataset.json or run
    construct-csv, which takes DIR/<subject>/<files>: neither fits. The fix now names the layouts that do."""
    for i in range(3):
        _png(tmp_path / "xrays" / f"p{i}.png", seed=90 + i)
    with pytest.raises(DatasetError) as exc:
        load_dataset(tmp_path / "xrays")
    (p,) = exc.value.problems
    assert p.rule == "a dataset folder must contain dataset.json" and "3 image files" in p.value
    assert "xrays/<class>/<images>" in p.fix and "SubjectID, Channel_0, ValueToPredict" in p.fix


def test_loose_dicom_files_and_volumes_are_told_the_layouts_that_fit_them(tmp_path: Path) -> None:
    """Loose .dcm files (often one series' slices) and volumes with their label maps were told the pictures' fix
    (class sub-folders, a CSV with ValueToPredict): a series is a folder for construct-csv, and a volume's label map
    goes in a CSV's Label column."""
    (tmp_path / "dcm").mkdir()
    for i in range(3):
        (tmp_path / "dcm" / f"IM{i}.dcm").write_bytes(b"")
    with pytest.raises(DatasetError) as exc:
        load_dataset(tmp_path / "dcm")
    fix = exc.value.problems[0].fix
    assert "dcm/<subject>/<series>/<files>" in fix and "automed construct-csv" in fix and "<class>" not in fix
    (tmp_path / "nii").mkdir()
    for name in ("case0.nii.gz", "case0_seg.nii.gz"):
        (tmp_path / "nii" / name).write_bytes(b"")
    with pytest.raises(DatasetError) as exc:
        load_dataset(tmp_path / "nii")
    assert "SubjectID, Channel_0 and Label" in exc.value.problems[0].fix


def test_verify_says_what_the_cases_are_trained_on(tmp_path: Path) -> None:
    """The summary line had said "targets from ValueToPredict" for class folders and for images alone, and the
    fingerprint "label maps are given" where there were none (review)."""
    from automed.fingerprint.extract import task_reason

    folders = _class_folders(tmp_path / "f", {"cat": 2, "dog": 2})
    assert verify(load_dataset(folders), show_progress=False).targets == "2 classes from class folders"
    names = _csv(tmp_path, ["a", "b", "a", "b"], "n.csv")
    assert verify(load_dataset(names), show_progress=False).targets == "2 classes from ValueToPredict"
    numbers = _csv(tmp_path, ["1.5", "2.5", "3.5", "4.5"], "r.csv")
    assert (
        verify(load_dataset(numbers), show_progress=False).targets == "regression targets from ValueToPredict"
    )
    alone = tmp_path / "alone.csv"
    alone.write_text("SubjectID,Channel_0\n" + "".join(f"s{i:02d},img/s{i:02d}.nii.gz\n" for i in range(4)))
    ds = load_dataset(alone)
    assert verify(ds, show_progress=False).targets.startswith(
        "images only (no label maps, no ValueToPredict)"
    )
    assert "images only" in task_reason(ds) and "label maps are given" not in task_reason(ds)


def test_numbers_with_a_decimal_comma_are_named_as_such(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A German spreadsheet's "1,5" targets were read as 4 classes (verify said OK), and --task regression's refusal
    ("write the numbers themselves") never named the decimal comma."""
    from automed.testing.synthetic_image_level import make_regression

    csv = make_regression(tmp_path / "d", 16)
    lines = csv.read_text().splitlines()
    values = ["1,5", "2,0", "2,5", "3,0"]
    rows = [lines[0]] + [",".join(r.split(",")[:-1]) + f',"{values[i % 4]}"' for i, r in enumerate(lines[1:])]
    csv.write_text("\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING, logger="automed"):
        rep = verify(load_dataset(csv), show_progress=False)
    (w,) = [w for w in rep.warnings if "decimal" in w.rule]
    assert "4 classes such as '1,5'" in w.value and "decimal point (1.5) for a regression" in w.fix
    with pytest.raises(DatasetError, match=r"decimal comma .*decimal point \(1\.5\)"):
        load_dataset(csv, task="regression")
