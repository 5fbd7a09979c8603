"""DICOM whose pixels SimpleITK cannot decode (HTJ2K from a newer PACS, video) was refused as a corrupt file to
replace ('re-export the file ... or replace the corrupt file'; a series: 'check the series is complete'): the file
is fine, its compression is the problem. The error names the transfer syntax and says to decompress it."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.encaps import encapsulate

from automed.data.io import read_header, read_sitk
from automed.errors import DatasetError
from automed.runtime.io import Case, compressed_dicom, read_case
from tests.conftest import shared
from tests.test_dicom_xray_folders import xray_dicom

HTJ2K = "1.2.840.10008.1.2.4.201"


def _compressed(path: Path, syntax: str) -> Path:
    xray_dicom(path, 0)
    return _compressed_copy(path, path, syntax)


def _compressed_copy(src: Path, dest: Path, syntax: str = HTJ2K) -> Path:
    """``src`` written to ``dest`` as if compressed with ``syntax`` (its code stream is not decodable)."""
    ds = pydicom.dcmread(src)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([b"\xff\x4f" + b"\x00" * 62])
    ds["PixelData"].VR = "OB"
    ds.save_as(dest, enforce_file_format=True)
    return dest


def test_the_transfer_syntax_is_read_from_the_meta_header(tmp_path: Path) -> None:
    assert compressed_dicom(_compressed(tmp_path / "a.dcm", HTJ2K)) == f"transfer syntax {HTJ2K} (HTJ2K)"
    assert (
        compressed_dicom(_compressed(tmp_path / "b", "1.2.840.10008.1.2.5"))
        == "transfer syntax 1.2.840.10008.1.2.5 (RLE)"
    )
    xray_dicom(tmp_path / "raw.dcm", 0)
    (tmp_path / "notes.txt").write_text("x" * 200)
    assert compressed_dicom(tmp_path / "raw.dcm") is None
    assert compressed_dicom(tmp_path / "notes.txt") is None


def test_an_undecodable_dicom_says_decompress_it(tmp_path: Path) -> None:
    f = _compressed(tmp_path / "x.dcm", HTJ2K)
    said = rf"transfer syntax {HTJ2K} \(HTJ2K\).*decompress \(gdcmconv --raw"
    with pytest.raises(
        DatasetError, match=r"DICOM pixels must be uncompressed or in a compression SimpleITK decodes"
    ):
        read_sitk(f)
    with pytest.raises(DatasetError, match=said):
        read_sitk(f)
    with pytest.raises(SystemExit, match=said):
        read_case(Case("x", (f,), ".nii.gz"))
    read_header(f)  # the header alone is readable: discovery takes the file as a case


def test_an_undecodable_series_says_decompress_it(tmp_path: Path) -> None:
    series = tmp_path / "mr"
    series.mkdir()
    for src in sorted(
        shared("dicom", "hippo_crop_series", "Study1").glob("*.dcm"), key=lambda f: int(f.stem)
    )[:3]:
        _compressed_copy(src, series / src.name)
    said = rf"transfer syntax {HTJ2K} \(HTJ2K\).*decompress"
    with pytest.raises(DatasetError, match=said):
        read_sitk(series)
    with pytest.raises(SystemExit, match=said):
        read_case(Case("mr", (series,), ".nii.gz"))


def test_an_undecodable_input_is_refused_before_any_model_runs(tmp_path: Path) -> None:
    """It was found at its turn: predict stopped there and removed the predictions it had made (a folder it created
    holds nothing half-done), the bundle stopped half-way. RLE, which SimpleITK decodes, passes."""
    from pydicom.uid import RLELossless

    from automed.infer.inputs import discover
    from automed.runtime.inputs import find_cases

    for i in range(2):
        xray_dicom(tmp_path / f"a{i}.dcm", i)
    rle = pydicom.dcmread(tmp_path / "a1.dcm")
    rle.compress(RLELossless)
    rle.save_as(tmp_path / "a1.dcm")
    assert [c.case_id for c in discover(tmp_path, 1)] == ["a0", "a1"]
    _compressed(tmp_path / "b.dcm", HTJ2K)
    series = shared("dicom", "hippo_crop_series", "Study1")
    (tmp_path / "mr").mkdir()
    for src in sorted(series.glob("*.dcm"), key=lambda f: int(f.stem))[:2]:  # neighbouring slices
        _compressed_copy(src, tmp_path / "mr" / src.name)
    said = rf"transfer syntax {HTJ2K} \(HTJ2K\) in 2 input\(s\): .*b\.dcm, .*mr\. Fix: decompress"
    with pytest.raises(DatasetError, match=said):
        discover(tmp_path, 1)
    with pytest.raises(
        SystemExit, match=rf"cannot decode the pixels of .*b\.dcm, .*mr \(transfer syntax {HTJ2K}"
    ):
        find_cases(tmp_path, 1)


def _report(path: Path) -> Path:
    """An uncompressed structured report (no pixels) saved beside a series, as PACS exports do."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "SR", generate_uid(), generate_uid()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_a_compressed_series_is_told_by_its_images_not_by_a_report_filed_first(tmp_path: Path) -> None:
    """The up-front check sampled a folder's first DICOM file: an uncompressed report named ``0000_report.dcm``
    hid the series' compression, and the series stopped the batch at its turn."""
    from automed.runtime.inputs import find_cases

    xray_dicom(tmp_path / "a.dcm", 0)
    (tmp_path / "mr").mkdir()
    for src in sorted(
        shared("dicom", "hippo_crop_series", "Study1").glob("*.dcm"), key=lambda f: int(f.stem)
    )[:2]:
        _compressed_copy(src, tmp_path / "mr" / src.name)
    _report(tmp_path / "mr" / "0000_report.dcm")
    with pytest.raises(SystemExit, match=rf"cannot decode the pixels of .*mr \(transfer syntax {HTJ2K}"):
        find_cases(tmp_path, 1)
