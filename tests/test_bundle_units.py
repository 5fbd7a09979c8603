"""Pieces of the standalone bundle and the cube that need no trained model: MetaImage outputs whole, unreadable
inputs named, a runtime asked for by name that is not installed, image references and tar members of the cube."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk


def test_a_metaimage_prediction_keeps_its_data_file_under_its_name(tmp_path: Path) -> None:
    from automed.runtime.io import write_labels

    ref = sitk.GetImageFromArray(np.zeros((3, 4, 5), np.float32))
    labels = np.zeros((3, 4, 5), np.uint8)
    labels[1, 2, 3] = 2
    write_labels(labels, ref, tmp_path / "CASE.mhd")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CASE.mhd", "CASE.zraw"]  # nothing hidden left
    assert "ElementDataFile = CASE.zraw" in (tmp_path / "CASE.mhd").read_text()
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "CASE.mhd")))[1, 2, 3] == 2


def test_an_unreadable_image_names_the_file_and_the_formats(tmp_path: Path) -> None:
    from automed.runtime.io import Case, read_case

    (tmp_path / "x.nii.gz").write_bytes(b"not an image")
    with pytest.raises(SystemExit) as err:
        read_case(Case("x", (tmp_path / "x.nii.gz",), ".nii.gz"))
    assert "x.nii.gz: not readable as an image" in str(err.value) and "NIfTI" in str(err.value)


def test_a_runtime_asked_for_by_name_must_be_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    from automed.runtime import backends, cli

    files = {"onnx": ["networks/onnx/fold_0.onnx"], "openvino": ["networks/openvino/fold_0.xml"]}
    monkeypatch.setattr(backends, "installed", lambda r: r == "onnx")
    assert (
        backends.choose_runtime(None, files) == "onnx" and backends.choose_runtime("openvino", files) is None
    )
    with pytest.raises(SystemExit, match=r"--runtime openvino is not installed here: pip install openvino$"):
        cli._runtime("openvino", {"files": files})
    with pytest.raises(SystemExit, match="this bundle has"):
        cli._runtime("openvino", {"files": {"onnx": files["onnx"]}})
    # CUDA is onnxruntime-gpu's: OpenVINO installed first no longer runs a --device cuda request on the CPU
    monkeypatch.setattr(backends, "installed", lambda r: True)
    assert (
        backends.choose_runtime(None, files) == "openvino"
        and cli._runtime(None, {"files": files}, "cuda") == "onnx"
    )
    with pytest.raises(SystemExit, match="--device cuda runs the ONNX networks"):
        cli._runtime("openvino", {"files": files}, "cuda")
    with pytest.raises(
        SystemExit, match=r"--device cuda runs ONNX networks; this bundle has \['openvino'\] only"
    ):
        cli._runtime(None, {"files": {"openvino": files["openvino"]}}, "cuda")
    with pytest.raises(SystemExit):  # --threads is a whole number of at least 1 (OpenVINO raised a traceback)
        cli.main(["-i", ".", "-o", "x", "--threads", "-2"])


def test_cube_image_names_and_tar_members() -> None:
    from automed.package.mlcube import IMAGE_REF, _anonymous, _cuda_image, _image_name

    assert _image_name("Größe: T1 (brain)") == "automed/gr-e-t1-brain:0.1.0"
    assert all(IMAGE_REF.fullmatch(n) for n in ("automed/liver:0.1.0", "host:5000/a/b:1.0", "busybox"))
    assert not any(IMAGE_REF.fullmatch(n) for n in ("automed/Größe:1", "Upper/x:1", "a b:1"))
    assert _cuda_image("host:5000/a/b:1.0") == "host:5000/a/b-cuda:1.0" and _cuda_image("x") == "x-cuda"
    info = _anonymous(tarfile.TarInfo("networks"))
    assert (info.uid, info.gid, info.uname, info.gname) == (0, 0, "", "")


def test_the_cube_entry_point_replaces_its_own_predictions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from automed.runtime import cli
    from automed.runtime.entry import infer

    seen: list[list[str]] = []
    monkeypatch.setattr(cli, "main", lambda argv, bundle: seen.append(argv) or 0)
    (tmp_path / "p.yaml").write_text("tta: false\n")
    opts = {
        "data_path": "d",
        "output_path": "o",
        "parameters_file": str(tmp_path / "p.yaml"),
        "additional_files": ".",
    }
    assert infer(opts) == 0
    assert seen == [["-i", "d", "-o", "o", "--overwrite", "--no-tta"]]  # a rerun into its output volume works


def test_the_cube_entry_point_passes_folds_and_step_size_to_the_bundle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``automed predict`` and the bundle's ``predict.py`` take ``--folds`` and ``--step-size``; a cube took
    neither. Its parameters file's ``folds`` and ``step_size`` are now passed through, checked first against the
    bundle's ``preprocess.json`` and named as the parameters file names them."""
    import json

    from automed.runtime import cli
    from automed.runtime.entry import infer

    seen: list[list[str]] = []
    monkeypatch.setattr(cli, "main", lambda argv, bundle: seen.append(argv) or 0)
    weights = tmp_path / "additional_files"
    weights.mkdir()
    files = {"onnx": ["networks/onnx/fold_0.onnx", "networks/onnx/fold_2.onnx"]}
    meta = {"task": "segmentation", "folds": [0, 2], "files": files, "inference": {"step": 0.5}}
    (weights / "preprocess.json").write_text(json.dumps(meta))
    params = tmp_path / "p.yaml"
    opts = {
        "data_path": "d",
        "output_path": "o",
        "parameters_file": str(params),
        "additional_files": str(weights),
    }
    params.write_text("folds: 2\nstep_size: 0.25\n")
    assert infer(opts) == 0
    assert seen == [["-i", "d", "-o", "o", "--overwrite", "--folds", "2", "--step-size", "0.25"]]
    params.write_text("folds: 0,1\n")
    with pytest.raises(
        SystemExit, match=r"p.yaml: folds and step_size are the bundle's predict.py --folds"
    ) as e:
        infer(opts)
    assert "holds (0, 2); found --folds 0, 1 (no fold 1)" in str(e.value) and len(seen) == 1
    member = {**meta, "configuration": "3d_fullres"}  # a pair: the same fold numbers of each member
    pair = {"members": [member, {**member, "folds": [2, 0]}], "files": files, "inference": {}}
    (weights / "preprocess.json").write_text(json.dumps(pair))
    params.write_text("folds: 2\n")
    assert infer(opts) == 0 and seen[-1][-2:] == ["--folds", "2"]
    pair["members"][1] = {**member, "folds": [0]}
    (weights / "preprocess.json").write_text(json.dumps(pair))
    with pytest.raises(
        SystemExit, match=r"member 2 \(3d_fullres\) of this pair holds \(0\); found --folds 2"
    ):
        infer(opts)
    assert len(seen) == 2
    (weights / "preprocess.json").write_text(json.dumps({**meta, "task": "classification"}))
    params.write_text("step_size: 0.5\n")
    with pytest.raises(SystemExit, match="an image-level model"):
        infer(opts)


