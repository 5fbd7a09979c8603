"""``predict.py --folds`` and ``--step-size``: which of the bundle's fold networks predict (nnU-Net's ``-f``) and how
far the sliding window moves (``-step_size``), checked against ``preprocess.json`` before any output is written.

The rules and words of ``automed predict``'s options (:mod:`automed.infer.predict_options`), without automed: the
bundle names its folds as the training did (``preprocess.json``'s ``folds``, in the order of its network files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ALL_DATA = -1  # the model of `automed train --folds all` (every case trains), named `all`


class OptionError(ValueError):
    """A ``--folds`` or ``--step-size`` the bundle cannot take; the message names the file, rule, value and fix
    (``value``: what was typed, when one value is at fault). A refused ``--folds`` also carries its ``rule``,
    ``found`` and ``fix`` apart, and ``member``: the index of the pair's member at fault (None: not a pair's), so
    automed says them in the same words (:mod:`automed.infer.predict_options`)."""

    def __init__(
        self,
        message: str,
        value: str | None = None,
        *,
        parts: tuple[str, str, str] = ("", "", ""),
        member: int | None = None,
    ) -> None:
        super().__init__(message)
        self.value = value
        self.rule, self.found, self.fix = parts
        self.member = member


def fold_names(folds: list[int]) -> str:
    """Folds as the command line takes them: ``0, 1``, or ``all`` for the all-data model."""
    return ", ".join("all" if f == ALL_DATA else str(f) for f in folds)


def parse_folds(values: list[str] | None) -> list[int] | None:
    """``--folds 0,1``, ``--folds 0 1`` or ``--folds 0 --folds 1`` (``all``: the all-data model) as sorted fold
    numbers; ``None`` when not given (every fold the bundle holds)."""
    if not values:
        return None
    out: set[int] = set()
    for value in values:
        for part in value.split(","):
            name = part.strip().lower()
            if name == "all":
                out.add(ALL_DATA)
            elif name.isdigit():
                out.add(int(name))
            else:
                raise OptionError(
                    f"--folds: folds are fold numbers (or all, the all-data model), comma-separated or repeated; "
                    f"found {value!r}; write e.g. --folds 0,1 or --folds 0 1",
                    value,
                )
    return sorted(out)


def held_folds(meta: dict[str, Any]) -> list[int] | None:
    """The folds whose networks the bundle holds, in file order; ``None`` for a bundle that does not say (exported
    before bundles recorded them: from a work dir, or from a registered model before those were recorded too)."""
    folds = meta.get("folds")
    return None if folds is None else [int(f) for f in folds]


def with_folds(meta: dict[str, Any], folds: list[int] | None, where: Path) -> dict[str, Any]:
    """``preprocess.json`` (``meta``, read from ``where``) narrowed to the networks of ``folds``; unchanged when
    ``folds`` is ``None``. A bundle that does not record its folds is refused, and so is a fold it does not hold,
    naming those it does. A pair takes the same fold numbers from each member (:func:`check_pair_folds`)."""
    if folds is None:
        return meta
    if "members" in meta:
        names = [member_name(k, m.get("configuration", "?")) for k, m in enumerate(meta["members"], start=1)]
        check_pair_folds(
            [(n, held_folds(m)) for n, m in zip(names, meta["members"], strict=True)], folds, where
        )
        members = [_narrowed(m, folds) for m in meta["members"]]
        files = {rt: [f for m in members for f in m["files"][rt]] for rt in meta["files"]}
        return {**meta, "members": members, "files": files}
    _check_held(held_folds(meta), folds, where, "", held_folds(meta), None)
    return _narrowed(meta, folds)


def member_name(k: int, configuration: str, folder: str | None = None) -> str:
    """A pair's member as a refusal names it: its number (from 1), configuration and, where known, folder."""
    return f"member {k} ({configuration}{f', {folder}' if folder else ''}) of this pair"


