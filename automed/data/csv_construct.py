"""Build a GaNDLF-style CSV from a folder of subject folders (``automed construct-csv``)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

from automed.artifacts import write_bytes_atomic
from automed.errors import DatasetError, Problem


def construct_csv(
    root: str | Path,
    channels: list[str],
    label: str | None,
    output: str | Path,
    *,
    relative: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write a GaNDLF-style CSV for a ``ROOT/<subject>/<files>`` tree.

    Args:
        root: folder holding one sub-folder per subject.
        channels: file-name endings identifying each channel, e.g. ``["_t1.nii.gz", "_t2.nii.gz"]``.
        label: file-name ending of the label map, or ``None``.
        output: CSV path to write.
        relative: write paths relative to the CSV's folder (portable) instead of absolute.
        overwrite: replace an existing file at ``output`` (never without it: it may be a hand-edited CSV).

    Every subject must have exactly one file per ending; all problems are reported together.
    """
    rootp = Path(root).expanduser().resolve()
    out = Path(output).expanduser().resolve()
    if out.suffix.lower() != ".csv" or out.is_dir():
        raise DatasetError.single(
            out,
            "construct-csv writes a .csv file",
            "a folder" if out.is_dir() else out.name,
            "pass -o NAME.csv",
        )
    if out.exists() and not overwrite:
        raise DatasetError.single(
            out,
            "construct-csv never replaces an existing file",
            "the file exists",
            "choose a new file name, or pass --overwrite to replace it",
        )
    if not rootp.is_dir():
        raise DatasetError.single(
            rootp,
            "construct-csv needs a folder of subject folders",
            "not a folder",
            "pass the folder that holds one sub-folder per subject",
        )
    channels = [c.strip() for c in channels if c.strip()]
    label = label.strip() if label and label.strip() else None
    if not channels:
        raise DatasetError.single(
            "--channels",
            "construct-csv needs at least one channel ending",
            "none",
            "pass e.g. --channels _t1.nii.gz",
        )
    endings = list(channels) + ([label] if label else [])
    if twice := sorted(
        {e for e in endings if endings.count(e) > 1}
    ):  # (each subject's file would match both)
        raise DatasetError.single(
            "--channels/--label", "each ending names one channel or the label", f"{twice} given twice",
            "give each channel's and the label's own ending once",
        )  # fmt: skip
    problems: list[Problem] = []
    rows: list[list[str]] = []
    # hidden folders and files (.ipynb_checkpoints, .DS_Store) are no subjects or images
    subjects = sorted(d for d in rootp.iterdir() if d.is_dir() and not d.name.startswith("."))
    for subj in subjects:
        files = sorted(f for f in subj.iterdir() if f.is_file() and not f.name.startswith("."))
        matched = {end: [f for f in files if f.name.endswith(end)] for end in endings}
        counts = Counter(f.name for end in endings for f in matched[end])  # one ending twice counts twice
        shared = {name for name, n in counts.items() if n > 1}
        if shared:  # e.g. a label ending that a channel ending also matches: the label would become an input
            problems.append(
                Problem(
                    str(subj),
                    "each file is one channel or the label, never two of them",
                    f"{sorted(shared)} match more than one of {endings}",
                    "make the endings specific (e.g. _t1.nii.gz and _seg.nii.gz)",
                )
            )
            continue
        row = [subj.name]
        for end in endings:
            hits = matched[end]
            if len(hits) != 1:
                problems.append(
                    Problem(
                        str(subj),
                        f"each subject needs exactly one file ending in '{end}'",
                        f"{len(hits)} files: {[h.name for h in hits]}",
                        "rename the files or refine the ending",
                    )
                )
                continue
            row.append(
                str(hits[0].relative_to(out.parent))
                if relative and _is_under(hits[0], out.parent)
                else str(hits[0])
            )
        rows.append(row)
    if not subjects:  # (not "no rows": subjects whose files were refused above had been reported as none)
        problems.append(
            Problem(
                str(rootp),
                "construct-csv needs at least one subject folder",
                "none",
                "put each subject's files in its own sub-folder",
            )
        )
    if problems:
        raise DatasetError(problems, "cannot construct the CSV")
    header = ["SubjectID"] + [f"Channel_{i}" for i in range(len(channels))] + (["Label"] if label else [])
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out, buf.getvalue().encode("utf-8"))  # a kill leaves the earlier file whole
    return out


def _is_under(p: Path, base: Path) -> bool:
    try:
        p.relative_to(base)
    except ValueError:
        return False
    return True
