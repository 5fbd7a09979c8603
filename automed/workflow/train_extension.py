"""``automed train --extend N``'s record in ``train_config.json``: the epoch count each fold reaches, kept until the
training concludes, so that the same ``--extend`` typed again after a kill completes the extension instead of
extending the folds that had finished it a second time."""

from __future__ import annotations

from pathlib import Path

from automed.artifacts import write_json_atomic
from automed.records import PROGRESS, read_progress, read_train_config
from automed.train.config import TrainConfig
from automed.workdir import WorkDir


def epochs_done(folder: Path) -> int:
    """The epochs a fold's ``progress.json`` holds (0 before its first)."""
    progress = folder / PROGRESS
    return len(read_progress(progress)["history"]) if progress.is_file() else 0


def extension_targets(wd: Path, config: TrainConfig, folds: list[int], extend: int) -> dict[str, int]:
    """The epoch count each fold reaches with this ``--extend`` (none without one): the pending record when it was
    made for the same ``--extend``, else a new one from each fold's epochs now."""
    if not extend:
        return {}
    wdir = WorkDir(wd)
    saved = read_train_config(wdir.train_config)
    pending = saved.get("extension")
    if pending and pending.get("epochs") == extend:
        return {str(k): int(v) for k, v in pending["targets"].items()}
    targets = {str(f): epochs_done(wdir.fold(config.configuration, f)) + extend for f in folds}
    write_json_atomic(wdir.train_config, {**saved, "extension": {"epochs": extend, "targets": targets}})
    return targets


def forget_extension(wd: Path) -> None:
    """The training concluded: its extension is complete, the record goes."""
    saved = read_train_config(WorkDir(wd).train_config)
    if saved.pop("extension", None) is not None:
        write_json_atomic(WorkDir(wd).train_config, saved)
