"""A folder of single-file DICOM X-rays (one picture per file, each its own series) holds one case per file, as the
README's "one .dcm file such as an X-ray" promises. Both ``automed predict``'s input discovery and the torch-free
bundle's read such a folder as one DICOM series (the folder itself is the case): a folder of three radiographs is
refused as "a volume" or "3 series", and a PNG beside one .dcm is silently dropped by the bundle.

Known defect, not fixed here: the fix belongs in ``automed/infer/inputs.py::discover`` and
``automed/runtime/io.py::find_cases`` (outside this audit's files); the tests are strict xfails so that the fix
turns them into passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from automed.infer.inputs import discover
from automed.runtime.io import find_cases


def _xray(path: Path, seed: int) -> None:
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


@pytest.fixture
def xrays(tmp_path: Path) -> Path:
    for i in range(3):
        _xray(tmp_path / f"xr{i}.dcm", i)
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((20, 16), np.uint8)), str(tmp_path / "png0.png"))
    return tmp_path


@pytest.mark.xfail(strict=True, reason="infer/inputs.py reads a folder of DICOM X-rays as one series")
def test_predict_input_folder_of_dicom_xrays_is_one_case_per_file(xrays: Path) -> None:
    assert sorted(c.case_id for c in discover(xrays, 1)) == ["png0", "xr0", "xr1", "xr2"]


@pytest.mark.xfail(strict=True, reason="runtime/io.py reads a folder of DICOM X-rays as one series")
def test_bundle_input_folder_of_dicom_xrays_is_one_case_per_file(xrays: Path) -> None:
    assert sorted(c.case_id for c in find_cases(xrays, 1)) == ["png0", "xr0", "xr1", "xr2"]
