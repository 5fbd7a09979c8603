"""DICOM Segmentation (highdicom) of a predicted label map on a DICOM series, and its reading back.

The label map must be on the series' own grid, slices in the order SimpleITK read them (GDCM's order, the one
:func:`automed.data.io.dicom_series_files` gives). Each foreground label becomes one binary segment, numbered 1..N
in label order and named from the model's labels (dataset.json); empty frames are left out, as highdicom does by
default. The object references every source image, so a viewer or PACS shows it over the series."""

from __future__ import annotations

import warnings
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

from automed._version import __version__
from automed.errors import Problem

SEG_SERIES_NUMBER = 9901


def _segments(labels: dict[int, str]) -> list[hd.seg.SegmentDescription]:
    algorithm = hd.AlgorithmIdentificationSequence(
        name="automed", version=__version__, family=codes.cid7162.ArtificialIntelligence
    )
    return [
        hd.seg.SegmentDescription(
            segment_number=i,
            segment_label=name[:64],
            segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=codes.SCT.AnatomicalStructure,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_id=f"label {value}: {name}"[:64],
            tracking_uid=hd.UID(),
        )
        for i, (value, name) in enumerate(sorted(labels.items()), start=1)
    ]


# type 2 patient/study attributes a SEG copies from its source; some exports leave them out (empty is valid)
TYPE2_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


def _source(path: str) -> pydicom.Dataset:
    ds = pydicom.dcmread(path)
    for kw in TYPE2_PATIENT_STUDY:
        if kw not in ds:
            setattr(ds, kw, "")
    return ds


SEG_NEEDS = ("Rows", "Columns", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")


def series_problems(folder: Path, source_files: list[str]) -> list[Problem]:
    """What keeps a series from getting a SEG over it, from its headers (before any prediction): multi-frame files
    (one file, many slices: the slices of the label map would not match the files), attributes highdicom needs,
    slices of different sizes."""
    out = []
    sizes = set()
    for f in source_files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        lacks = [kw for kw in SEG_NEEDS if kw not in ds]
        if int(ds.get("NumberOfFrames", 1) or 1) > 1 or lacks:
            out.append(Problem(f, "--output-format dicom-seg needs single-frame image slices with their geometry",
                               f"{ds.get('NumberOfFrames')} frames" if not lacks else f"no {', '.join(lacks)}",
                               "use --output-format nifti for this series"))  # fmt: skip
            break
        sizes.add((int(ds.Rows), int(ds.Columns)))
    if len(sizes) > 1:
        out.append(Problem(str(folder), "a series' slices share one size", str(sorted(sizes)),
                           "use --output-format nifti for this series"))  # fmt: skip
    return out


def write_seg(label_map: np.ndarray, source_files: list[str], labels: dict[int, str], out: Path) -> Path:
    """Write ``label_map`` (slices x rows x columns, values = label values) as a DICOM SEG over ``source_files``."""
    foreground = {v: n for v, n in labels.items() if v != 0}
    sources = [_source(f) for f in source_files]
    if label_map.shape != (len(sources), int(sources[0].Rows), int(sources[0].Columns)):
        raise ValueError(f"label map {label_map.shape} does not match the series ({len(sources)} slices)")
    # segment numbers 1..N whatever the label values are (1, 2, 4 -> 1, 2, 3)
    lut = np.zeros(int(max([*foreground, 0])) + 1, dtype=np.uint16)
    for i, value in enumerate(sorted(foreground), start=1):
        lut[value] = i
    unknown = set(np.unique(label_map).tolist()) - {0, *foreground}
    if unknown:
        raise ValueError(f"label values {sorted(unknown)} are not among the model's labels")
    with warnings.catch_warnings():  # highdicom's advice on person-name formatting of the source's names
        warnings.filterwarnings("ignore", message=".*person name.*", category=UserWarning)
        seg = _segmentation(sources, lut[label_map.astype(np.int64)], foreground)
    seg.save_as(out)
    return out


def _segmentation(
    sources: list[pydicom.Dataset], pixels: np.ndarray, labels: dict[int, str]
) -> hd.seg.Segmentation:
    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=_segments(labels),
        series_instance_uid=hd.UID(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="automed",
        manufacturer_model_name="automed",
        software_versions=__version__,
        device_serial_number="none",
        series_description="automed segmentation",
        content_label="AUTOMED",
    )
