"""What a work dir's earlier folds allow a new ``automed train`` into it: one kind of model (a cross-validation or
an all-data model), one plan and training config, and for a cascade one first-stage model; anything else would mix
models, so it is refused before any fold trains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from automed.errors import ArtifactError
from automed.plan.schema import Plan
from automed.preprocess.previous_stage import legacy_digest
from automed.records import fits, shown
from automed.train.config import TrainConfig
from automed.train.state import checkpoint_matches, fold_finished
from automed.workdir import ALL_DATA, WorkDir


def check_same_previous(
    wdir: WorkDir, config: TrainConfig, before: bytes | None, link: dict[str, str]
) -> None:
    """Cascade folds trained on the predictions of one first-stage model are not reused over another (the first
    stage extended or retrained since: its ``model.json`` digest changed)."""
    trained = sorted((wdir.root / "train" / config.configuration).glob("fold_*/checkpoint_*.pt"))
    if not trained or before is None:
        return
    old = _earlier_link(wdir.previous_link, before, trained[0].parent)
    if old == link:
        return
    model = WorkDir(Path(link["workdir"])).model
    if {**old, "model": link["model"]} == link and old.get("model") == legacy_digest(model):
        return  # a link of the earlier format to the same, untouched model.json
    raise ArtifactError.single(
        wdir.previous_link,
        "cascade folds keep the first-stage model they were trained on",
        f"{trained[0].parent}: trained on {old['workdir']} as it was before; it changed since",
        "train the cascade into a new --output (its folds need the new first stage's predictions)",
    )


def _earlier_link(path: Path, before: bytes, trained: Path) -> dict[str, Any]:
    """The ``previous_stage.json`` the cascade's folds were trained with (``before``: its bytes); a damaged one is
    refused naming the file, the rule, the value and the fix: which first stage those folds learnt from is unknown
    (it had crashed with a bare JSONDecodeError or TypeError)."""
    fix = (
        "put back the previous_stage.json automed wrote (a backup), or train the cascade into a new --output "
        f"({trained} needs a known first stage)"
    )
    try:
        old = json.loads(before)
    except ValueError as exc:  # not JSON (UnicodeDecodeError included)
        raise ArtifactError.single(
            path, "previous_stage.json must be valid JSON", str(exc)[:120], fix
        ) from exc
    if not (fits(dict[str, Any], old) and fits(str, old.get("workdir"))):
        rule = "previous_stage.json must be an object naming the first stage's workdir (text)"
        raise ArtifactError.single(path, rule, shown(old), fix)
    result: dict[str, Any] = old
    return result


def check_one_kind(wd: Path, config: TrainConfig, only_folds: list[int] | None) -> None:
    """A work dir holds a cross-validation or an all-data model, never both (its CV files would describe the other)."""
    root = wd / "train" / config.configuration
    names = (
        {p.name for p in root.glob("fold_*") if any(p.glob("checkpoint_*.pt"))} if root.is_dir() else set()
    )
    asked_all = only_folds == [ALL_DATA]
    if (asked_all and names - {"fold_all"}) or (not asked_all and "fold_all" in names):
        raise ArtifactError.single(
            root,
            "a work dir holds a cross-validation or an all-data model (--folds all), not both",
            f"{'cross-validation folds' if asked_all else 'an all-data model'} trained here before",
            "train --folds all into a new --output and name this cross-validation with --cv"
            if asked_all
            else "train the cross-validation into a new --output",
        )


def check_existing_folds(wd: Path, plan: Plan, config: TrainConfig, *, open_width: bool = False) -> None:
    """A fresh ``automed train`` into a work dir may reuse finished folds only if the same plan and config made
    them; anything else would mix models. ``open_width``: the budget's width rule has yet to run, so folds of the
    config at a narrower width (a halving of the plan's) pass here and are checked again on the final config."""
    root = wd / "train" / config.configuration
    if not root.is_dir():
        return
    widths: list[TrainConfig] = []
    cfgp = plan.configurations.get(config.configuration)
    if open_width and config.base_features is None and cfgp is not None:
        width = cfgp.network.features_per_stage[0] // 2
        while width >= 1:
            widths.append(config.model_copy(update={"base_features": width}))
            width //= 2
    for folder in sorted(root.glob("fold_*")):
        match = checkpoint_matches(folder, plan, config, widths)
        if match is False:
            raise ArtifactError.single(
                folder,
                "a work dir holds the training of one plan and config",
                "checkpoints of another plan or training config",
                "use a new --output, or delete that training folder",
            )
        if match and not fold_finished(folder):
            raise ArtifactError.single(
                folder,
                "an interrupted training continues only with --resume",
                "an unfinished fold",
                f"run `automed train --resume {wd}`",
            )
