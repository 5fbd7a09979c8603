"""What ``automed predict`` may change of a trained model's inference for one run: which of its folds predict
(nnU-Net's ``-f``) and how far the sliding window moves (``-step_size``). Checked here, before any weight loads,
against what the work dir holds."""

from __future__ import annotations

from pathlib import Path

from automed.errors import ConfigError
from automed.runtime import options
from automed.runtime.options import fold_names as fold_names


def parse_folds(values: list[str] | None) -> list[int] | None:
    """``--folds 0,1`` or ``--folds 0 --folds 1`` (``all``: the all-data model) as sorted fold numbers; ``None``
    when not given (the model's own folds). The bundle's rule (:func:`automed.runtime.options.parse_folds`), as a
    :class:`ConfigError`."""
    try:
        return options.parse_folds(values)
    except options.OptionError as exc:
        raise ConfigError.single(
            "--folds",
            "folds are fold numbers (or all, the all-data model), comma-separated or repeated",
            repr(exc.value),
            "write e.g. --folds 0,1 or --folds 0 --folds 1",
        ) from exc


def chosen_folds(
    folds: list[int] | None, trained: list[int], default: list[int], source: str | Path
) -> list[int]:
    """The folds that predict: ``folds`` when the model ``source`` has each of them (``trained``), else its own
    ``default`` (``automed select``'s choice, or every fold)."""
    if folds is None:
        return list(default)
    missing = [f for f in folds if f not in trained]
    if not folds or missing:
        raise ConfigError.single(
            source,
            f"--folds chooses among the folds the model has ({fold_names(trained)})",
            f"--folds {fold_names(folds)}" + (f" (no fold {fold_names(missing)})" if missing else ""),
            f"pass some of {fold_names(trained)}, or drop --folds to predict with "
            f"{fold_names(default)} (the model's own choice)",
        )
    return list(folds)


def folds_refused(exc: options.OptionError, files: list[Path], where: Path) -> ConfigError:
    """The bundle's refusal of ``--folds`` (:mod:`automed.runtime.options`) in automed's form, in its words: the
    file is the pair member's at fault (``files``: each member's, where known) or ``where``."""
    file = files[exc.member] if exc.member is not None and exc.member < len(files) else where
    return ConfigError.single(file, exc.rule, exc.found, exc.fix)


def pair_folds(
    members: list[tuple[str, list[int]]], folds: list[int], files: list[Path], where: Path
) -> None:
    """``--folds`` on a pair: the same fold numbers of each member, by the exported pair's one rule and words
    (:func:`automed.runtime.options.check_pair_folds`); ``members``: each member's name
    (:func:`automed.runtime.options.member_name`) and the folds its bundle holds, ``files`` their folders."""
    try:
        options.check_pair_folds([(n, list(h)) for n, h in members], folds, where)
    except options.OptionError as exc:
        raise folds_refused(exc, files, where) from exc


def checked_step(step: float | None, source: str | Path) -> float | None:
    """A sliding-window step as a fraction of the patch: more than 0 (it must move), at most 1 (no gaps)."""
    if step is not None and not 0 < step <= 1:
        raise ConfigError.single(
            source,
            "--step-size is the fraction of the patch the window moves: 0 < step <= 1",
            step,
            "pass e.g. 0.5 (nnU-Net's default: windows overlap by half) or 1 (no overlap, fastest)",
        )
    return step


def no_window(step: float | None, source: str | Path) -> None:
    """Image-level models see the whole (resized) image at once: there is no window to step."""
    if step is not None:
        raise ConfigError.single(
            source,
            "--step-size moves the sliding window of a segmentation model",
            f"--step-size {step} for an image-level model (one prediction per whole image, no window)",
            "drop --step-size",
        )


def run_overrides(folds: list[int] | None, step: float | None) -> str:
    """The options that change a training's inference for this run (``--folds``, ``--step-size``). Torch and an
    export's runtime take them (``--runtime auto`` then runs torch: the training's folds, not only those exported);
    a pair takes them for each member (the same fold numbers of each, as its exported ``predict.py`` does)."""
    return " and ".join(name for name, v in (("--folds", folds), ("--step-size", step)) if v is not None)
