"""``automed explain``: attention maps of a training work dir's fold networks for every input case, computed with
medcam (Grad-CAM, Grad-CAM++, guided backpropagation, guided Grad-CAM; :mod:`automed.interpret.attention`), written
in each input's geometry (``OUT/<case>_<backend>.nii.gz``, float32 in [0, 1]) with a PNG overlay of the slice with
the strongest attention (``OUT/<case>_<backend>.png``).

What a map explains: a classification model's predicted class (or ``label``: a class name or ValueToPredict), a
regression model's output, a segmentation model's class ``label`` (a label value or name; default the first
foreground label) summed over the image. The map of a fold ensemble is the mean of its networks' maps (no test-time
mirroring). A cascade stage's network also gets its first stage's one-hot prediction, as in prediction (a
``gbp`` map then holds the gradient on those channels too). A segmentation image goes through the network whole (padded to the patch at least): memory grows with
the image; a 2D configuration's slices each get their own map, normalized on its own by medcam.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from automed.errors import ArtifactError, ConfigError, DatasetError
from automed.records import read_train_config
from automed.registry import check_choice, did_you_mean

log = logging.getLogger("automed")


@dataclass(frozen=True)
class CaseMap:
    """One case's map in the input's grid ``(z, y, x)`` and what it explains, as the figure's title says it."""

    values: np.ndarray
    explains: str
    # the image's size against the network's input, as automed predict warns it (the model saw part of the image,
    # or a few pixels padded: a pixel spacing other than the training images', most likely)
    note: str | None = None


def explain(
    model: str | Path,
    input_path: str | Path,
    output: str | Path,
    *,
    backend: str = "gcam",
    layer: str | None = None,
    label: str | int | float | None = None,
    device: str | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    tracking_uri: str | None = None,
) -> list[Path]:
    """Attention maps of every case under ``input_path`` (as ``automed predict`` reads it) with a training work dir,
    an ``automed select`` folder that chose one training, or a registered ``models:/NAME@ALIAS`` of one training
    (looked up in ``tracking_uri``): ``OUT/<case>_<backend>.nii.gz`` and ``.png`` per case, returned in that order.

    ``backend``: gcam, gbp, ggcam or gcampp; ``layer``: a module name of the network (default: a U-Net's last
    decoder block, an image-level network's last encoder stage). ``output`` is claimed as predict's output is; maps
    already there under the same names (another ``label`` or ``layer``) are replaced only with ``overwrite``."""
    from automed.artifacts import mark_output, output_kind
    from automed.data.cases import read_case
    from automed.data.dataset import Case
    from automed.data.verify import check_channel_grids
    from automed.infer.inputs import check_takes, discover, takes_dimension
    from automed.interpret.attention import BACKENDS, Explainer, check_layer
    from automed.parallel import progress_bar

    check_choice(backend, BACKENDS, what="the attention backend", where="--backend")
    from automed.workflow.predict import model_dir
    from automed.workflow.predict_bundle import fetch_registered
    from automed.workflow.predict_channels import check_csv_channels
    from automed.workflow.predict_output import claim_model_output, remove_older

    _refuse_slides(input_path)
    registered = str(model).startswith("models:/")
    # a selection folder's chosen work dir too
    model_folders = [] if registered else [Path(model), model_dir(Path(model))]
    out = claim_model_output(output, "explanations", input_path, model_folders, overwrite)
    bundle = fetch_registered(str(model), tracking_uri) if registered else None
    predictor = (
        registered_predictor(str(model), bundle, device)
        if bundle is not None
        else load_torch_predictor(Path(model), device)
    )
    cases = discover(
        input_path, predictor.n_channels, takes_dimension(predictor)
    )  # a 2D model: a case per file
    check_takes(cases, predictor)
    check_channel_grids(c.images for c in cases)
    check_csv_channels(input_path, bundle if bundle is not None else model_dir(Path(model)))
    stems = [f"{c.case_id}_{backend}" for c in cases]
    earlier = [s for s in stems if (out / f"{s}.nii.gz").exists() or (out / f"{s}.png").exists()]
    if earlier and not overwrite:  # maps of another --label or --layer have the same names
        raise ArtifactError.single(
            out,
            "automed explain replaces earlier maps only with --overwrite",
            f"earlier maps {', '.join(earlier[:3])}{' ...' if len(earlier) > 3 else ''}",
            "choose a new folder, or pass --overwrite to replace them",
        )
    channel, explains = explained_target(predictor, label)
    name = check_layer(predictor.models[0], layer)
    explainer = Explainer(predictor.models, backend=backend, layer=name, channel=channel)
    if channel is not None and predictor.cfg.network.dimension == 2:
        log.warning("a 2D configuration's map is normalized per slice: compare attention within a slice only")
    # --overwrite of another kind of automed output replaces it, as the claim said (its files had stayed beside the
    # maps, the folder relabelled): what this run did not write goes once it has finished
    replaces = overwrite and out.is_dir() and output_kind(out) not in (None, "explanations")
    out.mkdir(parents=True, exist_ok=True)
    mark_output(out, "explanations")
    written: list[Path] = []
    with progress_bar(disable=not show_progress) as bar:
        task = bar.add_task("explain", total=len(cases))
        for c in cases:
            cd = read_case(Case(c.case_id, c.images), c.is_4d)
            if not np.isfinite(cd.channels).all():
                raise DatasetError.single(
                    c.images[0],
                    "input voxels must be finite (gradients through NaN are NaN)",
                    f"{int((~np.isfinite(cd.channels)).sum())} NaN/infinite voxel(s)",
                    "fix the image, or replace those voxels (e.g. by the background intensity)",
                )
            cm = case_map(predictor, explainer, cd, channel, explains, label)
            if cm.note:
                log.warning("warning: %s: %s", c.case_id, cm.note)
            if float(cm.values.max()) == 0.0:
                log.warning(
                    "%s: the %s map is empty (no positive attention at layer %s); try another --layer",
                    c.case_id,
                    backend,
                    explainer.layer_text,
                )
            title = f"{c.case_id} | {backend} | layer {explainer.layer_text} | {cm.explains}"
            written += write_case(out, f"{c.case_id}_{backend}", cm.values, cd, title)
            bar.advance(task)
    if replaces:
        remove_older(out, set(written))
    return written


