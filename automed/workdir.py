"""Every artifact path of a work dir, in one place, and the one "missing artifact, run X first" check.

A training work dir (``automed train``; a sweep trial folder looks the same)::

    fingerprint.json  plan.json  splits.json  preprocessed/<configuration>/    (prepare)
    pseudonym.key                                                              (secret of case-ID pseudonyms)
    train_config.json  tracking.json                                           (train: options, MLflow ids, registry)
    screen.json                                                                (configurations screened on fold 0)
    train/<configuration>/fold_<k>/  cv/metrics.csv  cv/summary.json           (folds, cross-validation)
    previous_stage.json  previous_stage/                                       (a cascade: its 3d_lowres training)
    model.json                                                                 (model metadata, on conclusion)
    selection/selection.json                                                   (the training's own postprocessing)
    inference.json                                                             (`automed select`'s choice, optional)
    model_bundle/                                                              (what is registered)
    export/  export_link.json                                                  (`automed export`)

A selection folder (``automed select -o S``): ``selection.json`` and, for a chosen pair, ``model_bundle/`` with
``ensemble.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automed.errors import ArtifactError
from automed.records import read_chosen, read_pair

FINGERPRINT = "fingerprint.json"
PLAN = "plan.json"
SPLITS = "splits.json"
PREPROCESSED = "preprocessed"
TRAIN_CONFIG = "train_config.json"
TRACKING = "tracking.json"
MODEL = "model.json"
CHOICE = "inference.json"
SELECTION = "selection.json"
MODEL_BUNDLE = "model_bundle"
ENSEMBLE = "ensemble.json"
EXPORT_LINK = "export_link.json"
PSEUDONYM_KEY = (
    "pseudonym.key"  # secret of the case-ID pseudonyms (automed.privacy); never logged or exported
)
ALL_DATA = -1  # the fold of `automed train --folds all`: every case trains, none validates (folder fold_all)
PLANNING = (PLAN, FINGERPRINT, SPLITS, PREPROCESSED, PSEUDONYM_KEY)  # shared by every trial of a sweep


def require(path: Path, what: str, run: str) -> Path:
    """``path`` if it exists, else an :class:`ArtifactError` saying which command writes it."""
    if not path.exists():
        raise ArtifactError.single(path, f"{what} must exist", "missing", f"run `{run}` first")
    return path


def fold_name(fold: int) -> str:
    """``fold_3``, or ``fold_all`` for the all-data model (:data:`ALL_DATA`): folders and weight files."""
    return "fold_all" if fold == ALL_DATA else f"fold_{fold}"


@dataclass(frozen=True)
class WorkDir:
    """The paths of one work dir (nothing is read or written by this class)."""

    root: Path

    @property
    def fingerprint(self) -> Path:
        return self.root / FINGERPRINT

    @property
    def plan(self) -> Path:
        return self.root / PLAN

    @property
    def splits(self) -> Path:
        return self.root / SPLITS

    @property
    def preprocessed(self) -> Path:
        return self.root / PREPROCESSED

    @property
    def train_config(self) -> Path:
        return self.root / TRAIN_CONFIG

    @property
    def tracking(self) -> Path:
        return self.root / TRACKING

    @property
    def model(self) -> Path:
        return self.root / MODEL

    @property
    def choice(self) -> Path:
        return self.root / CHOICE

    @property
    def cv_metrics(self) -> Path:
        return self.root / "cv" / "metrics.csv"

    @property
    def cv_summary(self) -> Path:
        return self.root / "cv" / "summary.json"

    @property
    def own_selection(self) -> Path:
        return self.root / "selection"

    @property
    def selection(self) -> Path:
        """``selection.json`` of a selection folder."""
        return self.root / SELECTION

    @property
    def bundle(self) -> Path:
        return self.root / MODEL_BUNDLE

    @property
    def pair(self) -> Path:
        """The pair bundle's ``ensemble.json`` of a selection folder that chose a pair."""
        return self.root / MODEL_BUNDLE / ENSEMBLE

    @property
    def export_link(self) -> Path:
        return self.root / EXPORT_LINK

    @property
    def pseudonym_key(self) -> Path:
        return self.root / PSEUDONYM_KEY

    @property
    def screen(self) -> Path:
        """``screen.json``: the configurations screened on fold 0 by a budget, their scores and the one kept."""
        return self.root / "screen.json"

    @property
    def previous_link(self) -> Path:
        """A cascade's link to the 3d_lowres training whose predictions are its extra inputs."""
        return self.root / "previous_stage.json"

    @property
    def previous_stage(self) -> Path:
        """A cascade's previous-stage predictions, one ``<case>.npy`` on the preprocessed grid per case."""
        return self.root / "previous_stage"

    def fold(self, configuration: str, fold: int) -> Path:
        return self.root / "train" / configuration / fold_name(fold)

    def trained_checkpoints(self) -> list[Path]:
        """Checkpoints of folds trained in this work dir (a training's, or a sweep's trials'): while there are any,
        its plan and split stay as they were trained on."""
        return sorted(
            [
                *self.root.glob("train/*/fold_*/checkpoint_*.pt"),
                *self.root.glob("trials/*/train/*/fold_*/checkpoint_*.pt"),
            ]
        )

    def require_model(self) -> Path:
        """``model.json``, or the error telling to train first (or, for a sweep's folder or a dataset, what to
        pass instead: never to train into them)."""
        if not self.model.exists() and (self.root / "sweep.json").is_file():
            raise ArtifactError.single(
                self.root, "a model is a training work dir", "a sweep's folder",
                f"pass its best trial's work dir ({self.root.name}/trials/<key>, see trials.csv), or train "
                f"`automed train DATASET --config {self.root.name}/best_config.yaml -o NEW_DIR`",
            )  # fmt: skip
        if not self.model.exists() and _is_dataset(self.root):
            raise ArtifactError.single(
                self.root, "a model is a training work dir",
                "a dataset file" if self.root.is_file() else "a dataset folder",
                "train it first into a new folder: `automed train DATASET -o NEW_DIR`, then pass NEW_DIR",
            )  # fmt: skip
        if (
            not self.model.exists() and (self.root / "trial.json").is_file()
        ):  # a sweep trial screened on fold 0 only
            raise ArtifactError.single(
                self.root, "a model is a fully cross-validated training",
                "a sweep trial that did not reach full CV (screened only, stopped, failed or a duplicate)",
                "pass a trial that reached full CV (trials.csv status cv), or train this one's config (`config` in "
                f"{self.root.name}/trial.json, saved as a YAML file) with `automed train DATASET --config FILE -o NEW_DIR`",
            )  # fmt: skip
        if not self.model.exists() and self.train_config.is_file():  # a training stopped before its end
            raise ArtifactError.single(
                self.model, "a training work dir's model.json must exist (written when the training concludes)",
                "missing: the training did not finish", f"finish it: `automed train --resume {self.root}`",
            )  # fmt: skip
        if (
            not self.model.exists()
            and self.root.is_dir()
            and not any((self.root / m).exists() for m in WORKDIR_MARKERS)
        ):
            images = any(f.name.lower().endswith(_IMAGE_ENDINGS) or f.suffix.lower() == ".dcm"
                         for f in self.root.iterdir())  # fmt: skip
            raise ArtifactError.single(
                self.root, "a model is a training work dir, a selection folder or models:/NAME@ALIAS",
                "a folder of images" if images else "a folder automed did not write (no model.json, no plan.json)",
                "pass the training's work dir as MODEL (images go after -i)" if images
                else "pass the work dir `automed train` wrote",
            )  # fmt: skip
        return require(
            self.model, "a training work dir's model.json", f"automed train DATASET -o {self.root}"
        )


