"""Register what selection chose when it is several trainings (a pair): one bundle with every member's fold weights,
their averaging and the selection's postprocessing, as a new version of the dataset's registered model (``candidate``,
and ``champion`` when its CV Dice is at least the current champion's, as for single trainings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from automed.artifacts import atomic_directory, write_json_atomic
from automed.evaluate.summary import score as summary_score
from automed.plan.schema import Plan
from automed.registry_model import ENSEMBLE_FILE
from automed.train.config import TrainConfig

BUNDLE_DIR = "model_bundle"


def write_ensemble_bundle(
    workdirs: list[Path], dest: Path, postprocessing: list[dict[str, Any]], score: float
) -> Path:
    """``dest/``: ``ensemble.json`` and ``member_<i>/`` (plan.json, model.json, fold weights) per training."""
    from automed.train.run import write_model_bundle

    with atomic_directory(dest) as tmp:
        members = []
        for i, wd in enumerate(workdirs):
            meta = json.loads((wd / "model.json").read_text())
            # members give probabilities; the pair's own postprocessing (decided on the averaged CV) applies after
            meta = {**meta, "inference": {**meta.get("inference", {}), "postprocessing": []}}
            write_model_bundle(wd, TrainConfig.model_validate(meta["config"]), meta, tmp / f"member_{i}")
            members.append(
                {
                    "folder": f"member_{i}",
                    "workdir": str(wd),
                    "configuration": meta["configuration"],
                    "cv_foreground_dice": meta.get("cv_foreground_dice"),
                }
            )
        write_json_atomic(
            tmp / ENSEMBLE_FILE,
            {
                "schema_version": 1,
                "members": members,
                "combine": "mean of probabilities",
                "postprocessing": postprocessing,
                "cv_foreground_dice": score,
            },
        )
    return dest


def write_choice_bundle(res: dict[str, Any], out: Path) -> Path | None:
    """``OUT/model_bundle`` when selection (``res``, written to ``out``) chose a pair, so that ``automed predict``,
    ``export`` and ``package`` take the selection folder; ``None`` for a single training (its work dir is the model)."""
    members = [Path(m) for m in res["chosen"]["members"]]
    if len(members) < 2:
        return None
    score = summary_score(res["cv_dice_final"]["foreground_mean"])
    return write_ensemble_bundle(members, out / BUNDLE_DIR, res["postprocessing"], score)


def register_members(
    workdirs: list[Path],
    out: Path,
    postprocessing: list[dict[str, Any]],
    score: float,
    tracker: Any,
    run_id: str,
) -> dict[str, Any]:
    """Write ``OUT/model_bundle`` for ``workdirs`` and register it on ``run_id``; the registry entry."""
    from automed.tracking import register_ensemble
    from automed.train.run import model_name_for

    bundle = write_ensemble_bundle(workdirs, out / BUNDLE_DIR, postprocessing, score)
    plan = Plan.load(workdirs[0] / "plan.json")
    return register_ensemble(
        tracker,
        run_id,
        bundle,
        model_name_for(plan.dataset_name),
        score,
        plan.n_channels,
        plan.original_median_spacing,
    )
