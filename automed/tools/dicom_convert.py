"""DICOM -> NIfTI for every series of a folder tree (not the first one only).

Files are grouped by SeriesInstanceUID (in whatever folders they lie: exports split a series over folders), then
into volumes by echo, temporal position and orientation; each volume is sorted along the slice normal (the order
GDCM uses) and read by SimpleITK, a multi-frame file on its own. Each series is named by a key made of its modality,
series number and a digest of its UID - no patient or study text."""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from automed.errors import DatasetError, Problem
from automed.runtime.io import NOT_IMAGES, tilt_issue
from automed.runtime.io import read_series as read_slices
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
    # what tells apart the volumes of one series (echoes, temporal positions; a localizer's planes by the
    # orientation series.json gives each): rows otherwise alike but for the key
    echo: str = ""
    temporal_position: str = ""

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
            "echo": self.echo or None,
            "temporal_position": self.temporal_position or None,
            "orientation": [round(v, 4) + 0.0 for v in image.GetDirection()],
        }


def _key(modality: str, number: str, uid: str, taken: set[str]) -> str:
    num = f"{int(number):03d}" if number.lstrip("-").isdigit() else "000"
    # the Modality is a tag's text: never a path (../ or /) in a file name, whatever a file holds
    safe = re.sub(r"[^A-Z0-9]", "", modality.upper())[:16] or "OT"
    key = f"{safe}-{num}-{hashlib.sha256(uid.encode()).hexdigest()[:8]}"
    k, i = key, 2
    while k in taken:
        k, i = f"{key}-{i}", i + 1
    taken.add(k)
    return k


def _normal_position(ds: Any) -> float | None:
    iop, ipp = ds.get("ImageOrientationPatient"), ds.get("ImagePositionPatient")
    if iop is None or ipp is None or len(iop) != 6 or len(ipp) != 3:
        return None
    normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
    return float(np.dot(normal, np.asarray(ipp, float)))


def _tilt(files: list[tuple[Path, Any]]) -> tuple[str, str, str] | None:
    """:func:`automed.runtime.io.tilt_issue` of one volume's slices (each with a position and orientation)."""
    first = files[0][1]
    iop = np.asarray([float(v) for v in first.ImageOrientationPatient])
    axes = np.stack([iop[:3], iop[3:], np.cross(iop[:3], iop[3:])], axis=1)
    origins = np.asarray([[float(v) for v in ds.ImagePositionPatient] for _, ds in files])
    pixel = min(float(v) for v in first.get("PixelSpacing", None) or [1.0, 1.0])
    return tilt_issue(origins, axes, pixel)


def _orientation_key(iop: Any, seen: list[tuple[np.ndarray, str]]) -> str:
    """One key per orientation, within 1e-3 of the first met (rounding each to a text split values that differ by
    noise across a rounding boundary or in sign: -0.0001 and 0.0001 made two volumes of one series)."""
    v = np.asarray([float(x) for x in iop])
    for w, key in seen:
        if w.shape == v.shape and float(np.abs(w - v).max()) < 1e-3:
            return key
    key = ",".join(f"{x + 0.0:.3f}" for x in np.round(v, 3))
    seen.append((v, key))
    return key


def _volumes(
    members: list[tuple[Path, Any]], shown: str, problems: list[Problem]
) -> list[tuple[list[Path], str]]:
    """The single-frame files of one series split into volumes - one per echo, temporal position and orientation
    (a multi-echo or dynamic series, a three-plane localizer) - each sorted along the slice normal; two slices at
    one position in a volume are a problem (the volume would be wrong)."""
    subs: dict[tuple[str, str, str], list[tuple[Path, Any]]] = defaultdict(list)
    seen: list[tuple[np.ndarray, str]] = []  # orientations met, with the key of their volume
    for p, ds in members:
        iop = ds.get("ImageOrientationPatient")
        orient = _orientation_key(iop, seen) if iop is not None else ""
        subs[(str(ds.get("EchoNumbers", "")), str(ds.get("TemporalPositionIdentifier", "")), orient)].append(
            (p, ds)
        )
    out = []
    for i, (key, files) in enumerate(sorted(subs.items())):
        sizes = Counter(f"{ds.get('Columns', '?')} x {ds.get('Rows', '?')}" for _, ds in files)
        if len(sizes) > 1:  # ITK stops at the first odd slice with only its size to say
            problems.append(Problem(shown, "the slices of one volume share one size", ", ".join(
                f"{n} slice(s) of {size}" for size, n in sizes.most_common()) + f" in series "
                f"{files[0][1].get('SeriesNumber') or '?'}", "move the slices of the other size (a localizer, a "
                "scout) into a folder of their own"))  # fmt: skip
            continue
        pos = [_normal_position(ds) for _, ds in files]
        if all(v is not None for v in pos):
            order = np.argsort(np.asarray(pos, float), kind="stable")
            files = [files[j] for j in order]
            gaps = np.diff(np.sort(np.asarray(pos, float)))
            if len(gaps) and gaps.min() < 1e-3:
                problems.append(Problem(shown, "the slices of one volume lie at distinct "
                                        "positions", f"{int((gaps < 1e-3).sum())} repeated position(s) in series "
                                        f"{files[0][1].get('SeriesNumber') or '?'} (echo {key[0] or '-'}, temporal "
                                        f"position {key[1] or '-'})", "remove the duplicate files, or split the "
                                        "series into one folder per volume"))  # fmt: skip
            elif len(gaps) > 1 and gaps.max() - gaps.min() > max(0.05, 0.05 * float(np.median(gaps))):
                # a missing file: ITK would spread the remaining slices evenly and write a wrong volume
                problems.append(Problem(shown, "the slices of one volume are evenly "
                                        "spaced (no slice missing)", f"gaps from {gaps.min():.3f} to "
                                        f"{gaps.max():.3f} mm in series {files[0][1].get('SeriesNumber') or '?'} "
                                        f"(echo {key[0] or '-'}, temporal position {key[1] or '-'})",
                                        "add the missing slice files (check the transfer was complete)"))  # fmt: skip
            elif tilted := _tilt(files):
                rule, found, fix = tilted
                problems.append(Problem(shown, rule, f"{found} in series {files[0][1].get('SeriesNumber') or '?'}",
                                        fix))  # fmt: skip
        else:
            files = sorted(files, key=lambda f: int(f[1].get("InstanceNumber", 0) or 0))
        tag = f"e{key[0]}t{key[1]}o{i}" if len(subs) > 1 else ""
        out.append(([p for p, _ in files], tag))
    return out