# automed's own files in a work dir: a folder holding one is never taken for a dataset
WORKDIR_MARKERS = ("plan.json", "fingerprint.json", "train_config.json", "tracking.json", "splits.json")
_IMAGE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")  # fmt: skip


def _is_dataset(root: Path) -> bool:
    """Whether ``root`` (no ``model.json``) is a dataset: an MSD / nnU-Net folder, a CSV dataset or its folder (a
    ``.csv`` with a SubjectID column), a ``dataset.json``, or a folder of one sub-folder of images per class."""
    if any((root / f).exists() for f in ("dataset.json", "imagesTr", "labelsTr")):
        return True
    if root.is_file():
        return root.suffix.lower() == ".csv" or root.name == "dataset.json"
    if not root.is_dir() or any((root / m).exists() for m in WORKDIR_MARKERS):
        return False
    for csv in root.glob("*.csv"):
        with contextlib.suppress(OSError, UnicodeDecodeError), csv.open(encoding="utf-8-sig") as f:
            if "subjectid" in f.readline().lower():
                return True
    dirs = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    with_images = [d for d in dirs if any(f.name.lower().endswith(_IMAGE_ENDINGS) for f in d.iterdir())]
    return len(dirs) >= 2 and len(with_images) >= 2


def relative_place(target: Path, folder: Path) -> str:
    """``target``'s place relative to ``folder`` (``relative`` in an artifact of ``folder``): a project folder moved
    or copied whole still finds it. Such places name local folders: :func:`without_local_places` before anything
    leaves the machine."""
    return os.path.relpath(Path(target).expanduser().resolve(), Path(folder).expanduser().resolve())


