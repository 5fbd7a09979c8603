"""A folder of single-file DICOM X-rays (one picture per file, each its own series) holds one case per file, as the
README's "one .dcm file such as an X-ray" promises, in ``automed predict``'s input discovery and in the torch-free
bundle alike (both read it as one series before: three radiographs were refused as "a volume" or "3 series", and a
PNG beside one .dcm was dropped by the bundle). A folder holding one multi-file series stays one case, unless the
model takes pictures (then one case per file); images beside such a series are refused, not dropped."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from automed.errors import DatasetError
from automed.infer.inputs import discover
from automed.runtime.inputs import find_cases
from tests.conftest import shared, two_series_folder


def xray_dicom(path: Path, seed: int) -> None:
    arr = np.random.default_rng(seed).integers(0, 4095, size=(20, 16), dtype=np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID = "DX", "anon"
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.2, 0.2]
    ds.PixelData = arr.tobytes()
    pydicom.dcmwrite(str(path), ds, enforce_file_format=True)


def _report(path: Path) -> None:
    """A Basic Text SR: DICOM without pixels, as a reporting system saves beside the images."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    report = Dataset()
    report.file_meta = meta
    report.SOPClassUID, report.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    report.StudyInstanceUID, report.SeriesInstanceUID, report.Modality = generate_uid(), generate_uid(), "SR"
    pydicom.dcmwrite(str(path), report, enforce_file_format=True)


@pytest.fixture
def xrays(tmp_path: Path) -> Path:
    for i in range(3):
        xray_dicom(tmp_path / f"xr{i}.dcm", i)
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((20, 16), np.uint8)), str(tmp_path / "png0.png"))
    return tmp_path


def test_predict_input_folder_of_dicom_xrays_is_one_case_per_file(xrays: Path) -> None:
    assert sorted(c.case_id for c in discover(xrays, 1)) == ["png0", "xr0", "xr1", "xr2"]


def test_bundle_input_folder_of_dicom_xrays_is_one_case_per_file(xrays: Path) -> None:
    assert sorted(c.case_id for c in find_cases(xrays, 1)) == ["png0", "xr0", "xr1", "xr2"]


def test_a_series_folder_is_one_case_unless_the_model_takes_pictures() -> None:
    series = shared("dicom", "hippo_crop_series", "Study1")
    slices = sorted(p.stem for p in series.glob("*.dcm"))
    assert len(slices) > 1
    assert [c.case_id for c in discover(series, 1)] == ["Study1"]
    assert [c.case_id for c in find_cases(series, 1)] == ["Study1"]
    assert [c.case_id for c in discover(series, 1, dimension=3)] == ["Study1"]
    assert sorted(c.case_id for c in discover(series, 1, dimension=2)) == slices
    assert sorted(c.case_id for c in find_cases(series, 1, dimension=2)) == slices


def test_an_image_beside_a_series_is_refused_not_dropped(tmp_path: Path) -> None:
    folder = tmp_path / "series"
    shutil.copytree(shared("dicom", "hippo_crop_series", "Study1"), folder)
    xray_dicom(folder / "xr0.dcm", 0)
    with pytest.raises(DatasetError, match=r"must hold only that series.*also xr0\.dcm"):
        discover(folder, 1)
    with pytest.raises(SystemExit, match=r"also holds xr0\.dcm; move those into another folder"):
        find_cases(folder, 1)


def test_several_series_in_one_folder_stay_a_clear_error(tmp_path: Path) -> None:
    mixed = two_series_folder(tmp_path / "mixed")
    with pytest.raises(DatasetError, match=r"exactly one DICOM series"):
        discover(mixed, 1)


def test_predict_and_export_pass_the_image_level_models_dimension() -> None:
    from types import SimpleNamespace

    from automed.infer.inputs import takes_dimension

    image_level = SimpleNamespace(target=object(), plan=SimpleNamespace(image_dimension=2))
    assert takes_dimension(image_level) == 2
    assert takes_dimension(SimpleNamespace(plan=SimpleNamespace(n_channels=1))) is None  # segmentation


@pytest.mark.parametrize("n", [1, 3])
def test_dicom_files_without_a_suffix_are_a_case_each(tmp_path: Path, n: int) -> None:
    """PACS exports often name files IM0000 or by UID, with no suffix: one such X-ray in a folder was read as the
    folder's series before single-file series became a case per file, and then none was read at all."""
    from automed.infer.inputs import discover
    from automed.runtime.inputs import find_cases

    names = ["IM0000", "1.2.840.99.1", "IM0002"][:n]
    for i, name in enumerate(names):
        xray_dicom(tmp_path / name, i)
    assert sorted(c.case_id for c in discover(tmp_path, 1)) == sorted(names)
    assert sorted(c.case_id for c in find_cases(tmp_path, 1)) == sorted(names)


def test_a_sub_folder_of_xrays_is_one_case_per_file(tmp_path: Path) -> None:
    """IN/ward3/*.dcm, each file its own series, was read as one series folder and refused ("exactly one DICOM
    series; found 3") by predict, and by the bundle once read; the top level already gave a case per file. IDs carry
    the sub-folder's name, so two wards' IM0001 do not write one prediction."""
    for ward, suffix in (("ward3", ".dcm"), ("ward4", "")):  # PACS exports often name files without a suffix
        (tmp_path / ward).mkdir()
        for i in range(2):
            xray_dicom(tmp_path / ward / f"IM000{i}{suffix}", i)
    shutil.copytree(shared("dicom", "hippo_crop_series", "Study1"), tmp_path / "mr")
    want = ["mr", "ward3_IM0000", "ward3_IM0001", "ward4_IM0000", "ward4_IM0001"]
    found = discover(tmp_path, 1)
    assert [c.case_id for c in found] == want
    assert [c.images for c in found][1:3] == [
        (tmp_path / "ward3" / "IM0000.dcm",),
        (tmp_path / "ward3" / "IM0001.dcm",),
    ]
    assert [c.case_id for c in find_cases(tmp_path, 1)] == want


