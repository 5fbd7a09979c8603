"""Parse a GaNDLF-style CSV (``SubjectID``, ``PatientID``, ``Channel_*``, ``Label``, ``ValueToPredict``) and its
column rules: which header names are accepted, what kind of column each is, and the modality a channel column
declares."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

from automed.data.paths import os_problem, resolve_listed
from automed.data.schema import Case, Dataset
from automed.errors import DatasetError, Problem
from automed.registry import did_you_mean

SUBJECT_COLUMNS = ("subjectid",)
GROUP_COLUMNS = ("patientid",)
CHANNEL_PREFIXES = ("channel_", "modality_", "image_")
INFO_PREFIX = "info_"  # information columns automed ignores (the patch miner's positions and fractions)
LABEL_COLUMNS = ("label", "mask", "segmentation")
VALUE_COLUMNS = ("valuetopredict",)
MIXED_VALUES_RULE = "ValueToPredict must be all numbers (regression or class indices) or all class names"
MAX_ROWS_REPORTED = 10
# words that often mean "no value" (verify warns when one is a class name: it may be a real class, e.g. ISIC's
# "unknown"); "nan" is not one: it parses as a number and verify refuses it as not finite
MISSING_MARKERS = frozenset({"na", "n/a", "none", "null", "missing", "unknown", "?", "-", "--", "#n/a"})
KNOWN_CSV_COLUMNS = (
    "SubjectID",
    "PatientID",
    "Channel_0",
    "Modality_0",
    "Image_0",
    "Label",
    "Mask",
    "Segmentation",
    "ValueToPredict",
)


def _column_kind(col: str) -> str | None:
    low = col.strip().lower()
    if low in SUBJECT_COLUMNS:
        return "subject"
    if low in GROUP_COLUMNS:
        return "group"
    if low in LABEL_COLUMNS:
        return "label"
    if low in VALUE_COLUMNS:
        return "value"
    if any(low.startswith(p) for p in CHANNEL_PREFIXES):
        return "channel"
    if low.startswith(INFO_PREFIX):
        return "info"
    return None


def _channel_name(col: str) -> str:
    """``Channel_CT`` declares the modality CT; ``Channel_0`` declares nothing."""
    low = col.lower()
    for p in CHANNEL_PREFIXES:
        if low.startswith(p):
            rest = col[len(p) :]
            return "" if rest.isdigit() else rest
    return ""


def read_rows(path: Path) -> list[list[str]]:
    """The CSV's rows; a UTF-8 byte-order mark (as Excel writes it) is dropped, not taken as part of the first
    column's name."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            return list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise DatasetError.single(
            path,
            "the CSV must be UTF-8 text",
            f"the byte {exc.object[exc.start : exc.start + 1]!r}, which is not UTF-8 (e.g. Latin-1 accents)",
            "save the file as 'CSV UTF-8' (or convert it, e.g. `iconv -f latin1 -t utf-8`)",
        ) from exc
    except OSError as exc:
        raise DatasetError([os_problem(path, exc, "CSV")]) from exc


def _other_delimiter(header: list[str]) -> str | None:
    """``;`` or tab when the header was written with that delimiter (column names never hold them)."""
    for d in (";", "\t"):
        if any(d in h for h in header):
            return d
    return None