def test_the_cube_parameters_file_shows_folds_and_step_size(tmp_path: Path) -> None:
    """The generated ``parameters.yaml`` names both, commented out, with the folds the export holds; uncommented,
    they are values the entry point takes."""
    from automed.package.mlcube import parameters_text
    from automed.runtime.entry import read_parameters

    seg = parameters_text({"folds": [0, 1], "inference": {"step": 0.5}})
    assert "# folds: 0,1  # only these" in seg and "# step_size: 0.5" in seg and "(default: 0.5)" in seg
    image = parameters_text({"task": "classification", "folds": [-1]})
    assert "# folds: all  #" in image and "step_size" not in image  # no sliding window
    pair = parameters_text({"members": [{}, {}]})  # a pair exported before bundles recorded folds
    assert "folds" not in pair and "(default: each member's own)" in pair
    pair = parameters_text({"members": [{"folds": [0, 1, 2]}, {"folds": [2, 1]}]})
    assert "# folds: 1,2  # only these folds of each member predict" in pair  # those both hold
    lines = [ln.removeprefix("# ") for ln in seg.splitlines() if ln.startswith(("# folds", "# step_size"))]
    (tmp_path / "p.yaml").write_text("\n".join(lines) + "\n")
    assert read_parameters(tmp_path / "p.yaml") == {"folds": "0,1", "step_size": 0.5}
    # tta as the model predicts: it had said true for a model selected without mirror TTA (true cannot add it)
    (tmp_path / "t.yaml").write_text(seg)
    assert read_parameters(tmp_path / "t.yaml") == {"tta": True, "threads": 2}
    (tmp_path / "t.yaml").write_text(parameters_text({"inference": {"tta": False, "step": 0.5}}))
    assert read_parameters(tmp_path / "t.yaml") == {"tta": False, "threads": 2}
    off = parameters_text({"members": [{"inference": {"tta": False}}, {"inference": {"tta": False}}]})
    assert "tta: false  # the model predicts without mirror TTA" in off


