"""What a DICOM review found the anonymizer and its check let through: attributes the profile removes, filled in
after another tool's cleaning (an address, a telephone number), passed `--check` without the originals; burned-in
pixels allowed by `--allow-burned-in` passed it; URLs (RetrieveURL naming the patient) survived anonymization; a
file without file meta came out unreadable; folders linked into the input were left out without a word."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pydicom
import pytest
import SimpleITK as sitk
from pydicom.filewriter import dcmwrite

from automed.workflow.anonymize import anonymize, check_anonymized
from automed.workflow.convert import convert
from tests.conftest import shared


def _knee(dest: Path, n: int = 1) -> list[Path]:
    dest.mkdir(parents=True)
    files = sorted(shared("dicom", "knee_mr_phi").iterdir())[:n]
    return [Path(shutil.copy(f, dest / f.name)) for f in files]


def test_check_without_originals_finds_values_the_profile_removes(tmp_path: Path) -> None:
    _knee(tmp_path / "in", n=2)
    anonymize(tmp_path / "in", tmp_path / "out", key=tmp_path / "k.key", show_progress=False)
    assert check_anonymized(tmp_path / "out") == []
    first = sorted((tmp_path / "out").rglob("*.dcm"))[0]
    ds = pydicom.dcmread(first)
    ds.PatientAddress = "12 Baker Street"
    ds.PatientTelephoneNumbers = "555-0199"
    ds.InstitutionName = "St Mary Hospital"
    ds.AdditionalPatientHistory = "fell from a ladder"
    ds.StudyDate = "20150116"
    ds.save_as(first)
    found = {(f.attribute, f.rule) for f in check_anonymized(tmp_path / "out")}
    leftover = "a value other than a dummy in an attribute the profile removes, empties or replaces"
    for kw in ("PatientAddress", "PatientTelephoneNumbers", "InstitutionName", "AdditionalPatientHistory"):
        assert (kw, leftover) in found, kw
    assert ("StudyDate", "a real date where dates were removed") in found
    assert all(
        f.file == first.relative_to(tmp_path / "out").as_posix() for f in check_anonymized(tmp_path / "out")
    )


def test_burned_in_pixels_allowed_are_named_by_the_check(tmp_path: Path) -> None:
    (f,) = _knee(tmp_path / "in")
    ds = pydicom.dcmread(f)
    ds.BurnedInAnnotation = "YES"
    ds.save_as(f)
    anonymize(tmp_path / "in", tmp_path / "out", allow_burned_in=True, show_progress=False)
    (finding,) = check_anonymized(tmp_path / "out", tmp_path / "in")
    assert (finding.attribute, finding.rule) == (
        "pixels",
        "may show burned-in identifying text (BurnedInAnnotation is YES)",
    )


def test_urls_naming_the_patient_do_not_survive(tmp_path: Path) -> None:
    (f,) = _knee(tmp_path / "in")
    ds = pydicom.dcmread(f)
    ds.RetrieveURL = f"https://pacs.example/wado?patientID={ds.PatientID}&study={ds.StudyInstanceUID}"
    ds.RetrieveAETitle = "STMARYS_PACS"
    ds.save_as(f)
    anonymize(tmp_path / "in", tmp_path / "out", show_progress=False)
    (out,) = sorted((tmp_path / "out").rglob("*.dcm"))
    cleaned = pydicom.dcmread(out)
    assert "RetrieveURL" not in cleaned and "RetrieveAETitle" not in cleaned
    assert check_anonymized(tmp_path / "out", tmp_path / "in") == []
    cleaned.RetrieveURL = "https://pacs.example/wado?patientID=OPA135179"  # put back: the check names it
    cleaned.save_as(out)
    assert [f.attribute for f in check_anonymized(tmp_path / "out")] == ["RetrieveURL"]


def test_a_file_without_file_meta_comes_out_readable(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    ds = pydicom.dcmread(sorted(shared("dicom", "knee_mr_phi").iterdir())[0])
    pixels = ds.pixel_array
    del ds.file_meta
    # the preamble and DICM, then the dataset with no group 0002, as some exports write it
    dcmwrite(tmp_path / "in" / "a.dcm", ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert (tmp_path / "in" / "a.dcm").read_bytes()[128:134] == b"DICM\x08\x00"
    anonymize(tmp_path / "in", tmp_path / "out", show_progress=False)
    (out,) = sorted((tmp_path / "out").rglob("*.dcm"))
    cleaned = pydicom.dcmread(out)
    assert cleaned.file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    assert cleaned.file_meta.MediaStorageSOPClassUID == cleaned.SOPClassUID
    assert (cleaned.pixel_array == pixels).all()
    assert sitk.ReadImage(str(out)).GetSize()[:2] == (ds.Columns, ds.Rows)
    assert check_anonymized(tmp_path / "out") == []
    del cleaned.file_meta.TransferSyntaxUID
    cleaned.save_as(out, implicit_vr=True, little_endian=True)
    assert [(f.attribute, f.rule) for f in check_anonymized(tmp_path / "out")] == [
        ("file meta", "has no TransferSyntaxUID (readers cannot decode the pixels)")
    ]


def test_linked_folders_are_named_not_left_out_silently(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _knee(tmp_path / "in" / "a")
    _knee(tmp_path / "elsewhere")
    (tmp_path / "in" / "linked").symlink_to(tmp_path / "elsewhere")
    with caplog.at_level(logging.WARNING, logger="automed"):
        convert(tmp_path / "in" / "a", tmp_path / "nifti_a", show_progress=False)  # no link: nothing said
        assert "linked folder" not in caplog.text
        anonymize(tmp_path / "in", tmp_path / "out", show_progress=False)
        convert(tmp_path / "in", tmp_path / "nifti", show_progress=False)
    said = [r.getMessage() for r in caplog.records if "linked folder" in r.getMessage()]
    assert len(said) == 2 and all(
        "1 linked folder(s) not read (links are not followed): linked/" in m for m in said
    )