def test_a_suffix_less_series_gives_its_slices_to_a_model_on_pictures(tmp_path: Path) -> None:
    """A model on pictures takes each file of a .dcm series folder as a case; the same series with files named
    IM0001 (no suffix) gave no case at all: 'no images' alone, and dropped unseen beside a PNG."""
    for f in shared("dicom", "hippo_crop_series", "Study1").glob("*.dcm"):
        shutil.copy(f, tmp_path / f"IM{int(f.stem):04d}")
    slices = sorted(p.name for p in tmp_path.iterdir())
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((20, 16), np.uint8)), str(tmp_path / "png0.png"))
    assert [c.case_id for c in discover(tmp_path, 1, dimension=2)] == [*slices, "png0"]
    assert [c.case_id for c in find_cases(tmp_path, 1, dimension=2)] == [*slices, "png0"]


def test_an_image_beside_a_series_in_a_sub_folder_is_refused_not_dropped(tmp_path: Path) -> None:
    """The input folder itself refused a PNG or an X-ray beside its series; the same in a sub-folder was dropped
    unseen, the sub-folder read as its series alone."""
    folder = tmp_path / "in" / "mr"
    shutil.copytree(shared("dicom", "hippo_crop_series", "Study1"), folder)
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((20, 16), np.uint8)), str(folder / "scout.png"))
    with pytest.raises(
        DatasetError, match=r"mr: a DICOM series folder .* must hold only that series.*also scout\.png"
    ):
        discover(tmp_path / "in", 1)
    with pytest.raises(SystemExit, match=r"mr: a DICOM series folder .* also holds scout\.png; move those"):
        find_cases(tmp_path / "in", 1)


def test_each_series_sub_folder_is_scanned_twice_at_most(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GDCM's folder scan is the slow part of discovery (seconds for a PACS export): one to tell a sub-folder's
    kind and strays (cached), one to read its series' slice order. With more sub-folders than the cache holds, a
    discovery that asked all folders their kind first scanned each a third time."""
    for i in range(10):
        shutil.copytree(shared("dicom", "hippo_crop_series", "Study1"), tmp_path / f"s{i}")
    scans = []
    scan = sitk.ImageSeriesReader.GetGDCMSeriesIDs
    monkeypatch.setattr(sitk.ImageSeriesReader, "GetGDCMSeriesIDs", lambda *a: scans.append(a) or scan(*a))
    assert len(discover(tmp_path, 1)) == 10
    assert len(scans) <= 1 + 2 * 10


def test_one_suffix_less_dicom_file_given_alone_keeps_its_whole_name(tmp_path: Path) -> None:
    """Given alone, a DICOM file named by its UID was cut at its last dot by predict (1.2.840.99.nii.gz, while the
    same file in a folder wrote 1.2.840.99.1.nii.gz), and refused by the bundle as 'not an image file'."""
    xray_dicom(tmp_path / "1.2.840.99.1", 0)
    assert [c.case_id for c in discover(tmp_path / "1.2.840.99.1", 1)] == ["1.2.840.99.1"]
    assert [c.case_id for c in find_cases(tmp_path / "1.2.840.99.1", 1)] == ["1.2.840.99.1"]
    (tmp_path / "notes").write_text("not an image " * 20)
    with pytest.raises(
        SystemExit, match=r"notes: not an image file \(expected one of .*\.dcm, \.ima, \.dicom, or DICOM\)"
    ):
        find_cases(tmp_path / "notes", 1)


def test_a_report_saved_beside_a_series_is_named_not_a_stray(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A structured report (DICOM without pixels) saved as report.dcm into a series folder refused the whole series
    as holding another image; it is no image: the series is read and the report named as not read."""
    folder = tmp_path / "series"
    shutil.copytree(shared("dicom", "hippo_crop_series", "Study1"), folder)
    _report(folder / "report.dcm")
    assert [c.case_id for c in discover(folder, 1)] == ["series"]
    assert [c.case_id for c in find_cases(folder, 1)] == ["series"]
    assert "1 not read: report.dcm" in capsys.readouterr().err


def test_a_report_beside_xrays_is_named_not_a_refused_image(
    xrays: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """report.dcm (DICOM without pixels) beside X-rays refused the whole folder in predict ('images must be readable
    ... replace the corrupt file') and failed the bundle's run when read; it is named as not read, like the same
    report saved without a suffix."""
    import logging

    _report(xrays / "report.dcm")
    with caplog.at_level(logging.WARNING, logger="automed"):
        assert [c.case_id for c in discover(xrays, 1)] == ["png0", "xr0", "xr1", "xr2"]
    assert any("1 not read: report.dcm" in r.getMessage() for r in caplog.records)
    assert [c.case_id for c in find_cases(xrays, 1)] == ["png0", "xr0", "xr1", "xr2"]
    assert "1 not read: report.dcm" in capsys.readouterr().err
    (xrays / "broken.dcm").write_bytes(b"not DICOM at all")  # no DICOM preamble: still refused as unreadable
    with pytest.raises(DatasetError, match=r"broken\.dcm: images must be readable"):
        discover(xrays, 1)