def series_volume_problems(folder: Path, files: list[str]) -> list[Problem]:
    """What keeps the files of one series folder (in the order GDCM gives) from being read as one volume, from their
    headers: a missing slice (GDCM would spread the others evenly), two slices at one position, or several volumes
    in one series (echoes, temporal positions, orientations: they would be stacked into one). A multi-frame file is
    read as it is."""
    import pydicom

    members = []
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError):
            return []  # GDCM listed it, so it parses there: reading the series reports a broken file
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            return []
        members.append((Path(f), ds))
    problems: list[Problem] = []
    volumes = _volumes(members, str(folder), problems)
    if len(volumes) > 1:
        problems.append(Problem(str(folder), "a DICOM series folder holds one volume",
                                f"{len(volumes)} volumes in series {members[0][1].get('SeriesNumber') or '?'} (echoes, "
                                "temporal positions or orientations)", "split it with `automed convert` (one NIfTI "
                                "per volume) and predict those files"))  # fmt: skip
    return problems


def find_series(root: Path) -> tuple[list[Series], list[Problem]]:
    """Every series under ``root`` and every file that is not a usable DICOM image."""
    problems: list[Problem] = []
    groups: dict[str, list[tuple[Path, Any]]] = defaultdict(list)
    for path in input_files(root):
        if is_nifti(path):  # the input itself: nothing to convert
            fix = "it is NIfTI already: train or predict on it as it is" if path == root else "move it out"
            problems.append(
                Problem(relative(path, root), "the input holds DICOM files only", "a NIfTI file", fix)
            )
            continue
        ds, problem = read_image(path, relative(path, root))
        if ds is None:
            problems.append(problem)  # type: ignore[arg-type]
            continue
        if (kind := NOT_IMAGES.get(str(ds.get("SOPClassUID", "")), "")).endswith("Segmentation"):
            problems.append(Problem(relative(path, root), "convert reads DICOM images; a segmentation's frames are "
                                    "segments, not slices (GDCM stacks them on a wrong grid)", f"a DICOM {kind}",
                                    "move it out (highdicom reads it; automed predict writes its label map as NIfTI "
                                    "beside it)"))  # fmt: skip
            continue
        del ds.PixelData  # keep the headers only
        # by UID alone: a series an export split over folders (alternate or contiguous slices) had become two
        # volumes of half its slices at twice its spacing, without a word
        groups[str(ds.get("SeriesInstanceUID", ""))].append((path, ds))
    series: list[Series] = []
    taken: set[str] = set()
    placed = {uid: Path(os.path.commonpath([p.parent for p, _ in m])) for uid, m in groups.items()}
    for uid, members in sorted(groups.items(), key=lambda kv: (str(placed[kv[0]]), kv[0])):
        folder, first = placed[uid], members[0][1]
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
        header = dict(members)
        for sub, extra in _volumes(members, relative(folder, root) or ".", problems):
            key = _key(common[0], common[2], uid + extra, taken)
            head = header[sub[0]]
            echo, when = (str(head.get(k, "") or "") for k in ("EchoNumbers", "TemporalPositionIdentifier"))
            series.append(Series(key, folder, uid, sub, *common, False, echo, when))
    return series, problems


def read_series(s: Series) -> sitk.Image:
    """The series as one image, slices in GDCM's order (a multi-frame file is read as it is); pixel data GDCM
    cannot decode (a transfer syntax it lacks, slices of other sizes) is a :class:`DatasetError` naming the series."""
    try:
        if s.multiframe or len(s.files) == 1:
            single: sitk.Image = sitk.ReadImage(str(s.files[0]))
            return single
        return read_slices([str(p) for p in s.files])  # sorted along the slice normal by _volumes
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise DatasetError.single(
            s.files[0].parent, "a series' pixel data must be decodable (SimpleITK/GDCM)",
            f"series {s.number or '?'} of {len(s.files)} file(s): {lines[-1] if lines else 'unreadable'}"[:300],
            "decompress it first (e.g. `gdcmconv --raw` or dcmtk's `dcmdjpeg`), or move the series out",
        ) from exc  # fmt: skip
