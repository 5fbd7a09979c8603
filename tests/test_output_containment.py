"""Every path an output command writes stays inside its output folder: an output is never placed inside a folder the
command reads (predict, explain, metrics), and an earlier output folder holding a symbolic link is refused before
work (``review -> ~/notes`` had predict --overwrite --review write its pages into the linked folder)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from automed import api
from automed.artifacts import OUTPUT_MARKER, atomic_directory, claim_output, mark_output
from automed.errors import ArtifactError


def _tree(root: Path) -> dict[str, str]:
    """Path -> content hash of every file under ``root`` (links not followed: their own target named)."""
    return {
        str(p.relative_to(root)): (
            "-> " + str(p.readlink()) if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
        )
        for p in sorted(root.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


def test_claim_refuses_an_output_inside_an_input_folder(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    (inputs / "deep").mkdir(parents=True)
    (inputs / "a.csv").write_text("x\n")
    for out in (inputs / "out", inputs / "deep" / "out"):
        with pytest.raises(ArtifactError, match="must lie outside the folders it reads") as err:
            claim_output(out, "predictions", inputs=[inputs])
        assert str(inputs) in str(err.value) and "beside it" in str(err.value)
    # the input itself keeps its own message; a file input (a CSV) is no folder: outputs beside it are fine
    with pytest.raises(ArtifactError, match="must not be, or hold"):
        claim_output(inputs, "predictions", protected=[inputs], inputs=[inputs])
    assert claim_output(inputs / "out", "metrics", inputs=[inputs / "a.csv"]) == (inputs / "out").resolve()
    assert claim_output(tmp_path / "out", "predictions", inputs=[inputs]) == (tmp_path / "out").resolve()
    assert not (inputs / "out").exists()


def test_claim_refuses_an_output_written_in_place_holding_a_link(tmp_path: Path) -> None:
    """Predict and explain write into the existing folder (``in_place``): a link there is written through."""
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "index.html").write_text("the user's page")
    out = tmp_path / "P"
    (out / "review").mkdir(parents=True)
    mark_output(out, "predictions")
    assert (
        claim_output(out, "predictions", overwrite=True, in_place=True) == out.resolve()
    )  # no link: still accepted
    shutil.rmtree(out / "review")
    (out / "review").symlink_to(mine)
    with pytest.raises(ArtifactError, match="must not hold symbolic links") as err:
        claim_output(out, "predictions", overwrite=True, in_place=True)
    assert f"review -> {mine}" in str(err.value) and "remove the link" in str(err.value)
    (out / "review").unlink()
    (out / "review").mkdir()
    (out / "review" / "a.png").symlink_to(mine / "index.html")  # at any depth, a file too
    with pytest.raises(ArtifactError, match=r"review/a\.png -> "):
        claim_output(out, "predictions", overwrite=True, in_place=True)
    assert (mine / "index.html").read_text() == "the user's page"


def test_an_output_replaced_whole_may_hold_links_and_their_targets_stay(tmp_path: Path) -> None:
    """A cube, export, report, metrics, grid, convert, anonymize or patches folder is replaced whole
    (``atomic_directory``: renamed aside, then removed): a link in it (MLCube's habit of linking the dataset into
    ``mlcube/workspace/data``) was refused although the earlier folder's removal deletes the link, never what it
    points to."""
    data = tmp_path / "mydata"
    (data / "sub").mkdir(parents=True)
    (data / "case.nii.gz").write_text("the user's image")
    (data / "sub" / "notes.txt").write_text("the user's notes")
    kept = _tree(data)
    for kind in ("cube", "export"):
        out = tmp_path / kind
        (out / "mlcube" / "workspace").mkdir(parents=True)
        mark_output(out, kind)
        (out / "mlcube" / "workspace" / "data").symlink_to(data)  # a link to a folder
        (out / "card.txt").symlink_to(data / "case.nii.gz")  # and to a file
        assert claim_output(out, kind) == out.resolve()
        with pytest.raises(ArtifactError, match="must not hold symbolic links"):  # written in place: refused
            claim_output(out, kind, in_place=True)
        with atomic_directory(out) as tmp:
            (tmp / "new.txt").write_text("the new output")
            mark_output(tmp, kind)
        assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "new.txt"]
        assert not [
            p for p in tmp_path.iterdir() if p.name.startswith(f".{kind}.")
        ]  # the earlier one removed
        assert _tree(data) == kept
    # what atomic_directory relies on: rmtree removes a link to a folder, never the files of the folder it names
    doomed = tmp_path / "doomed"
    doomed.mkdir()
    (doomed / "data").symlink_to(data, target_is_directory=True)
    shutil.rmtree(doomed)
    assert not doomed.exists() and _tree(data) == kept


def test_an_output_given_as_a_link_is_replaced_where_it_points(tmp_path: Path) -> None:
    """``-o cube`` with ``cube -> real_cube`` (an earlier cube): claim_output checks the folder the link names, but
    the replacement renamed the link itself aside and left it as ``.cube.old-PID`` (rmtree does not remove a link),
    and a second replacement in the same process (a notebook exporting twice) failed on that name after the work."""
    real = tmp_path / "real_cube"
    real.mkdir()
    mark_output(real, "cube")
    (real / "old.txt").write_text("the earlier cube")
    link = tmp_path / "cube"
    link.symlink_to(real, target_is_directory=True)
    for n in range(2):
        assert claim_output(link, "cube") == real.resolve()
        with atomic_directory(link) as tmp:
            (tmp / f"new{n}.txt").write_text("the new cube")
            mark_output(tmp, "cube")
        assert link.is_symlink() and link.resolve() == real.resolve()
        assert sorted(p.name for p in real.iterdir()) == [OUTPUT_MARKER, f"new{n}.txt"]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["cube", "real_cube"]  # nothing left aside


def _label_map(path: Path) -> None:
    arr = np.zeros((6, 12, 12), np.uint8)
    arr[1:5, 2:8, 2:8] = 1
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))


def test_metrics_never_writes_inside_its_predictions_or_references(tmp_path: Path) -> None:
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    pred.mkdir()
    ref.mkdir()
    for i in range(2):
        _label_map(pred / f"case{i}.nii.gz")
        _label_map(ref / f"case{i}.nii.gz")
    before = _tree(tmp_path)
    for out in (pred / "scores", ref / "scores"):
        with pytest.raises(ArtifactError, match="must lie outside the folders it reads"):
            api.metrics(pred, out, reference=ref)
    assert _tree(tmp_path) == before
    assert api.metrics(pred, tmp_path / "scores", reference=ref).summary["n_cases"] == 2


@pytest.mark.slow
def test_predict_and_explain_write_only_inside_their_output(
    small_training: dict[str, Path], tmp_path: Path
) -> None:
    """The session's small training (tests/conftest.py), read, never written."""
    wd = small_training["W"]
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(small_training["ds"] / "imagesTr" / "case_000.nii.gz", inputs / "case_000_0000.nii.gz")
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "index.html").write_text("the user's page")
    before = {"in": _tree(inputs), "notes": _tree(mine)}
    with pytest.raises(ArtifactError, match="must lie outside the folders it reads"):
        api.predict(wd, inputs, inputs / "out", show_progress=False)
    with pytest.raises(ArtifactError, match="must lie outside the folders it reads"):
        api.explain(wd, inputs, inputs / "maps", show_progress=False)
    out = tmp_path / "P"
    api.predict(wd, inputs, out, review=True, show_progress=False)
    shutil.rmtree(out / "review")
    (out / "review").symlink_to(mine)  # a link left in an earlier output folder
    with pytest.raises(ArtifactError, match="must not hold symbolic links"):
        api.predict(wd, inputs, out, review=True, overwrite=True, show_progress=False)
    assert {"in": _tree(inputs), "notes": _tree(mine)} == before
    assert (out / "review").is_symlink()  # refused before work: the folder is as it was


