"""``automed train --extend N``'s record in ``train_config.json``: the epoch count each fold reaches, kept until the
training concludes, so that the same ``--extend`` typed again after a kill completes the extension instead of
extending the folds that had finished it a second time."""

from __future__ import annotations

from pathlib import Path

from automed.artifacts import write_json_atomic
from automed.errors import ConfigError
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


def refuse_mixed_extension(wd: Path, config: TrainConfig, extend: int) -> None:
    """Before anything runs: an ``--extend`` never leaves folds at epochs of two extensions. Another N typed after a
    killed ``--extend`` (fold 0 had reached 2 + 2 + 3 epochs, fold 1 2 + 3), or an ``--extend`` over a training
    whose folds had not all finished (the unfinished ones were only resumed): both were registered without a word."""
    if not extend:
        return
    wdir = WorkDir(wd)
    pending = read_train_config(wdir.train_config).get("extension")
    typed = f"automed train --resume {wd}"
    if pending and pending.get("epochs") != extend:
        raise ConfigError.single(
            wdir.train_config, "an --extend that did not finish is completed as it was typed (its folds' targets are "
            "recorded)", f"--extend {extend} after an unfinished --extend {pending.get('epochs')}",
            f"complete it first ({typed} --extend {pending.get('epochs')}), then extend again",
        )  # fmt: skip
    if pending:
        return
    unfinished = sorted(
        p.parent.name
        for p in (wdir.root / "train" / config.configuration).glob(f"fold_*/{PROGRESS}")
        if not read_progress(p).get("finished")
    )
    if unfinished:
        raise ConfigError.single(
            wdir.root, "--extend adds epochs to a training whose folds have all finished",
            f"{', '.join(unfinished)} unfinished (a training stopped before its end)",
            f"finish it first ({typed}), then extend it",
        )  # fmt: skip


def forget_extension(wd: Path) -> None:
    """The training concluded: its extension is complete, the record goes."""
    saved = read_train_config(WorkDir(wd).train_config)
    if saved.pop("extension", None) is not None:
        write_json_atomic(WorkDir(wd).train_config, saved)