def test_cube_evaluate_matches_integer_classes_written_as_floats(tmp_path: Path) -> None:
    """A reference CSV saved by pandas or a spreadsheet holds 1.0 where the model's table names class 1."""
    import json

    from automed.runtime.entry import evaluate_table

    (tmp_path / "pred.csv").write_text("SubjectID,prediction\na,0\nb,1\nc,1\nd,0\n")
    (tmp_path / "ref.csv").write_text("SubjectID,ValueToPredict\na,0.0\nb,1.0\nc, 1\nd,1.0\n")
    assert evaluate_table(tmp_path / "pred.csv", tmp_path / "ref.csv", tmp_path / "r.json") == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["accuracy"] == 0.75 and result["sensitivity"] == {"0": 1.0, "1": 2 / 3}
    (tmp_path / "names.csv").write_text("SubjectID,prediction\na,cat\nb,dog\nc,dog\nd,cat\n")
    (tmp_path / "ref2.csv").write_text("SubjectID,ValueToPredict\na,cat\nb,dog\nc,cat\nd,cat\n")
    evaluate_table(tmp_path / "names.csv", tmp_path / "ref2.csv", tmp_path / "r2.json")
    assert json.loads((tmp_path / "r2.json").read_text())["sensitivity"] == {"cat": 2 / 3, "dog": 1.0}
    # a regression model's values against class names had scored accuracy 0 without a word
    (tmp_path / "values.csv").write_text("SubjectID,prediction\na,180.2\nb,181.5\nc,3.25\nd,7.5\n")
    found = "must name the reference's classes; found 180.2, 181.5, 3.25, 7.5 against cat"
    with pytest.raises(SystemExit, match=re.escape(found)):
        evaluate_table(tmp_path / "values.csv", tmp_path / "ref2.csv", tmp_path / "r3.json")
    assert not (tmp_path / "r3.json").exists()
    # a classifier of 22 integer classes (its table has probability columns) is scored as classes, not values
    head = "SubjectID,prediction," + ",".join(f"probability_{k}" for k in range(22))
    rows = [f"c{i},{i % 22 if i % 4 else (i + 1) % 22}," + ",".join(["0.05"] * 22) for i in range(44)]
    (tmp_path / "many.csv").write_text("\n".join([head, *rows]) + "\n")
    truth = "\n".join(f"c{i},{i % 22}" for i in range(44))
    (tmp_path / "ref3.csv").write_text("SubjectID,ValueToPredict\n" + truth + "\n")
    evaluate_table(tmp_path / "many.csv", tmp_path / "ref3.csv", tmp_path / "r4.json")
    many = json.loads((tmp_path / "r4.json").read_text())
    assert "mae" not in many and many["accuracy"] == 33 / 44