def check_pair_folds(
    members: list[tuple[str, list[int] | None]], folds: list[int], where: Path | str
) -> None:
    """The rule of ``--folds`` on a pair, for an exported pair (:func:`with_folds`) and automed's torch pair bundle
    alike: the same fold numbers of each member (the members were trained on the same splits, so fold k is the same
    cases' held-out model in each). ``members``: each member's name (:func:`member_name`) and the folds it holds
    (None: not recorded). The first member that lacks one, or records none, is refused by name, with the folds
    every member holds."""
    shared = _shared([held for _, held in members])
    for k, (name, held) in enumerate(members):
        _check_held(held, folds, where, name, shared, k)


def _shared(each: list[list[int] | None]) -> list[int] | None:
    """The fold numbers every one of ``each`` holds (None: one does not record its folds, or they share none)."""
    if any(h is None for h in each):
        return None
    first = each[0] or []
    shared = [f for f in first if all(f in (h or []) for h in each[1:])]
    return shared or None


def common_folds(meta: dict[str, Any]) -> list[int] | None:
    """The folds ``--folds`` can take: a single training's own, or those every member of a pair holds (``None``
    when one does not record its folds, or they share none)."""
    if "members" not in meta:
        return held_folds(meta)
    return _shared([held_folds(m) for m in meta["members"]])


def _refusal(where: Path | str, rule: str, found: str, fix: str, member: int | None) -> OptionError:
    return OptionError(f"{where}: {rule}; found {found}; {fix}", parts=(rule, found, fix), member=member)


def _check_held(
    held: list[int] | None,
    folds: list[int],
    where: Path | str,
    member: str,
    choices: list[int] | None,
    index: int | None,
) -> None:
    """Refuse ``folds`` unless ``held`` (one training's folds) has each; ``member`` names a pair's member ("" for a
    single training, ``index`` its position), ``choices`` the folds the refusal suggests (a pair's: those every
    member holds)."""
    whose = f" of {member}" if member else ""
    if held is None:
        raise _refusal(
            where,
            f"--folds chooses among the folds the bundle records (preprocess.json 'folds'{whose})",
            "none recorded (an export made before bundles recorded them)",
            "export the model again with `automed export` (its work dir, or its models:/ URI: a registered model's "
            "bundle records them too), or drop --folds",
            index,
        )
    missing = [f for f in folds if f not in held]
    if not folds or missing:
        fix = (
            f"pass some of {fold_names(choices)}{' (those every member holds)' if member else ''}, or drop --folds"
            " to predict with all of them"
            if choices
            else "drop --folds (the members share no fold number) to predict with all of them"
        )
        raise _refusal(
            where,
            f"--folds chooses among the folds {member or 'the bundle'} holds ({fold_names(held)})",
            f"--folds {fold_names(folds)}{f' (no fold {fold_names(missing)})' if missing else ''}",
            fix,
            index,
        )


def _narrowed(meta: dict[str, Any], folds: list[int]) -> dict[str, Any]:
    """One training's ``preprocess.json`` entry narrowed to ``folds`` (checked: it holds each)."""
    held = held_folds(meta) or []
    picked = [held.index(f) for f in folds]
    files = {rt: [names[i] for i in picked] for rt, names in meta["files"].items()}
    return {**meta, "folds": list(folds), "files": files}


def checked_step(step: float | None, meta: dict[str, Any], where: Path) -> float | None:
    """A sliding-window step as a fraction of the patch: more than 0 (it must move), at most 1 (no gaps); refused
    for a classification or regression bundle (one prediction per whole image, no window)."""
    if step is None:
        return None
    if meta.get("task") in ("classification", "regression"):
        raise OptionError(
            f"{where}: --step-size moves the sliding window of a segmentation model; found --step-size {step} for "
            "an image-level model (one prediction per whole image, no window); drop --step-size"
        )
    if not 0 < step <= 1:
        raise OptionError(
            f"{where}: --step-size is the fraction of the patch the window moves: 0 < step <= 1; found {step}; "
            "pass e.g. 0.5 (nnU-Net's default: windows overlap by half) or 1 (no overlap, fastest)"
        )
    return step
