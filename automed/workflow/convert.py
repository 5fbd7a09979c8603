"""``automed convert DICOM_DIR -o OUT``: every DICOM series of a folder tree to NIfTI, with a JSON index.

Every file is judged first (non-DICOM, truncated, no pixel data: one list of problems and nothing written); the output
is built in a hidden sibling folder and renamed into place when complete; it never lies inside the input."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from automed.artifacts import atomic_directory, claim_output, inside, mark_output, write_json_atomic
from automed.errors import ConfigError, DatasetError
from automed.parallel import progress_bar
from automed.tools.dicom_convert import find_series, read_series
from automed.tools.dicom_files import linked_folders, skipped_files

log = logging.getLogger("automed")

INDEX = "series.json"


@dataclass
class ConvertResult:
    folder: Path
    series: list[dict[str, Any]]


def convert(
    input_path: str | Path, output: str | Path, *, overwrite: bool = False, show_progress: bool = True
) -> ConvertResult:
    src = Path(input_path).expanduser().resolve()
    dst = Path(output).expanduser().resolve()
    if not src.exists():
        raise ConfigError.single(src, "the input must exist", "missing", "pass a folder of DICOM files")
    if src.is_dir() and inside(dst, src):
        raise ConfigError.single(
            output,
            "the output must not lie inside the input",
            f"inside {src.name}",
            "choose a folder outside the input",
        )
    out = claim_output(dst, "convert", protected=[src], overwrite=overwrite)
    series, problems = find_series(src)
    if problems:
        raise DatasetError(problems, headline=f"nothing was written to {out}")
    if not series:
        raise DatasetError.single(src, "the input holds DICOM series", "none", "check the path")
    rows = []
    with atomic_directory(out) as tmp, progress_bar(disable=not show_progress) as bar:
        task = bar.add_task("convert", total=len(series))
        for s in series:
            image = read_series(s)
            name = f"{s.key}.nii.gz"
            sitk.WriteImage(image, str(tmp / name), useCompression=True)
            rows.append(s.index_row(image, name))
            bar.advance(task)
        write_json_atomic(tmp / INDEX, {"schema_version": 1, "series": rows})
        mark_output(tmp, "convert")
    if skipped := skipped_files(src):
        log.warning("%d hidden or DICOMDIR-like file(s) not read (not images): %s%s", len(skipped),
                    ", ".join(skipped[:5]), " ..." if len(skipped) > 5 else "")  # fmt: skip
    if links := linked_folders(src):
        log.warning("%d linked folder(s) not read (links are not followed): %s%s; copy them in, or convert each as "
                    "an input of its own", len(links), ", ".join(links[:5]), " ..." if len(links) > 5 else "")  # fmt: skip
    return ConvertResult(out, rows)
