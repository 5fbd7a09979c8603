"""Finding whole slides in ``automed predict``'s input asked OpenSlide about every ``.dcm`` file (about a millisecond
a file cold): an input of CT or MR series, thousands of slices, paid that on every predict before discovery walked
it again. OpenSlide opens a DICOM file only when its meta header's Media Storage SOP Class is VL Whole Slide
Microscopy Image Storage: that is read from the file's first bytes now, and OpenSlide asked about those files alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from automed.workflow.predict_slide_inputs import found_slides
from automed.wsi.slide import VL_WSI, may_be_slide

CT = "1.2.840.10008.5.1.4.1.1.2"


def _dcm(path: Path, sop_class: str, series: str) -> Path:
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SeriesInstanceUID, ds.SOPInstanceUID = series, generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if sop_class == CT:
        ds.Rows = ds.Columns = 4
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 15, 1, 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = np.zeros((4, 4), np.int16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files OpenSlide is asked about (its answers unchanged)."""
    seen: list[str] = []
    detect = openslide.OpenSlide.detect_format

    def recorded(filename: str) -> str | None:
        seen.append(Path(filename).name)
        return detect(filename)

    monkeypatch.setattr(openslide.OpenSlide, "detect_format", staticmethod(recorded))
    return seen


def test_openslide_is_asked_only_about_whole_slide_dicom_files(tmp_path: Path, asked: list[str]) -> None:
    ct = [_dcm(tmp_path / "patient" / "ct" / f"slice{i}.dcm", CT, "1.2.3") for i in range(3)]
    (tmp_path / "patient" / "ct" / "notes.dcm").write_bytes(b"not DICOM at all")
    assert found_slides(tmp_path) is None  # CT slices: predicted as a series, not as slides
    assert asked == []
    assert [openslide.OpenSlide.detect_format(str(p)) for p in ct] == [None, None, None]  # OpenSlide agrees
    wsi = _dcm(tmp_path / "slide" / "level0.dcm", VL_WSI, "4.5.6")
    asked.clear()
    found = found_slides(tmp_path)
    assert found == ([wsi], ["slide"]) and asked == ["level0.dcm"]


def test_only_dicom_files_are_judged_by_their_sop_class(tmp_path: Path) -> None:
    wsi = _dcm(tmp_path / "a.dcm", VL_WSI, "1")
    assert may_be_slide(wsi) and openslide.OpenSlide.detect_format(str(wsi)) == "dicom"
    assert not may_be_slide(_dcm(tmp_path / "b.DCM", CT, "1"))
    assert may_be_slide(tmp_path / "s.svs")  # other formats: OpenSlide decides, as before
    # a whole-slide DICOM without its 128-byte preamble (or its DICM prefix too) is no slide to OpenSlide either
    for cut in (128, 132):
        bare = tmp_path / f"cut{cut}.dcm"
        bare.write_bytes(wsi.read_bytes()[cut:])
        assert not may_be_slide(bare) and openslide.OpenSlide.detect_format(str(bare)) is None