def case_map(
    predictor: Any, explainer: Any, cd: Any, channel: int | None, explains: str, label: Any
) -> CaseMap:
    """One case's map: an image-level model's (``channel`` None) or a segmentation model's class ``channel``."""
    if channel is None:
        return image_level_map(predictor, explainer, cd.channels, cd.geometry, label)
    note = predictor.size_note(cd.channels.shape[1:], cd.geometry.spacing_zyx)
    return CaseMap(segmentation_map(predictor, explainer, cd.channels, cd.geometry), explains, note)


def log_validation_maps(
    wd: Path, tracker: Any, run_id: str, rows: list[dict[str, Any]], backend: str, n_cases: int = 3
) -> int:
    """``explain: true`` in the training config: attention maps of the first ``n_cases`` validation cases, each by
    the fold network that held it out, logged as PNG overlays under ``explain/`` of the training's MLflow run (case
    IDs as pseudonyms; the user asked for these pictures by setting ``explain``). Returns how many were logged."""
    import tempfile

    from automed.data.cases import read_case
    from automed.data.dataset import load_dataset
    from automed.interpret.attention import Explainer, HookWarnings, check_layer
    from automed.interpret.figure import overlay_image, write_overlay
    from automed.train.meta import load_model
    from automed.workdir import WorkDir

    # the training itself, concluding: its own lock is held and its --extend still pending
    predictor = load_torch_predictor(wd, None, finished=False)
    folds = load_model(wd).folds
    channel, explains = explained_target(predictor, None)
    layer = check_layer(predictor.models[0], None)
    ds = load_dataset(read_train_config(WorkDir(wd).train_config)["dataset"])
    cases = {c.case_id: c for c in ds.cases}
    chosen = list(
        dict.fromkeys((str(r["case"]), int(r["fold"])) for r in rows if str(r.get("case")) in cases)
    )
    hooks = (
        HookWarnings()
    )  # one explainer per case (the fold that held it out): torch's hook warnings said once
    with tempfile.TemporaryDirectory(prefix="automed-explain-") as tmp:
        folder = Path(tmp) / "explain"
        folder.mkdir()
        for cid, fold in chosen[:n_cases]:
            explainer = Explainer(
                [predictor.models[folds.index(fold)]],
                backend=backend,
                layer=layer,
                channel=channel,
                hooks=hooks,
            )
            cd = read_case(cases[cid], ds.images_are_4d)  # an MSD dataset's channels: one 4D file
            cm = case_map(predictor, explainer, cd, channel, explains, None)
            shown = tracker.redactor.case(cid)
            title = f"{shown} | fold {fold} | {backend} | layer {explainer.layer_text} | {cm.explains}"
            png = folder / f"{shown}_{backend}.png"
            write_overlay(
                overlay_image(cd.channels),
                cm.values,
                cd.geometry.spacing_zyx,
                title,
                png,
                cd.geometry.direction,
            )
        tracker.log_artifact(run_id, folder)
    return min(n_cases, len(chosen))


