"""The torch-free bundle's README describes the input its model takes and how to take up an unfinished run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from automed.export.image_level import bundle_input_text


def test_bundle_readme_input_sentence_fits_the_channel_count() -> None:
    one = bundle_input_text(1)
    assert "1 channels" not in one and "CASE_0000" not in one and "one file per case" in one
    assert "`CASE_0000`, `CASE_0001`" in bundle_input_text(3) and "all 3" in bundle_input_text(3)


def test_bundle_readme_continue_line_names_options_predict_py_has(capsys: pytest.CaptureFixture[str]) -> None:
    """The README described predict.py's options but not --continue (taking up an unfinished run); its line names
    only options the bundle's predict.py accepts."""
    from automed.export.bundle import CONTINUE_TEXT
    from automed.runtime.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    accepted = set(re.findall(r"--[a-z-]+", capsys.readouterr().out))
    named = set(re.findall(r"--[a-z-]+", CONTINUE_TEXT))
    assert "--continue" in named and named <= accepted, named - accepted


def test_bundle_readme_names_the_dicom_layouts_discovery_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README said "DICOM series folders" (image-level: "a sub-folder per DICOM series") while discovery also
    reads series at any depth, `.IMA`/`.dicom`/no endings, a CD's DICOMDIR and links; each layout it names is read
    as it says (runtime/inputs.find_cases), and a link that would loop is named, not followed."""
    import shutil

    from automed.export.bundle import dicom_input_text
    from automed.runtime.inputs import find_cases
    from automed.runtime.io import DICOM_SUFFIXES
    from tests.conftest import shared
    from tests.test_dicom_xray_folders import xray_dicom

    text = dicom_input_text()
    assert (
        all(f"`{s}`" in text.lower() for s in DICOM_SUFFIXES) and "`IM0001`" in text and "`DICOMDIR`" in text
    )
    assert "`PATIENT_STUDY_SERIES`" in text and "`FOLDER_FILE`" in text and "at any depth" in text
    assert "every DICOM file is a case" in bundle_input_text(1, pictures=True)
    assert "DICOM (one channel)" in bundle_input_text(1) and "DICOM" not in bundle_input_text(3)
    from automed.package.mlcube import _what  # the cube's README: the same runtime reads its data

    assert text in _what({"configuration": "3d_fullres", "labels": {"0": "background", "1": "a"}})[1]
    image = {"configuration": "2d", "task": "classification", "target": {}, "inference": {"patch": [64, 64]}}
    assert dicom_input_text(pictures=True) in _what(image)[1]
    series = tmp_path / "P1" / "ST1" / "SE1"
    series.mkdir(parents=True)
    for src in sorted(
        shared("dicom", "hippo_crop_series", "Study1").glob("*.dcm"), key=lambda f: int(f.stem)
    )[:2]:
        shutil.copy(src, series / src.name)
    (tmp_path / "xr").mkdir()
    xray_dicom(tmp_path / "xr" / "a.IMA", 0)
    xray_dicom(tmp_path / "xr" / "b.dicom", 1)
    xray_dicom(tmp_path / "IM0001", 2)
    (tmp_path / "DICOMDIR").write_bytes(b"")  # a CD's index: its folder is read
    (tmp_path / "xr" / "up").symlink_to(tmp_path, target_is_directory=True)
    cases = find_cases(tmp_path / "DICOMDIR", 1)
    assert [c.case_id for c in cases] == ["IM0001", "P1_ST1_SE1", "xr_a", "xr_b"]
    assert "xr/up/ (a link to the input folder or a folder above it" in capsys.readouterr().err
