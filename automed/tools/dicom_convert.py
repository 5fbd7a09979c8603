"""DICOM -> NIfTI for every series of a folder tree (not the first one only).

Files are grouped by (folder, SeriesInstanceUID); a series is read by SimpleITK in GDCM's slice order (positions
along the slice normal, so the geometry is the scanner's), a multi-frame file on its own. Each series is named by a
key made of its modality, series number and a digest of its UID - no patient or study text."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from automed.errors import Problem
from automed.tools.dicom_files import input_files, is_nifti, read_image, relative


@dataclass
class Series:
    key: str
    folder: Path
    uid: str
    files: list[Path]
    modality: str
    description: str
    number: str
    multiframe: bool

    def index_row(self, image: sitk.Image, file: str) -> dict[str, Any]:
        """What the index says of the series: no patient, study, date or UID text."""
        return {
            "key": self.key,
            "file": file,
            "modality": self.modality,
            "description": self.description,
            "series_number": self.number,
            "files": len(self.files),
            "multiframe": self.multiframe,
            "size": list(image.GetSize()),
            "spacing": [round(s, 6) for s in image.GetSpacing()],
            "pixel_type": image.GetPixelIDTypeAsString(),
        }


def _key(modality: str, number: str, uid: str, taken: set[str]) -> str:
    num = f"{int(number):03d}" if number.lstrip("-").isdigit() else "000"
    key = f"{modality or 'OT'}-{num}-{hashlib.sha256(uid.encode()).hexdigest()[:8]}"
    k, i = key, 2
    while k in taken:
        k, i = f"{key}-{i}", i + 1
    taken.add(k)
    return k


def find_series(root: Path) -> tuple[list[Series], list[Problem]]:
    """Every series under ``root`` and every file that is not a usable DICOM image."""
    problems: list[Problem] = []
    groups: dict[tuple[Path, str], list[tuple[Path, Any]]] = defaultdict(list)
    for path in input_files(root):
        if is_nifti(path):
            problems.append(
                Problem(
                    relative(path, root), "the input holds DICOM files only", "a NIfTI file", "move it out"
                )
            )
            continue
        ds, problem = read_image(path, relative(path, root))
        if ds is None:
            problems.append(problem)  # type: ignore[arg-type]
            continue
        del ds.PixelData  # keep the headers only
        groups[(path.parent, str(ds.get("SeriesInstanceUID", "")))].append((path, ds))
    series: list[Series] = []
    taken: set[str] = set()
    for (folder, uid), members in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        first = members[0][1]
        common = (
            str(first.get("Modality", "")),
            str(first.get("SeriesDescription", "")),
            str(first.get("SeriesNumber", "") or ""),
        )
        frames = [p for p, ds in members if int(ds.get("NumberOfFrames", 1) or 1) > 1]
        if frames:  # each multi-frame file is a volume of its own
            for p in frames:
                series.append(Series(_key(common[0], common[2], uid, taken), folder, uid, [p], *common, True))
            members = [(p, ds) for p, ds in members if p not in frames]
        if members:
            series.append(
                Series(
                    _key(common[0], common[2], uid, taken),
                    folder,
                    uid,
                    [p for p, _ in members],
                    *common,
                    False,
                )
            )
    return series, problems


def read_series(s: Series) -> sitk.Image:
    """The series as one image, slices in GDCM's order (a multi-frame file is read as it is)."""
    if s.multiframe or len(s.files) == 1:
        single: sitk.Image = sitk.ReadImage(str(s.files[0]))
        return single
    names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(s.folder), s.uid)
    wanted = {str(p) for p in s.files}
    ordered = [n for n in names if n in wanted] or sorted(wanted)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(ordered)
    image: sitk.Image = reader.Execute()
    return image