def recorded_place(folder: Path, absolute: str | None, relative: str | None) -> Path:
    """Where a place an artifact of ``folder`` recorded is now: at its ``relative`` place when that exists (the
    artifact's folder moved or copied together with it), else at its ``absolute`` one (an artifact written before
    relative places were recorded, or a folder moved alone)."""
    if relative is not None and (folder / relative).exists():
        return (folder / relative).resolve()
    if absolute is not None:
        return Path(absolute)
    assert relative is not None, "a recorded place is absolute, relative or both"
    return (folder / relative).resolve()  # gone: the caller's check names where it was looked for


def without_local_places(record: Any) -> Any:
    """``record`` (a JSON value) without its ``relative`` entries: what may be logged, exported or registered."""
    if isinstance(record, dict):
        return {k: without_local_places(v) for k, v in record.items() if k != "relative"}
    if isinstance(record, list):
        return [without_local_places(v) for v in record]
    return record


def with_relative_members(chosen: dict[str, Any], selection_folder: Path) -> dict[str, Any]:
    """A selection's choice with its members' places relative to the selection folder too (``relative``): a
    project folder moved whole (selection and work dirs together) still finds them."""
    return {**chosen, "relative": [relative_place(Path(m), selection_folder) for m in chosen["members"]]}


def chosen_members(selection_folder: Path, chosen: dict[str, Any]) -> list[Path]:
    """The work dirs a selection chose: moved or copied with the selection folder, at their recorded place relative
    to it; else where they were."""
    relative = chosen.get("relative") or [None] * len(chosen["members"])
    return [
        recorded_place(selection_folder, member, rel)
        for member, rel in zip(chosen["members"], relative, strict=True)
    ]


def pair_members(folder: Path) -> list[Path]:
    """The work dirs of the pair in a selection folder's ``model_bundle/ensemble.json``: at their place relative to
    the bundle; else (the selection folder moved alone) where ``selection.json`` recorded them; else (a bundle
    written before relative places) at the absolute place its ``workdir`` recorded."""
    wd = WorkDir(folder)
    members = read_pair(wd.pair)["members"]
    chosen = read_chosen(wd.selection) if wd.selection.is_file() else None
    recorded: list[str | None] = [None] * len(members)
    if chosen and len(chosen["members"]) == len(members):  # the selection of this pair, in the same order
        recorded = [str(p) for p in chosen_members(folder, chosen)]
    return [
        recorded_place(wd.bundle, m.get("workdir") or absolute, m.get("relative"))
        for m, absolute in zip(members, recorded, strict=True)
    ]