def test_cube_evaluate_reads_upper_case_metaimage_as_the_bundle_reads_its_inputs(tmp_path: Path) -> None:
    """Inputs ``A.MHA``/``B.MHD`` are read (runtime/io.py's MetaImageIO) and predicted as ``A.mha``/``B.mhd``;
    evaluate read references with ITK's own choice of reader ("Unable to determine ImageIO reader") and looked for a
    prediction named like the reference."""
    import json

    import numpy as np
    import SimpleITK as sitk

    from automed.runtime.entry import evaluate
    from automed.runtime.io import write_atomic

    labels, preds = tmp_path / "labels", tmp_path / "preds"
    ref = np.zeros((4, 8, 8), np.uint8)
    ref[1:3, 2:6, 2:6] = 1
    for name in ("A", "B"):
        ending = ".mha" if name == "A" else ".mhd"
        for where in (labels, preds):
            write_atomic(sitk.GetImageFromArray(ref), where / f"{name}{ending}")
        (labels / f"{name}{ending}").rename(labels / f"{name}{ending.upper()}")
    opts = {"predictions": str(preds), "labels": str(labels), "output_path": str(tmp_path / "r.yaml")}
    assert evaluate(opts) == 0
    scored = json.loads((tmp_path / "r.yaml").read_text())
    # numbered in the order of the reference names (A.MHA, B.MHD): a case's name never leaves the site
    assert scored["dice_per_case"] == {"case_1": {"1": 1.0}, "case_2": {"1": 1.0}} and scored["n_cases"] == 2
    assert "A.MHA" not in (tmp_path / "r.yaml").read_text()
    write_atomic(sitk.GetImageFromArray(ref), preds / "C.mha")
    (labels / "C.MHA").write_text("not an image")
    with pytest.raises(SystemExit, match=r"labels/C.MHA: not readable as a label map \(.*\); give NIfTI"):
        evaluate(opts)


def test_cube_evaluate_scores_label_maps_only_and_names_a_grid_mismatch(tmp_path: Path) -> None:
    """A labels folder holding its dataset.json ("missing prediction for dataset.json") and a reference of another
    grid (a numpy broadcast traceback) were errors without a word of what to fix."""
    import json

    import numpy as np
    import SimpleITK as sitk

    from automed.runtime.entry import evaluate

    labels, preds = tmp_path / "labels", tmp_path / "preds"
    labels.mkdir()
    preds.mkdir()
    ref = np.zeros((4, 8, 8), np.uint8)
    ref[1:3, 2:6, 2:6] = 1
    sitk.WriteImage(sitk.GetImageFromArray(ref), str(labels / "a.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(ref), str(preds / "a.nii.gz"))
    (labels / "dataset.json").write_text("{}")
    opts = {"predictions": str(preds), "labels": str(labels), "output_path": str(tmp_path / "r.yaml")}
    assert evaluate(opts) == 0
    assert json.loads((tmp_path / "r.yaml").read_text())["dice_mean"] == {"1": 1.0}
    sitk.WriteImage(sitk.GetImageFromArray(ref[:, :6]), str(preds / "a.nii.gz"))
    with pytest.raises(SystemExit, match=r"grid \(8, 6, 4\) differs from its reference"):
        evaluate(opts)


def test_the_bundle_refuses_an_output_named_like_a_file(tmp_path: Path) -> None:
    """``predict.py -o preds.csv`` made a folder named preds.csv, as automed's own verbs did."""
    from automed.runtime.cli import main

    (tmp_path / "in").mkdir()
    with pytest.raises(SystemExit, match=r"preds\.csv: the output is a folder.*-o .*/preds\b"):
        main(["-i", str(tmp_path / "in"), "-o", str(tmp_path / "preds.csv")], bundle=tmp_path)
    assert not (tmp_path / "preds.csv").exists()


def test_cube_evaluate_scores_a_test_set_of_one_class_got_wrong(tmp_path: Path) -> None:
    import json

    from automed.runtime.entry import evaluate_table

    (tmp_path / "pred.csv").write_text("SubjectID,prediction\na,malignant\nb,malignant\n")
    (tmp_path / "ref.csv").write_text("SubjectID,ValueToPredict\na,benign\nb,benign\n")
    assert evaluate_table(tmp_path / "pred.csv", tmp_path / "ref.csv", tmp_path / "r.json") == 0
    assert json.loads((tmp_path / "r.json").read_text())["accuracy"] == 0.0