def load_torch_predictor(model: Path, device: str | None, *, finished: bool = True) -> Any:
    """The work dir's fold networks with torch: an image-level or a segmentation predictor. ``finished``: refuse a
    work dir another command is writing or with an unfinished ``--extend`` (False: the training itself, concluding)."""
    from automed.plan.schema import Plan
    from automed.tasks.registry import task_for
    from automed.workdir import WorkDir, pair_members, refuse_unfinished
    from automed.workflow.predict import model_dir

    folder = model_dir(model)
    wd = WorkDir(folder)
    if (
        wd.pair.is_file()
    ):  # a selection that chose a pair: two trainings, each with its own networks and layers
        members = [str(m) for m in pair_members(folder)]
        raise ArtifactError.single(
            model,
            "automed explain reads the fold networks of one training",
            f"a selection that chose a pair ({', '.join(Path(m).name for m in members)})",
            "explain each of its trainings: " + "; ".join(f"`automed explain {m} ...`" for m in members),
        )
    if finished:
        refuse_unfinished(folder)
    wd.require_model()
    return task_for(Plan.load(wd.plan).task_type, folder).load_predictor(folder, device)


def registered_predictor(uri: str, bundle: Path, device: str | None) -> Any:
    """The fold networks of a registered model (``models:/NAME@ALIAS`` or ``/VERSION``) from its downloaded
    ``bundle``; a registered pair is refused (two trainings, each with its own layers)."""
    from automed.registry_model import ENSEMBLE_FILE, load_bundle

    if (bundle / ENSEMBLE_FILE).is_file():
        raise ArtifactError.single(
            uri,
            "automed explain reads the fold networks of one training",
            "a registered pair of trainings",
            "explain each of the pair's training work dirs (or the selection folder's members)",
        )
    return load_bundle(bundle, device)


def _refuse_slides(input_path: str | Path) -> None:
    """Whole slides are not tiled by explain: a pyramidal TIFF had been read as a picture of 4 channels ("save the
    picture as RGB"), an .svs as no image at all."""
    from automed.workflow.predict_slide_inputs import found_slides

    if (found := found_slides(Path(input_path))) is not None:
        raise ConfigError.single(
            found[0][0], "automed explain maps images (pictures, volumes), it does not tile whole slides",
            "a whole slide",
            "mine patches from it (`automed patch-miner SLIDE -o P`) and explain some of P/patches/<slide>/, or "
            "predict the slide with `automed predict`",
        )  # fmt: skip


def explained_target(predictor: Any, label: str | int | float | None) -> tuple[int | None, str]:
    """A segmentation model's explained class: its index among the plan's labels and its title text (``label``: a
    label value or name; default the first foreground label). Image-level models: ``(None, "")`` once ``label``
    is known to fit the model (their class can be each case's prediction)."""
    if hasattr(predictor, "target"):
        if label is not None and predictor.target.kind == "regression":
            raise ConfigError.single(
                "--label", "a regression model has one output to explain", repr(label), "leave --label out"
            )
        if label is not None:
            class_index(predictor.target, label)
        return None, ""
    labels = {int(k): v for k, v in predictor.plan.labels.items()}
    values = sorted(labels)
    if label is None:
        value = next((v for v in values if v != 0), values[0])
    else:
        by_name = {n: v for v, n in labels.items()}
        text = str(label)
        found = by_name.get(text, int(text) if text.lstrip("-").isdigit() else None)
        if found not in labels:
            options = [str(v) for v in values] + list(by_name)
            raise ConfigError.single(
                "--label",
                f"a segmentation model explains one of its labels ({', '.join(f'{v} {labels[v]}' for v in values)})",
                repr(label),
                f"pass a label value or name.{did_you_mean(text, options)}",
            )
        assert found is not None
        value = found
    return values.index(value), f"label {value} ({labels[value]})"


