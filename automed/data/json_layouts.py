"""Parse ``dataset.json`` layouts: Medical Segmentation Decathlon (MSD) and nnU-Net v2 raw.

Only the description is read (plus, for nnU-Net v2, the file names in ``imagesTr``/``labelsTr``); no image is
opened. Every problem in one description is reported together in one :class:`~automed.errors.DatasetError`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from automed.data.paths import resolve_listed
from automed.data.schema import Case, Dataset
from automed.errors import DatasetError, Problem


def load_dataset_json(path: Path) -> Dataset:
    """Parse a ``dataset.json`` file: nnU-Net v2 when it has ``channel_names``, MSD when it has ``modality`` or
    ``training``."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DatasetError.single(
            path,
            "dataset.json must be UTF-8 text",
            f"a non-UTF-8 byte at offset {exc.start}",
            "save it as UTF-8",
        ) from exc
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
        elif str(name).lower() == "ignore":  # nnU-Net v2's reserved name: voxels the loss leaves out
            problems.append(
                Problem(
                    str(path),
                    "nnU-Net's 'ignore' label (unannotated voxels left out of the loss) is not supported yet: "
                    "automed would train and score it as a structure",
                    f"{name}: {v!r}",
                    "annotate those voxels (e.g. as background) and remove 'ignore' from 'labels', or train with "
                    "nnU-Net",
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
        img = resolve_listed(path.parent, str(entry["image"]))
        lab = resolve_listed(path.parent, str(entry["label"])) if entry.get("label") else None
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


_PICTURES = (".png", ".bmp", ".jpg", ".jpeg")  # nnU-Net reads a .tif as a 3D image (Tiff3DIO)


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
    files = sorted(images_dir.glob(f"*{ending}"))
    found = [(m["case"], int(m["ch"]), f) for f in files if (m := pat.match(f.name))]
    ids = sorted({cid for cid, _, _ in found})
    undeclared = "remove the file or declare the channel in channel_names"
    unexpected = [
        (str(f), f"channel {ch} is not declared in channel_names ({len(channels)} channel(s))", undeclared)
        for _, ch, f in found
        if ch >= len(channels)
    ]
    # a file of imagesTr not named CASE_XXXX: it had been left out without a word (its label then blamed)
    named = f"an image file not named CASE_XXXX{ending} (XXXX: its channel number)"
    for f in files:
        if not pat.match(f.name):
            fix = f"rename it, e.g. {f.name[: -len(ending)]}_0000{ending} for the case's first channel"
            unexpected.append((str(f), named, fix))
    for f in sorted(labels_dir.glob(f"*{ending}")) if labels_dir.is_dir() else []:
        if (cid := f.name[: -len(ending)]) not in ids:
            why = f"a label whose case has no image named {cid}_0000{ending} in imagesTr"
            fix = f"name its images {cid}_XXXX{ending} (or remove the label of a case without images)"
            unexpected.append((str(f), why, fix))
    declared = meta.get("numTraining")
    if (
        isinstance(declared, int)
        and not isinstance(declared, bool)
        and declared != len(ids)
        and not unexpected
    ):
        unexpected.append((str(path), f"numTraining {declared}, but {len(ids)} case(s) in imagesTr",
                           "correct numTraining, or add the missing cases' files"))  # fmt: skip
    # nnU-Net's natural 2D images: one RGB picture, CASE_0000.png, for channel_names R, G and B
    one_rgb_file = len(channels) == 3 and ending.lower() in _PICTURES and all(ch == 0 for _, ch, _ in found)
    cases = []
    for cid in ids:
        n_files = 1 if one_rgb_file else len(channels)
        imgs = tuple(images_dir / f"{cid}_{c:04d}{ending}" for c in range(n_files))
        lab = labels_dir / f"{cid}{ending}"
        cases.append(Case(cid, imgs, lab if labels_dir.is_dir() else None))
    return Dataset(
        str(meta.get("name", root.name)),
        path,
        "nnunetv2",
        channels,
        labels,
        tuple(cases),
        extra={"file_ending": ending, "unexpected_files": unexpected, "one_rgb_file": one_rgb_file},
    )
