"""A registered model's bundle: downloaded once per command (:func:`fetch_registered`, for predict, export and
explain), and with ``automed predict --folds``/``--step-size`` (some of the folds it holds, or another
sliding-window step) built by the bundle's task as :func:`automed.registry_model.load_bundle` builds it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automed.errors import ConfigError
from automed.infer.predict_options import checked_step, chosen_folds, no_window
from automed.workdir import WorkDir, fold_name


def fetch_registered(uri: str, tracking_uri: str | None) -> Path:
    """The bundle folder of the registered model ``uri`` (``models:/NAME@ALIAS`` or ``/VERSION``), downloaded into
    a temporary folder removed when the command ends."""
    import atexit
    import shutil
    import tempfile

    from automed.model_store import download_model

    tmp = Path(tempfile.mkdtemp(prefix="automed-model-"))
    atexit.register(shutil.rmtree, tmp, True)  # the downloaded copy goes when the command ends
    return download_model(uri, tmp, tracking_uri)


def bundle_predictor(
    folder: Path, device: str | None, source: str, *, folds: list[int] | None, step: float | None
) -> Any:
    """The predictor of the bundle in ``folder`` (downloaded for the model URI ``source``) with ``folds`` among
    those it holds and ``step`` for its window. A pair's bundle and, for ``--folds``, a cascade's are refused: their
    members' or first stage's folds would have to follow."""
    from automed.plan.schema import Plan
    from automed.registry_model import ENSEMBLE_FILE, PREVIOUS, load_bundle
    from automed.tasks.registry import task_for
    from automed.train.meta import read_meta

    kind = (
        "a pair of trainings"
        if (folder / ENSEMBLE_FILE).is_file()
        else "a cascade (its first stage's folds would have to follow)"
        if folds is not None and (folder / PREVIOUS).is_dir()
        else None
    )
    if kind is not None:
        given = "--folds" if folds is not None else "--step-size"
        raise ConfigError.single(
            source,
            f"{given} on a registered model applies to one training's bundle",
            f"{kind}",
            f"predict with the training's work dir instead (the one `automed train -o` wrote), or drop {given}",
        )
    meta = read_meta(WorkDir(folder).model)
    plan = Plan.load(folder / "plan.json")
    task = task_for(plan.task_type, source)
    if task.image_level:
        no_window(step, source)
    checked_step(step, source)
    held = meta.predict_folds  # a bundle holds the weights of the folds it predicts with, no others
    chosen = chosen_folds(folds, held, held, source)
    if step is not None:
        meta = meta.model_copy(update={"inference": meta.inference.model_copy(update={"step": step})})
    previous = load_bundle(folder / PREVIOUS, device) if (folder / PREVIOUS).is_dir() else None
    weights = [folder / f"{fold_name(f)}.pt" for f in chosen]
    return task.bundle_predictor(plan, meta, weights, device, previous)