def class_index(target: Any, label: str | int | float) -> int:
    """The class index of ``label``: a class name, or for integer classes (``ValueToPredict`` numbers) the number
    in any spelling (``2``, ``2.0``). Classes named by text (CSV names, class folders) hold their sorted position as
    a value, which the user never wrote: a number is no name of theirs and is refused."""
    text = str(label)
    if text in target.class_names:
        return int(target.class_names.index(text))
    numbered = all(n == f"{int(v)}" for n, v in zip(target.class_names, target.class_values, strict=True))
    if numbered:
        try:
            return int(target.index_of(float(text)))
        except ValueError:
            pass
    raise ConfigError.single(
        "--label",
        f"a classification model explains one of its classes ({', '.join(target.class_names)})",
        repr(label),
        f"pass {'a class number' if numbered else 'a class name'}.{did_you_mean(text, list(target.class_names))}",
    )


def image_level_map(
    predictor: Any, explainer: Any, channels: np.ndarray, geometry: Any, label: str | int | float | None
) -> CaseMap:
    """A classification or regression case's map in the input's grid and what it explains."""
    import torch

    from automed.interpret.geometry import back_to_input, image_level_input
    from automed.runtime.image_model import size_notes

    target = predictor.target
    if target.kind == "regression":
        k, explains = 0, f"value {predictor.predict_arrays(channels, geometry).value:.4g} (predicted)"
    elif label is not None:
        k = class_index(target, label)
        explains = f"class {target.class_names[k]} (--label)"
    else:
        pred = predictor.predict_arrays(channels, geometry)
        k = int(target.class_names.index(pred.name))
        explains = f"class {pred.name} (predicted, p={float(pred.probabilities[k]):.2f})"
    patch = list(predictor.cfg.patch_size)
    inp = image_level_input(channels, geometry.spacing_zyx, predictor.spec, patch)
    x = inp.data[:, 0] if len(patch) == 2 else inp.data
    values = explainer(torch.from_numpy(np.ascontiguousarray(x[None])).to(predictor.device), k)
    net_map = values[None] if len(patch) == 2 else values
    own = tuple(inp.shape[-len(patch) :])
    note = size_notes(own, channels.shape[1:], geometry.spacing_zyx, predictor.spec, patch)
    return CaseMap(back_to_input(net_map, inp, predictor.spec), explains, note)


def segmentation_map(predictor: Any, explainer: Any, channels: np.ndarray, geometry: Any) -> np.ndarray:
    """A segmentation case's map in the input's grid: the whole image in one pass (2D: one pass per slice)."""
    import torch

    from automed.interpret.geometry import back_to_input, segmentation_input

    net = predictor.cfg.network
    extra = None
    if (
        getattr(predictor, "previous", None) is not None
    ):  # a cascade stage: its first stage's prediction as input
        from automed.preprocess.pipeline import preprocess_label
        from automed.train.data import with_previous

        first = predictor.previous.predict_arrays(channels, geometry).labels

        def extra(data: np.ndarray, props: dict[str, Any]) -> np.ndarray:
            prev = preprocess_label(first, props, predictor.plan, predictor.cfg, predictor.label_values)
            out: np.ndarray = with_previous(data, prev, net.n_classes)
            return out

    inp = segmentation_input(
        channels, geometry.spacing_zyx, predictor.spec, list(predictor.patch), net.divisor, extra
    )

    def one(x: np.ndarray) -> np.ndarray:
        out: np.ndarray = explainer(torch.from_numpy(np.ascontiguousarray(x[None])).to(predictor.device), 0)
        return out

    if net.dimension == 3:
        return back_to_input(one(inp.data), inp, predictor.spec)
    values = np.stack([one(inp.data[:, z]) for z in range(inp.data.shape[1])])
    return back_to_input(values, inp, predictor.spec)


def write_case(out: Path, stem: str, values: np.ndarray, cd: Any, title: str) -> list[Path]:
    """``OUT/<stem>.nii.gz`` (the map in the case's geometry) and ``OUT/<stem>.png``, each written under a temporary
    name and renamed."""
    from automed.data.io import write_image
    from automed.interpret.figure import overlay_image, write_overlay

    nii, png = out / f"{stem}.nii.gz", out / f"{stem}.png"
    tmp = out / f".{stem}.partial.nii.gz"
    write_image(values.astype(np.float32), cd.geometry, tmp)
    tmp.replace(nii)
    ptmp = out / f".{stem}.partial.png"
    write_overlay(
        overlay_image(cd.channels), values, cd.geometry.spacing_zyx, title, ptmp, cd.geometry.direction
    )
    ptmp.replace(png)
    return [nii, png]