def _class_folders(root: Path) -> Path:
    """A folder-per-class dataset: ``root/<class>/PATIENT_<n>.png``, three 16x16 pictures per class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("benign", "malignant"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(
                root / name / f"PATIENT_{i}.png"
            )
    return root


def test_a_work_dir_is_never_made_inside_the_dataset_folder(tmp_path: Path) -> None:
    """``automed fingerprint DS -o DS/W`` made a folder that the folder-per-class dataset then read as a class
    (verify refused the dataset from then on); train and sweep refused it already, fingerprint and plan now too."""
    ds = _class_folders(tmp_path / "ds")
    for wd in (ds / "W", ds / "benign" / "W"):
        with pytest.raises(ArtifactError, match="a work dir lies outside the dataset folder"):
            api.fingerprint(ds, wd, workers=0, show_progress=False)
        with pytest.raises(ArtifactError, match="a work dir lies outside the dataset folder"):
            api.plan_dataset(ds, wd, workers=0, show_progress=False)
    assert sorted(p.name for p in ds.iterdir()) == ["benign", "malignant"]
    api.verify(ds, workers=0, show_progress=False)  # the dataset is as it was
    api.fingerprint(ds, tmp_path / "W", workers=0, show_progress=False)  # beside it: fine
    assert (tmp_path / "W" / "fingerprint.json").is_file()


def test_a_leftover_work_dir_inside_the_dataset_is_named_before_the_dataset_is_read(tmp_path: Path) -> None:
    """``DS/W`` left by an earlier automed (fingerprint DS -o DS/W was accepted): plan, preprocess, train and sweep
    read the dataset first and refused it over ``DS/W/fingerprint.json`` (not an image of a class), a message that
    hid the rule; each now names the rule, as fingerprint does, before the dataset is read."""
    ds = _class_folders(tmp_path / "ds")
    api.fingerprint(ds, tmp_path / "W", workers=0, show_progress=False)
    shutil.copytree(tmp_path / "W", ds / "W")
    before = _tree(ds)
    calls = {
        "fingerprint": lambda: api.fingerprint(ds, ds / "W", workers=0, show_progress=False),
        "plan": lambda: api.plan_dataset(ds, ds / "W", workers=0, show_progress=False),
        "preprocess": lambda: api.preprocess(ds, ds / "W", workers=0, show_progress=False),
        "train": lambda: api.train(ds, ds / "W", epochs=1, register=False, workers=0, show_progress=False),
        "sweep": lambda: api.sweep(ds, ds / "W", trials=1, workers=0, show_progress=False),
    }
    for verb, call in calls.items():
        with pytest.raises(ArtifactError, match="a work dir lies outside the dataset folder") as err:
            call()
        assert str(ds / "W") in str(err.value) and "-o work" in str(err.value), verb
    assert _tree(ds) == before  # nothing written, the leftover included


def test_the_bundle_writes_only_inside_its_output_folder(tmp_path: Path) -> None:
    """The torch-free bundle's predict.py wrote its record ``.bundle-predict.json`` through a link of that name in
    the output folder (the linked file of the user's was replaced), and wrote predictions inside the input folder."""
    from automed.runtime import cli

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "preprocess.json").write_text('{"files": {"onnx": []}}')  # refused before any network loads
    inputs = tmp_path / "in"
    inputs.mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 5, 6), np.float32)), str(inputs / "a.nii.gz"))
    with pytest.raises(SystemExit, match="must lie outside the input folder"):
        cli.main(["-i", str(inputs), "-o", str(inputs / "out")], bundle=bundle)
    mine = tmp_path / "notes.txt"
    mine.write_text("the user's notes")
    out = tmp_path / "out"
    out.mkdir()
    (out / cli.RECORD).symlink_to(mine)
    with pytest.raises(SystemExit, match=r"must not hold symbolic links .*found \.bundle-predict\.json"):
        cli.main(["-i", str(inputs), "-o", str(out), "--overwrite"], bundle=bundle)
    assert mine.read_text() == "the user's notes" and not (inputs / "out").exists()
