"""Where the exported bundle's ``predict.py`` writes: ``python E/predict.py -i IMAGES -o E`` (and ``-o E/preds``)
wrote ``predictions.csv``, real case IDs and all, into the export, the folder that is shared and that the next
``automed export W -o E`` replaces whole (deleting them); and it wrote into a folder of the user's (``userdir/``
holding ``notes.txt``), which ``automed predict`` refuses. Both are refused now, before anything is read or written,
by the bundle's own code (``runtime/``, shipped without automed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from automed.runtime import cli

RECORD = ".bundle-predict.json"  # the bundle's record of the predictions it wrote (runtime/output.py)


def _bundle(folder: Path) -> Path:
    """An export's files as far as predict.py reads them before any network loads (the place is refused first)."""
    folder.mkdir(parents=True)
    (folder / "preprocess.json").write_text('{"files": {"onnx": []}}')
    (folder / "export.json").write_text("{}")
    return folder


def _inputs(folder: Path) -> Path:
    folder.mkdir(parents=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 5, 6), np.float32)), str(folder / "PATIENT_7.nii.gz"))
    return folder


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_the_bundle_never_predicts_into_an_export_nor_a_folder_holding_it(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "share" / "E")
    other = _bundle(tmp_path / "E2")  # another model's export
    inputs = _inputs(tmp_path / "in")
    before = _files(tmp_path)
    found = {
        bundle: "found the bundle's own folder",
        bundle / "preds": f"found a folder inside the bundle {bundle}",
        bundle / "networks" / "x": f"found a folder inside the bundle {bundle}",
        tmp_path / "share": f"found a folder holding the bundle {bundle}",
        other: f"found the automed export {other}",
        other / "preds": f"found a folder inside the automed export {other}",
    }
    for out, words in found.items():
        for extra in ([], ["--overwrite"], ["--continue"]):
            with pytest.raises(
                SystemExit, match="must lie outside the bundle and every other automed export"
            ) as e:
                cli.main(["-i", str(inputs), "-o", str(out), *extra], bundle=bundle)
            text = str(e.value)
            assert text.startswith(f"{out}: ") and words in text, text
            assert "choose an -o beside it, e.g. -o" in text and "`automed export` replaces it whole" in text
    assert _files(tmp_path) == before  # refused before anything was written
    from automed.runtime.output import refuse_export_place

    refuse_export_place(tmp_path / "preds", (tmp_path / "preds").resolve(), bundle)  # beside it: fine


def test_the_bundle_never_writes_among_files_it_did_not_write(tmp_path: Path) -> None:
    """``automed predict`` never writes into a non-empty folder automed did not write; the bundle wrote its
    predictions beside the user's ``notes.txt`` (and, with --overwrite, among any files not named like them)."""
    bundle = _bundle(tmp_path / "E")
    inputs = _inputs(tmp_path / "in")
    mine = tmp_path / "userdir"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's notes")
    for extra in ([], ["--overwrite"]):
        with pytest.raises(
            SystemExit, match=r"writes into a new or empty folder, or one a bundle wrote"
        ) as e:
            cli.main(["-i", str(inputs), "-o", str(mine), *extra], bundle=bundle)
        assert str(e.value).startswith(f"{mine}: ") and "holds notes.txt without it" in str(e.value)
        assert "choose a new or empty folder for -o" in str(e.value)
    assert _files(mine) == ["notes.txt"] and (mine / "notes.txt").read_text() == "the user's notes"
    # what is accepted: a new or empty folder, one a bundle wrote (its record), an older bundle's table
    from automed.runtime.output import refuse_foreign_folder

    for ok in (tmp_path / "new", tmp_path / "empty"):
        refuse_foreign_folder(ok, ok)
    (tmp_path / "empty").mkdir()
    refuse_foreign_folder(tmp_path / "empty", tmp_path / "empty")
    (mine / RECORD).write_text(json.dumps({"bundle": "x", "tta": True}))
    refuse_foreign_folder(mine, mine)
    older = tmp_path / "older"
    older.mkdir()
    (older / "predictions.csv").write_text("SubjectID,prediction,probability_a\nPATIENT_7,a,0.9\n")
    (older / "results.yaml").write_text("accuracy: 1.0\n")  # the cube's evaluate beside it
    refuse_foreign_folder(older, older)
    (older / "predictions.csv").write_text("patient,diagnosis\n7,a\n")  # the user's own table
    with pytest.raises(SystemExit, match=r"holds predictions\.csv, results\.yaml without it"):
        refuse_foreign_folder(older, older)


def test_the_exported_predict_py_refuses_its_own_folder_with_its_runtime_copy(tmp_path: Path) -> None:
    """The bundle as written (``predict.py`` and its ``runtime/`` copy), run by a Python that is told nothing of
    automed's sources (isolated mode, another working folder): the rule travels with the bundle."""
    from automed.export.bundle import copy_runtime

    bundle = _bundle(tmp_path / "E")
    copy_runtime(bundle)
    inputs = _inputs(tmp_path / "in")
    for out in (bundle, bundle / "preds"):
        run = subprocess.run(
            [sys.executable, "-I", str(bundle / "predict.py"), "-i", str(inputs), "-o", str(out)],
            capture_output=True, text=True, cwd=tmp_path / "in",
        )  # fmt: skip
        assert run.returncode == 1 and "must lie outside the bundle" in run.stderr, run.stderr[-1500:]
    assert not (bundle / "preds").exists() and not (bundle / "predictions.csv").exists()
    assert not (bundle / RECORD).exists()