def load_csv(path: Path) -> Dataset:
    """Parse a GaNDLF-style CSV (``SubjectID``, ``Channel_*``, ``Label``, ``ValueToPredict``).

    Without label maps, a classification dataset (class names, or at most 20 distinct integers: see
    :attr:`Dataset.task_type`) gets ``labels`` = class index to class name; see :func:`parse_targets`."""
    problems: list[Problem] = []
    rows = read_rows(path)
    if not rows:
        raise DatasetError.single(
            path,
            "the CSV must have a header row and one row per subject",
            "empty file",
            "write a header such as SubjectID,Channel_0,Label",
        )
    header = [h.strip() for h in rows[0]]
    delimiter = _other_delimiter(header)
    if delimiter:
        raise DatasetError.single(
            path,
            "CSV columns must be separated by commas",
            f"{delimiter!r} as the delimiter (header {','.join(rows[0])!r})",
            "save the file with commas between columns and decimal points in numbers (in a spreadsheet: 'CSV "
            f"(comma delimited)' with an English number format); replacing every {delimiter!r} by ',' is enough "
            "only when no number has a decimal comma (1,5 would become two cells)",
        )
    kinds = [_column_kind(h) for h in header]
    for h, k in zip(header, kinds, strict=True):
        if k is None:
            problems.append(
                Problem(
                    str(path),
                    "CSV columns must be SubjectID, PatientID, Channel_*/Modality_*/"
                    "Image_*, Label/Mask/Segmentation, ValueToPredict or Info_* (ignored)",
                    repr(h),
                    f"rename or remove the column.{hint}"
                    if (hint := did_you_mean(h, KNOWN_CSV_COLUMNS))
                    else f"rename it Info_{h} to keep it in the CSV (Info_* columns are ignored), or remove it",
                )
            )
    if "subject" not in kinds:
        problems.append(
            Problem(
                str(path),
                "the CSV needs a SubjectID column",
                f"columns {header}",
                "add SubjectID as the first column",
            )
        )
    chan_idx = [i for i, k in enumerate(kinds) if k == "channel"]
    if not chan_idx:
        problems.append(
            Problem(
                str(path),
                "the CSV needs at least one Channel_* column",
                f"columns {header}",
                "add Channel_0 with the image paths",
            )
        )
    if kinds.count("label") > 1 or kinds.count("value") > 1:
        problems.append(
            Problem(
                str(path),
                "the CSV may have one label column and one ValueToPredict column",
                f"columns {header}",
                "keep one of each",
            )
        )
    if problems:
        raise DatasetError(problems, f"cannot parse {path}")
    si = kinds.index("subject")
    gi = kinds.index("group") if "group" in kinds else None
    li = kinds.index("label") if "label" in kinds else None
    vi = kinds.index("value") if "value" in kinds else None
    base = path.parent
    cases: list[Case] = []
    cells: list[tuple[int, str]] = []  # (row number, ValueToPredict cell) of each case
    for n, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            problems.append(
                Problem(
                    f"{path}:{n}",
                    "every CSV row must have as many cells as the header",
                    f"{len(row)} cells, header has {len(header)}",
                    "fix the row",
                )
            )
            continue
        sid = row[si].strip()
        if not sid:
            problems.append(
                Problem(f"{path}:{n}", "SubjectID must not be empty", "''", "give every row an id")
            )
            continue
        label = resolve_listed(base, row[li].strip()) if li is not None and row[li].strip() else None
        empty = [header[i] for i in chan_idx if not row[i].strip()]
        if empty:
            problems.append(
                Problem(
                    f"{path}:{n}",
                    "every channel cell needs an image path",
                    f"empty {empty}",
                    "fill in the path or drop the row",
                )
            )
            continue
        images = tuple(resolve_listed(base, row[i].strip()) for i in chan_idx)
        group = row[gi].strip() if gi is not None and row[gi].strip() else None
        cases.append(Case(sid, images, label, None, group))
        cells.append((n, row[vi].strip() if vi is not None else ""))
    values, names, value_problems = parse_targets(path, cells)
    problems += value_problems
    if problems:
        raise DatasetError(problems, f"cannot parse {path}")
    cases = [replace(c, value=v) for c, v in zip(cases, values, strict=True)]
    channels = tuple(_channel_name(header[i]) for i in chan_idx)
    ds = Dataset(path.stem, path, "csv", channels, None, tuple(sorted(cases, key=lambda c: c.case_id)))
    if any(c.label is not None for c in cases):
        return ds  # segmentation: ``labels`` would declare label-map values; the targets stay plain numbers
    if names is not None:
        return replace(ds, labels=names)
    if ds.task_type == "classification":
        classes = sorted({int(v) for v in values if v is not None})
        return replace(ds, labels={v: str(v) for v in classes})
    return ds


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def parse_targets(
    path: Path, cells: list[tuple[int, str]]
) -> tuple[list[float | None], dict[int, str] | None, list[Problem]]:
    """The ``ValueToPredict`` cells (row number, stripped text; empty when missing) as targets.

    All numbers: the numbers themselves (class indices or regression targets), no class names. All text that does
    not parse as a number: class names; each becomes the index of its name among the sorted distinct names, and the
    names are returned as ``{index: name}``. A mix of both is a problem on each row of the rarer kind (text on a
    tie), at most :data:`MAX_ROWS_REPORTED` of them."""
    filled = [(n, c) for n, c in cells if c]
    numbers = {n: v for n, c in filled if (v := _number(c)) is not None}
    if numbers and len(numbers) < len(filled):
        odd_is_number = len(numbers) < len(filled) - len(numbers)
        odd = [(n, c) for n, c in filled if (n in numbers) == odd_is_number]
        most, want = ("class names", "a class name") if odd_is_number else ("numbers", "a number")
        tie = len(numbers) * 2 == len(filled)  # the text rows are reported, the numbers' kind asked for
        held = "as many rows hold numbers as class names" if tie else f"most rows hold {most}"
        fix = (
            f"{held}: write {want} here too (class names in every row, or numbers in every row: "
            "class indices or regression targets), or drop the row"
        )
        problems = [
            Problem(f"{path}:{n}", MIXED_VALUES_RULE, repr(c), fix) for n, c in odd[:MAX_ROWS_REPORTED]
        ]
        if len(odd) > MAX_ROWS_REPORTED:
            problems.append(
                Problem(
                    str(path), MIXED_VALUES_RULE, f"{len(odd) - MAX_ROWS_REPORTED} more rows like these", fix
                )
            )
        return [], None, problems
    if numbers or not filled:
        return [numbers.get(n) for n, _ in cells], None, []
    index = {name: i for i, name in enumerate(sorted({c for _, c in filled}))}
    values: list[float | None] = [float(index[c]) if c else None for _, c in cells]
    return values, {i: name for name, i in index.items()}, []
