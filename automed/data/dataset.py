"""One :class:`Dataset` model for every supported layout: MSD, nnU-Net v2 raw and GaNDLF-style CSV.

Loading only parses the description (``dataset.json`` or the CSV); it never opens an image. Whether the files exist
and agree with each other is :func:`automed.data.verify.verify`'s job.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from automed.errors import DatasetError, Problem
from automed.registry import did_you_mean

Layout = Literal["msd", "nnunetv2", "csv"]
TaskType = Literal["segmentation", "classification", "regression"]

SUBJECT_COLUMNS = ("subjectid",)
GROUP_COLUMNS = ("patientid",)
CHANNEL_PREFIXES = ("channel_", "modality_", "image_")
LABEL_COLUMNS = ("label", "mask", "segmentation")
VALUE_COLUMNS = ("valuetopredict",)
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


@dataclass(frozen=True)
class Case:
    """One training case: its channel images (one path each, or one 4D file), optional label and target."""

    case_id: str
    images: tuple[Path, ...]
    label: Path | None = None
    value: float | None = None
    group: str | None = None

    @property
    def subject(self) -> str:
        """The grouping key for splits (a patient may own several cases)."""
        return self.group if self.group is not None else self.case_id


@dataclass(frozen=True)
class Dataset:
    """A parsed dataset description.

    Attributes:
        name: dataset name (from ``dataset.json`` or the CSV file name).
        source: the ``dataset.json`` or CSV this was read from; error messages point here.
        layout: ``msd``, ``nnunetv2`` or ``csv``.
        channels: one modality name per channel ("CT", "MRI", "T2", ...); empty when undeclared.
        labels: declared label values and names (background included), or ``None`` when undeclared.
        cases: the training cases, sorted by id.
        images_are_4d: MSD ``tensorImageSize: 4D``: each case has one 4D file holding all channels.
    """

    name: str
    source: Path
    layout: Layout
    channels: tuple[str, ...]
    labels: dict[int, str] | None
    cases: tuple[Case, ...]
    images_are_4d: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def task_type(self) -> TaskType:
        if any(c.label is not None for c in self.cases):
            return "segmentation"
        values = [c.value for c in self.cases if c.value is not None]
        if values and all(float(v).is_integer() for v in values) and len(set(values)) <= 20:
            return "classification"
        if values:
            return "regression"
        return "segmentation"

    @property
    def n_channels(self) -> int:
        return len(self.channels)


def load_dataset(path: str | Path) -> Dataset:
    """Parse a dataset folder (holding ``dataset.json``), a ``dataset.json`` file or a CSV file."""
    p = Path(path).expanduser().resolve()
    if p.is_dir():
        dj = p / "dataset.json"
        if not dj.is_file():
            csvs = sorted(p.glob("*.csv"))
            hint = (
                f" or pass the CSV ({csvs[0].name})"
                if csvs
                else " or build a CSV with `automed construct-csv`"
            )
            raise DatasetError.single(
                p,
                "a dataset folder must contain dataset.json",
                "no dataset.json",
                f"add one (MSD or nnU-Net v2){hint}",
            )
        return _load_dataset_json(dj)
    if not p.exists():
        raise DatasetError.single(p, "the dataset path must exist", "missing", "check the path")
    if p.suffix.lower() == ".csv":
        return load_csv(p)
    if p.suffix.lower() == ".json":
        return _load_dataset_json(p)
    raise DatasetError.single(
        p,
        "a dataset is a folder with dataset.json, a dataset.json or a .csv",
        p.suffix or "no suffix",
        "pass one of those",
    )


def _load_dataset_json(path: Path) -> Dataset:
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError.single(
            path, "dataset.json must be valid JSON", f"{exc.msg} at line {exc.lineno}", "fix the JSON syntax"
        ) from exc
    if not isinstance(meta, dict):
        raise DatasetError.single(
            path, "dataset.json must hold an object", type(meta).__name__, "see the MSD format"
        )
    if "channel_names" in meta:
        return _load_nnunet(path, meta)
    if "modality" in meta or "training" in meta:
        return _load_msd(path, meta)
    raise DatasetError.single(
        path,
        "dataset.json must follow MSD (keys 'modality', 'labels', 'training') or nnU-Net v2 "
        "(keys 'channel_names', 'labels', 'file_ending')",
        f"keys {sorted(meta)}",
        "add the missing keys",
    )


def _indexed_names(path: Path, value: Any, key: str, problems: list[Problem]) -> tuple[str, ...]:
    if not isinstance(value, dict) or not value:
        problems.append(
            Problem(
                str(path),
                f"'{key}' must be a non-empty object {{\"0\": name}}",
                repr(value),
                f'declare one entry per channel, e.g. "{key}": {{"0": "MRI"}}',
            )
        )
        return ()
    try:
        items = sorted((int(k), str(v)) for k, v in value.items())
    except ValueError:
        problems.append(
            Problem(
                str(path),
                f"'{key}' keys must be channel indices 0..n-1",
                repr(sorted(value)),
                'use "0", "1", ...',
            )
        )
        return ()
    if [i for i, _ in items] != list(range(len(items))):
        problems.append(
            Problem(
                str(path),
                f"'{key}' keys must be 0..n-1 without gaps",
                repr([i for i, _ in items]),
                "renumber the channels",
            )
        )
    return tuple(v for _, v in items)


def _labels_msd(path: Path, value: Any, problems: list[Problem]) -> dict[int, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.append(
            Problem(str(path), "'labels' must be an object", repr(value), 'use {"0": "background"}')
        )
        return None
    out: dict[int, str] = {}
    for k, v in value.items():
        try:
            out[int(k)] = str(v)
        except ValueError:
            problems.append(
                Problem(
                    str(path),
                    "MSD 'labels' keys must be integer values",
                    repr(k),
                    'write labels as {"0": "background", "1": "name"}',
                )
            )
    return out


def _labels_nnunet(path: Path, value: Any, problems: list[Problem]) -> dict[int, str] | None:
    if not isinstance(value, dict):
        problems.append(
            Problem(str(path), "'labels' must be an object", repr(value), 'use {"background": 0, "name": 1}')
        )
        return None
    out: dict[int, str] = {}
    for name, v in value.items():
        if isinstance(v, list):
            problems.append(
                Problem(
                    str(path),
                    "region labels (lists of values) are not supported yet",
                    f"{name}: {v}",
                    "declare one integer value per label",
                )
            )
        elif isinstance(v, int) and not isinstance(v, bool):
            out[v] = str(name)
        else:
            problems.append(
                Problem(
                    str(path),
                    "nnU-Net 'labels' values must be integers",
                    f"{name}: {v!r}",
                    'write labels as {"background": 0, "name": 1}',
                )
            )
    return out


def _resolve(base: Path, rel: str) -> Path:
    p = Path(rel)
    return p if p.is_absolute() else (base / p).resolve()


def _case_id_from_file(name: str) -> str:
    for suf in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".tif", ".tiff"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


def _load_msd(path: Path, meta: dict[str, Any]) -> Dataset:
    problems: list[Problem] = []
    channels = _indexed_names(path, meta.get("modality"), "modality", problems)
    labels = _labels_msd(path, meta.get("labels"), problems)
    tis = str(meta.get("tensorImageSize", "3D")).upper()
    images_4d = tis == "4D"
    training = meta.get("training")
    cases: list[Case] = []
    if not isinstance(training, list):
        problems.append(
            Problem(
                str(path),
                "'training' must be a list of {image, label} entries",
                repr(training),
                "list the training cases",
            )
        )
        training = []
    for i, entry in enumerate(training):
        if not isinstance(entry, dict) or "image" not in entry:
            problems.append(
                Problem(
                    str(path),
                    "each 'training' entry needs an 'image' key",
                    f"entry {i}: {entry!r}",
                    'add "image": "./imagesTr/<case>.nii.gz"',
                )
            )
            continue
        img = _resolve(path.parent, str(entry["image"]))
        lab = _resolve(path.parent, str(entry["label"])) if entry.get("label") else None
        cases.append(Case(_case_id_from_file(img.name), (img,), lab))
    if problems:
        raise DatasetError(problems, f"cannot parse {path}")
    return Dataset(
        str(meta.get("name", path.parent.name)),
        path,
        "msd",
        channels,
        labels,
        tuple(sorted(cases, key=lambda c: c.case_id)),
        images_are_4d=images_4d,
    )


def _load_nnunet(path: Path, meta: dict[str, Any]) -> Dataset:
    problems: list[Problem] = []
    channels = _indexed_names(path, meta.get("channel_names"), "channel_names", problems)
    labels = _labels_nnunet(path, meta.get("labels"), problems)
    ending = meta.get("file_ending")
    if not isinstance(ending, str) or not ending.startswith("."):
        problems.append(
            Problem(
                str(path),
                "'file_ending' must be a suffix such as \".nii.gz\"",
                repr(ending),
                'add "file_ending": ".nii.gz"',
            )
        )
        ending = ".nii.gz"
    if problems:
        raise DatasetError(problems, f"cannot parse {path}")
    root = path.parent
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    pat = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})" + re.escape(ending) + "$")
    found = [(m["case"], int(m["ch"]), f) for f in images_dir.glob(f"*{ending}") if (m := pat.match(f.name))]
    ids = sorted({cid for cid, _, _ in found})
    unexpected = [
        (str(f), f"channel {ch} is not declared in channel_names ({len(channels)} channel(s))")
        for _, ch, f in found
        if ch >= len(channels)
    ]
    if labels_dir.is_dir():
        unexpected += [
            (str(f), "a label without images in imagesTr")
            for f in sorted(labels_dir.glob(f"*{ending}"))
            if f.name[: -len(ending)] not in ids
        ]
    cases = []
    for cid in ids:
        imgs = tuple(images_dir / f"{cid}_{c:04d}{ending}" for c in range(len(channels)))
        lab = labels_dir / f"{cid}{ending}"
        cases.append(Case(cid, imgs, lab if labels_dir.is_dir() else None))
    return Dataset(
        str(meta.get("name", root.name)),
        path,
        "nnunetv2",
        channels,
        labels,
        tuple(cases),
        extra={"file_ending": ending, "unexpected_files": unexpected},
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
    return None


def _channel_name(col: str) -> str:
    """``Channel_CT`` declares the modality CT; ``Channel_0`` declares nothing."""
    low = col.lower()
    for p in CHANNEL_PREFIXES:
        if low.startswith(p):
            rest = col[len(p) :]
            return "" if rest.isdigit() else rest
    return ""


def load_csv(path: Path) -> Dataset:
    """Parse a GaNDLF-style CSV (``SubjectID``, ``Channel_*``, ``Label``, ``ValueToPredict``)."""
    problems: list[Problem] = []
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise DatasetError.single(
            path,
            "the CSV must have a header row and one row per subject",
            "empty file",
            "write a header such as SubjectID,Channel_0,Label",
        )
    header = [h.strip() for h in rows[0]]
    kinds = [_column_kind(h) for h in header]
    for h, k in zip(header, kinds, strict=True):
        if k is None:
            problems.append(
                Problem(
                    str(path),
                    "CSV columns must be SubjectID, PatientID, Channel_*/Modality_*/"
                    "Image_*, Label/Mask/Segmentation or ValueToPredict",
                    repr(h),
                    f"rename or remove the column.{did_you_mean(h, KNOWN_CSV_COLUMNS)}",
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
        value: float | None = None
        if vi is not None and row[vi].strip():
            try:
                value = float(row[vi])
            except ValueError:
                problems.append(
                    Problem(
                        f"{path}:{n}",
                        "ValueToPredict must be a number",
                        repr(row[vi]),
                        "write a number (class index or target value)",
                    )
                )
        label = _resolve(base, row[li].strip()) if li is not None and row[li].strip() else None
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
        images = tuple(_resolve(base, row[i].strip()) for i in chan_idx)
        group = row[gi].strip() if gi is not None and row[gi].strip() else None
        cases.append(Case(sid, images, label, value, group))
    if problems:
        raise DatasetError(problems, f"cannot parse {path}")
    channels = tuple(_channel_name(header[i]) for i in chan_idx)
    return Dataset(path.stem, path, "csv", channels, None, tuple(sorted(cases, key=lambda c: c.case_id)))


def construct_csv(
    root: str | Path, channels: list[str], label: str | None, output: str | Path, *, relative: bool = True
) -> Path:
    """Write a GaNDLF-style CSV for a ``ROOT/<subject>/<files>`` tree.

    Args:
        root: folder holding one sub-folder per subject.
        channels: file-name endings identifying each channel, e.g. ``["_t1.nii.gz", "_t2.nii.gz"]``.
        label: file-name ending of the label map, or ``None``.
        output: CSV path to write.
        relative: write paths relative to the CSV's folder (portable) instead of absolute.

    Every subject must have exactly one file per ending; all problems are reported together.
    """
    rootp = Path(root).expanduser().resolve()
    out = Path(output).expanduser().resolve()
    if not rootp.is_dir():
        raise DatasetError.single(
            rootp,
            "construct-csv needs a folder of subject folders",
            "not a folder",
            "pass the folder that holds one sub-folder per subject",
        )
    endings = list(channels) + ([label] if label else [])
    problems: list[Problem] = []
    rows: list[list[str]] = []
    for subj in sorted(d for d in rootp.iterdir() if d.is_dir()):
        files = sorted(f for f in subj.iterdir() if f.is_file())
        row = [subj.name]
        for end in endings:
            hits = [f for f in files if f.name.endswith(end)]
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
    if not rows:
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
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    tmp.replace(out)
    return out


def _is_under(p: Path, base: Path) -> bool:
    try:
        p.relative_to(base)
    except ValueError:
        return False
    return True