@contextlib.contextmanager
def flocked(path: Path, mode: int | None = None) -> Iterator[None]:
    """``flock`` on ``path`` (made if absent; exclusive unless ``mode`` says) until the block ends; released by the
    kernel if the process dies. Shared locks of a sweep (claims, running trials, the sampler's record)."""
    import fcntl

    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX if mode is None else mode)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


LOCK = ".automed.lock"
_HELD: set[Path] = set()  # work dirs this process holds the lock of (:func:`locked`)


@contextlib.contextmanager
def locked(root: Path, command: str) -> Iterator[None]:
    """Hold the work dir's lock while ``command`` writes it: a second writer (another ``automed train --resume``,
    a sweep started twice) gets a clear error naming the holder's process instead of racing on its checkpoints.
    The lock is a POSIX record lock (``lockf``): released when the holder dies, even by ``kill -9``, and not
    inherited by the data-loader processes a training forks (they may outlive a killed holder by a few seconds)."""
    import fcntl

    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK
    _HELD.add(root.resolve())  # refuse_unfinished must not touch this process's own lock
    try:
        with path.open("a+") as fh:
            try:
                fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                raise ArtifactError.single(
                    root,
                    "one automed command writes a work dir at a time",
                    f"it is in use by {holder}",
                    "wait for that command to finish (or stop it), or use another -o",
                ) from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"PID {os.getpid()} ({command})\n")
            fh.flush()
            try:
                yield
            finally:
                fh.seek(0)
                fh.truncate()
                fcntl.lockf(fh, fcntl.LOCK_UN)
    finally:
        _HELD.discard(root.resolve())
        if created and [p.name for p in root.iterdir()] == [LOCK]:  # failed before writing anything: no trace
            path.unlink()
            root.rmdir()


def sweep_of(root: Path) -> Path | None:
    """The sweep folder whose trial ``root`` is (``SWEEP/trials/<key>``, beside the sweep's ``sweep.json``), else
    ``None``."""
    trials = root.resolve().parent
    return trials.parent if trials.name == "trials" and (trials.parent / "sweep.json").is_file() else None


def refuse_unfinished(root: Path) -> None:
    """A model is read only when no other command is writing its work dir (a training or ``--extend`` holding the
    lock: its checkpoints change under the reader) and no ``--extend`` was left unfinished (its folds are at
    different epochs, ``model.json`` and the CV are those of before)."""
    import fcntl

    if (sweep := sweep_of(root)) is not None:
        refuse_unfinished(sweep)  # a sweep's trial: its sweep holds the lock while it trains
    lock = root / LOCK
    # a process's lockf locks are its own whatever the file handle: taking and dropping a shared lock here would
    # drop the exclusive lock this process holds (a training reading its own model while it concludes)
    if lock.is_file() and root.resolve() not in _HELD:
        with lock.open("r") as fh:
            try:
                fcntl.lockf(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                holder = fh.read().strip() or "another process"
                raise ArtifactError.single(
                    root, "a model is read when no command is writing its work dir", f"in use by {holder}",
                    "wait for that command to finish (or stop it and resume it)",
                ) from None  # fmt: skip
            fcntl.lockf(fh, fcntl.LOCK_UN)
    try:
        pending = json.loads((root / TRAIN_CONFIG).read_text()).get("extension")
    except (OSError, ValueError, AttributeError):
        return
    if pending:
        raise ArtifactError.single(
            root / TRAIN_CONFIG, "a model's folds finished their training",
            f"an --extend {pending.get('epochs')} that did not finish",
            f"complete it: automed train --resume {root} --extend {pending.get('epochs')}{_as_registered(root)}",
        )  # fmt: skip


def _as_registered(root: Path) -> str:
    """The way to the model as it was before an unfinished ``--extend``: its registered version, which holds its own
    copy of the weights ("" when the training registered none)."""
    try:
        entry = json.loads((root / TRACKING).read_text()).get("registered")
        name, version = entry["name"], entry["version"]
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return ""
    return f"; the model as it was before the extension is the registered models:/{name}/{version} (with --tracking-uri)"
