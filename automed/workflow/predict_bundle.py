"""A registered model's bundle: downloaded once per command (:func:`fetch_registered`, for predict, export and
explain), and with ``automed predict --folds``/``--step-size`` (some of the folds it holds, or another
sliding-window step) built by the bundle's task as :func:`automed.registry_model.load_bundle` builds it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automed.errors import ConfigError
from automed.infer.predict_options import checked_step, chosen_folds, no_window, pair_folds
from automed.records import read_pair
from automed.runtime.options import member_name
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
    """The predictor of the bundle in ``folder`` (downloaded for the model URI ``source``, or a selection folder's
    ``model_bundle``) with ``folds`` among those it holds and ``step`` for its window. A pair's bundle takes them
    for each member (:func:`pair_predictor`); a cascade's is refused ``--folds``: its first stage's folds would have
    to follow."""
    from automed.plan.schema import Plan
    from automed.registry_model import ENSEMBLE_FILE, PREVIOUS, load_bundle
    from automed.tasks.registry import task_for
    from automed.train.meta import read_meta

    if (folder / ENSEMBLE_FILE).is_file():
        return pair_predictor(folder, device, source, folds=folds, step=step)
    if folds is not None and (folder / PREVIOUS).is_dir():
        raise ConfigError.single(
            source,
            "--folds applies to one training's bundle",
            "a cascade (its first stage's folds would have to follow)",
            "predict with the training's work dir instead (the one `automed train -o` wrote), or drop --folds",
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


def pair_predictor(
    folder: Path, device: str | None, source: str, *, folds: list[int] | None, step: float | None
) -> Any:
    """A pair's bundle (``ensemble.json`` and a bundle per member) with the same ``folds`` of each member and
    ``step`` for each member's window, as the exported pair's ``predict.py`` takes them (the members were trained
    on the same splits, so fold k is the same cases' held-out model in each). A fold some member's bundle lacks is
    refused before any weight loads, naming that member, the folds it holds and those every member holds."""
    from automed.tasks.registry import task_for
    from automed.train.meta import read_meta

    ens = read_pair(folder / "ensemble.json")
    places = [folder / m["folder"] for m in ens["members"]]
    metas = [read_meta(WorkDir(p).model) for p in places]
    if folds is not None:  # the exported pair's rule and words, the member at fault named with its folder
        names = [
            member_name(k, m.configuration, p.name)
            for k, (p, m) in enumerate(zip(places, metas, strict=True), 1)
        ]
        pair_folds([(n, m.predict_folds) for n, m in zip(names, metas, strict=True)], folds, places, folder)
    members = [bundle_predictor(p, device, source, folds=folds, step=step) for p in places]
    return task_for(members[0].plan.task_type, source).ensemble_predictor(
        members, ens.get("postprocessing", [])
    )
