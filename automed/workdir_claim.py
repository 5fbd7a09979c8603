"""Where a work dir may be made: never in a dataset folder, and only in a new or empty folder or an earlier work
dir of the same command (a training's is not a sweep's); automed's lock, its temporary files and what an operating
system keeps in any folder do not count."""

from __future__ import annotations

import json
from pathlib import Path

from automed.errors import ArtifactError
from automed.workdir import FINGERPRINT, LOCK, TRAIN_CONFIG


def refuse_workdir_in_dataset(dataset: str | Path | None, wd: Path) -> None:
    """A work dir is never a dataset folder or inside one (``-o DATASET`` wrote fingerprint.json, plan.json, the
    preprocessed cache and the lock among the user's images; a work dir inside a folder-per-class dataset is read
    as another class); a CSV's folder may hold work dirs beside it. Checked by every command that makes or fills a
    work dir from a dataset (fingerprint, plan, preprocess, train, sweep), before the dataset is read: a leftover
    ``DS/W`` would otherwise be refused as a part of the dataset (``DS/W/fingerprint.json`` is no image of a
    class), a message that hides this rule."""
    if dataset is None:
        return
    src = Path(dataset).expanduser().resolve()
    if not src.is_dir():
        return
    if wd.resolve() == src or src in wd.resolve().parents:
        raise ArtifactError.single(
            wd, "a work dir lies outside the dataset folder", f"inside {src.name}",
            "choose an output folder beside the dataset, e.g. -o work",
        )  # fmt: skip


def claim_workdir(root: Path, command: str) -> None:
    """Before anything is written there: a work dir (``-o`` of fingerprint, plan, preprocess, train, sweep) is a new
    or empty folder, or one automed wrote as a work dir (its ``fingerprint.json``, the first thing every work dir
    gets); automed's own lock and temporary files do not count. A folder of the user's is never written into: its
    ``plan.json`` or ``preprocessed/`` would be replaced."""
    if root.is_file():
        raise ArtifactError.single(
            root, f"{command} writes a work dir folder", "an existing file", "choose a folder"
        )
    if not root.is_dir():
        return
    foreign = sorted(p.name for p in root.iterdir() if not _ignored(p.name))
    if not foreign:
        return
    if _is_earlier_workdir(root):
        _refuse_other_kind(root, command)
        return
    raise ArtifactError.single(
        root,
        f"{command} writes into a new or empty folder, or a work dir automed wrote (it holds its fingerprint.json)",
        f"a folder holding {', '.join(foreign[:4])}{' ...' if len(foreign) > 4 else ''}",
        "choose a new or empty folder for -o (automed never writes among files it did not write)",
    )


def _refuse_other_kind(root: Path, command: str) -> None:
    """A training's work dir is not a sweep's, nor the other way round: both keep their evidence in ``selection/``
    (a training's own postprocessing choice, a sweep's selection of its trials), and each replaced the other's."""
    sweep = (root / "sweep.json").is_file()
    trained = (root / TRAIN_CONFIG).is_file()
    if command == "automed train" and sweep:
        found, fix = (
            "a sweep's work dir (its sweep.json)",
            f"continue the sweep (automed sweep --resume {root})",
        )
    elif command == "automed sweep" and trained and not sweep:
        found, fix = (
            "a training's work dir (its train_config.json)",
            f"resume it (automed train --resume {root})",
        )
    else:
        return
    raise ArtifactError.single(
        root, f"{command} writes into a new folder or an earlier {command.split()[1]}'s work dir", found,
        f"choose a new folder for -o, or {fix}",
    )  # fmt: skip


def _is_earlier_workdir(root: Path) -> bool:
    try:
        found = json.loads((root / FINGERPRINT).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(found, dict) and "schema_version" in found and "inputs_hash" in found


_SYSTEM_FILES = (".DS_Store", "lost+found", "Thumbs.db", "desktop.ini")  # what an OS puts in any folder


def _ignored(name: str) -> bool:
    """The lock, a temporary file of an atomic write killed part-way (``.NAME.tmp-PID...``), or a file the
    operating system keeps in any folder (Finder's ``.DS_Store``, a mount point's ``lost+found``, NFS's ``.nfs*``)."""
    if name == LOCK or name in _SYSTEM_FILES or name.startswith(".nfs"):
        return True
    return name.startswith(".") and any(t in name for t in (".tmp-", ".old-", ".partial"))
