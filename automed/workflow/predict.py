"""``automed predict``: label maps in each input's geometry from a training work dir (its linked export when
usable, else torch), an ``automed select`` folder (its choice) or a registered model URI."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from automed.artifacts import OUTPUT_MARKER
from automed.errors import ArtifactError, ConfigError, DatasetError
from automed.infer.predict_options import checked_step, run_overrides
from automed.records import read_chosen
from automed.registry import check_choice
from automed.train.meta import load_model, model_task, read_choice
from automed.workdir import WorkDir, chosen_members, pair_members, recorded_place, refuse_unfinished
from automed.workflow.predict_bundle import fetch_registered
from automed.workflow.predict_channels import check_csv_channels
from automed.workflow.predict_continue import (
    RECORD,
    case_files,
    check_record,
    input_stamps,
    keep_finished,
    refuse_unless_continuable,
    registered_version,
    remove_partial,
    run_settings,
    write_record,
)
from automed.workflow.predict_output import claim_model_output, clear_killed_run, into_output, remove_older
from automed.workflow.predict_truth import folder_truth
from automed.workflow.predict_writers import (
    DicomSegWriter,
    LabelMapWriter,
    ReviewWriter,
    TableWriter,
    label_values,
)

RUNTIMES = ("auto", "torch", "openvino", "onnx")
OUTPUT_FORMATS = ("nifti", "dicom-seg")


def model_dir(folder: Path) -> Path:
    """The folder that holds the model: ``folder`` itself, or, for an ``automed select`` folder that chose one
    training, that training's work dir (a chosen pair lives in the selection folder's ``model_bundle``)."""

    wd = WorkDir(folder)
    sel = wd.selection
    if wd.model.is_file() or not sel.is_file():
        return folder
    # selection.json decides: a pair's bundle left by an earlier selection into this folder is not its choice
    members = [str(m) for m in chosen_members(folder, read_chosen(sel))]
    if len(members) > 1 and wd.pair.is_file():
        return folder
    if len(members) > 1:
        raise ArtifactError.single(
            wd.pair,
            "a selection that chose a pair predicts with the pair's bundle",
            "missing (selections made before pairs got a bundle lack it)",
            f"run `automed select {' '.join(members)} -o {folder}` again",
        )
    by = _deciding_selection(Path(members[0]))
    # a later select of that training (into a folder still there) chose other settings; a moved selection is fine
    if by and by != folder.expanduser().resolve() and (by / "selection.json").is_file():
        raise ArtifactError.single(
            folder,
            "a selection folder predicts with the settings it chose",
            f"{Path(members[0]).name}'s inference settings were chosen since by another selection ({Path(by).name})",
            f"predict with {Path(by).name} (or the work dir itself), or run `automed select {members[0]} -o {folder}` "
            "again",
        )
    return Path(members[0])


def _deciding_selection(workdir: Path) -> Path | None:
    """The selection folder whose choice is in force for ``workdir`` (its ``inference.json``), where it is now: moved
    or copied with the work dir, or where it was; ``None``: no choice."""
    chosen = WorkDir(workdir).choice
    if not chosen.is_file():
        return None
    choice = read_choice(chosen)  # a damaged one is refused naming the file, the rule, the value and the fix
    return recorded_place(workdir, choice.selection, choice.relative) if choice.selection else None


def pair_workdirs(folder: Path) -> list[Path]:
    """The members' work dirs of a pair an ``automed select`` folder registered."""

    return pair_members(folder)


def exported_predictor(
    model: str | Path,
    runtime: str,
    device: str | None,
    *,
    folds: list[int] | None = None,
    step: float | None = None,
) -> tuple[Any, str]:
    """The work dir's linked export as a predictor when ``runtime`` allows it (with ``--folds`` among those it
    holds and ``--step-size``); ``(None, why not)`` otherwise."""

    from automed.export.link import usable_export
    from automed.infer.exported import ExportedPredictor

    if str(model).startswith("models:/"):
        return None, "registered models predict with torch"
    if runtime == "auto" and device not in (None, "auto", "cpu"):
        return None, f"--device {device} predicts with torch"
    wd = Path(model)
    folder, why = usable_export(wd)
    if folder is None:
        return None, why
    # the settings in force (automed select's choice applied); a pair's selection folder has none: the export's
    meta = load_model(wd) if WorkDir(wd).model.is_file() else None
    inference = meta.inference.model_dump() if meta is not None else {}
    try:
        pred = ExportedPredictor(
            folder,
            runtime=None if runtime == "auto" else runtime,
            inference=inference,
            folds=folds,
            step=step,
            held=None if meta is None else meta.predict_folds,
        )
    except ArtifactError as exc:  # the export lacks that runtime, or none of its runtimes is installed
        return None, str(exc)
    return pred, f"{pred.runtime} ({why})"


def _refuse_unlinked_task(model: Path, runtime: str) -> None:
    """An image-level export is never linked (``Task.links_export``): its bundle's predict.py runs it."""
    from automed.tasks.registry import TASKS

    meta = WorkDir(model).model
    task = model_task(meta) if meta.is_file() else ""  # a damaged one: read_meta's error
    if task not in TASKS or TASKS.get(task).links_export:
        return
    bundle = model / "export" / "predict.py"
    raise ArtifactError.single(
        model, f"--runtime {runtime} predicts with a linked export; a {task} model's export runs through its bundle",
        f"a {task} model" + ("" if bundle.is_file() else " (no export in its work dir's export/)"),
        f"python {bundle} -i IN -o OUT --runtime {runtime} (an export elsewhere: its -o folder's predict.py; none yet: "
        f"`automed export {model}`), or leave --runtime out: automed predict runs the model with torch",
    )  # fmt: skip


def load_predictor(
    model: str | Path,
    tracking_uri: str | None,
    device: str | None = None,
    runtime: str = "torch",
    *,
    folds: list[int] | None = None,
    step: float | None = None,
    registered: Path | None = None,
) -> Any:
    """A work dir or a ``models:/NAME@ALIAS`` URI as a predictor: the work dir's export for ``runtime`` auto (when
    usable), openvino or onnx; else a torch :class:`~automed.infer.predictor.Predictor`. ``folds`` and ``step``
    (``--folds``, ``--step-size``) change a training's own inference: with torch, or the export's for ``--runtime
    openvino|onnx`` (among the folds it holds); the model's task decides. A pair (a selection folder's or a registered
    one) takes them for each member: the same fold numbers of each. ``registered``: the URI's bundle when the
    caller downloaded it already (:func:`~automed.workflow.predict_bundle.fetch_registered`)."""

    check_choice(runtime, RUNTIMES, what="the runtime", where="--runtime")
    if not str(model).startswith("models:/"):
        model = model_dir(Path(model))
        refuse_unfinished(Path(model))
        if WorkDir(Path(model)).pair.is_file():  # a pair's trainings too
            for member in pair_workdirs(Path(model)):
                refuse_unfinished(member)
    overrides = run_overrides(folds, step)
    if runtime == "auto" and overrides:
        runtime = "torch"  # auto: the training's own folds (any it trained, not only the export's) with torch
    if runtime != "torch":
        exported, why = exported_predictor(model, runtime, device, folds=folds, step=step)
        if exported is not None:
            return exported
        if runtime != "auto":
            _refuse_unlinked_task(Path(str(model)), runtime)
            raise ArtifactError.single(
                model,
                f"--runtime {runtime} predicts with the work dir's export",
                why,
                f"run `automed export {model}` first, or use --runtime torch",
            )
    from automed.plan.schema import Plan
    from automed.registry_model import ENSEMBLE_FILE, load_bundle
    from automed.tasks.registry import task_for
    from automed.workflow.predict_bundle import bundle_predictor

    pair = Path(model) / "model_bundle"  # an `automed select` output that chose a pair
    if (pair / ENSEMBLE_FILE).is_file():
        if overrides:  # the same folds of each member
            return bundle_predictor(pair, device, str(model), folds=folds, step=step)
        return load_bundle(pair, device)
    if str(model).startswith("models:/"):
        bundle = registered or fetch_registered(str(model), tracking_uri)
        if overrides:
            return bundle_predictor(bundle, device, str(model), folds=folds, step=step)
        return load_bundle(bundle, device)
    wd = WorkDir(Path(model))
    wd.require_model()
    task = task_for(Plan.load(wd.plan).task_type, wd.root)
    return task.load_predictor(wd.root, device, folds=folds, step=step)


def predict(
    model: str | Path,
    input_path: str | Path,
    output: str | Path,
    *,
    tta: bool | None = None,
    save_probabilities: bool = False,
    device: str | None = None,
    tracking_uri: str | None = None,
    show_progress: bool = True,
    runtime: str = "auto",
    on_load: Any = None,
    nan_to: float | None = None,
    overwrite: bool = False,
    resume: bool = False,
    review: bool = False,
    log_review: bool = False,
    output_format: str = "nifti",
    mpp: float | None = None,
    slide_mpp: float | None = None,
    folds: list[int] | None = None,
    step: float | None = None,
) -> list[Path]:
    """Predict every case under ``input_path`` with a training work dir, an ``automed select`` folder (its choice)
    or a registered model URI.

    ``runtime`` ``auto``: the work dir's export (OpenVINO, else onnxruntime) when ``automed export`` linked one that
    is still the model's (same checkpoints, parity passed), else torch; ``torch``, ``openvino``, ``onnx`` force one.
    ``on_load(text)`` is told which one runs.

    ``output`` is never the model or the input folder (or one holding them); a folder that is not empty is replaced
    only with ``overwrite`` (what the new run did not write is removed when it has finished, so a killed run leaves
    the earlier predictions); each file is written under a temporary name and renamed. ``resume`` (``--continue``)
    predicts only the cases whose outputs are not in ``output`` yet, when an earlier run of the same model and
    settings wrote them (:mod:`automed.workflow.predict_continue`), and keeps what it finished if it fails. Non-finite input voxels are an error unless ``nan_to`` gives their value. ``review`` adds
    ``OUT/review/``: per input an annotated PNG and a JSON (label maps: the structures found; classification and
    regression: the class and probabilities, or the value), and ``index.html``; ``log_review`` (implies ``review``)
    also attaches it to the model's MLflow training run (:mod:`automed.workflow.review_log`). ``output_format`` ``dicom-seg``
    (segmentation of DICOM series inputs) adds ``<case>.seg.dcm``, a DICOM Segmentation referencing the series.
    Whole slides (a slide, or a folder of them at any depth) go through :mod:`automed.workflow.predict_wsi` at the model's
    ``mpp`` (default: the patch miner's resolution of its training data). ``folds`` (nnU-Net's ``-f``) predicts with
    only those of a training's folds, ``step`` (``-step_size``) moves a segmentation model's sliding window by that
    fraction of the patch instead of its own (0.5 unless ``automed select`` chose another); both run torch."""
    from automed.artifacts import mark_output
    from automed.data.verify import check_channel_grids
    from automed.infer.inputs import check_takes, discover, takes_dimension

    check_choice(output_format, OUTPUT_FORMATS, what="the output format", where="--output-format")
    checked_step(step, model)  # before anything is written; the model's task decides whether it has a window
    review = review or log_review
    if resume:
        refuse_unless_continuable(overwrite, review)
    if log_review:  # before any work: the model must have a training run to attach to
        from automed.workflow.review_log import training_run

        training_run(model, tracking_uri)
    if not Path(input_path).expanduser().exists():  # before a model is read or downloaded
        raise DatasetError.single(
            input_path, "the input must exist", "missing", "pass a folder, a DICOM folder or a CSV"
        )
    model_folders: list[Path] = []
    if not str(model).startswith("models:/"):
        chosen = model_dir(Path(model))
        model_folders = [Path(model), chosen]  # a selection folder's chosen work dir too
        if not WorkDir(chosen).pair.is_file():  # no model here is the first thing to fix, before the output
            WorkDir(chosen).require_model()
    out = claim_model_output(output, "predictions", input_path, model_folders, overwrite)
    clear_killed_run(out)  # a killed slide run's staging and block stores, in a folder claimed as ours
    earlier = out.is_dir() and any(p.name not in (OUTPUT_MARKER, RECORD) for p in out.iterdir())
    if (
        earlier and not overwrite and not resume
    ):  # another model's (or input's) predictions would mix with these
        raise ArtifactError.single(
            out,
            "predict writes into a new or empty folder",
            "earlier predictions",
            "choose a new folder, pass --overwrite to replace them (what the new run does not write is removed "
            "when it has finished), or --continue to predict only the cases an unfinished run left out",
        )
    from automed.workflow.predict_slide_inputs import check_slide_options, found_slides

    found = found_slides(Path(input_path).expanduser().resolve())  # at any depth, each with its output name
    slides, stems = found if found is not None else (None, None)
    check_slide_options(input_path, slides, review=review, output_format=output_format, mpp=mpp,
                        slide_mpp=slide_mpp)  # before the model loads  # fmt: skip
    # a registered model is downloaded once: its bundle holds the channel names a CSV's columns are checked against
    registered = fetch_registered(str(model), tracking_uri) if str(model).startswith("models:/") else None
    predictor = load_predictor(
        model, tracking_uri, device, runtime, folds=folds, step=step, registered=registered
    )
    if on_load is not None:
        kind = getattr(predictor, "runtime", None)
        on_load(f"{kind} export {predictor.folder}" if kind else f"torch on {predictor.device}")
    if tta is not None:  # else the model's own setting (chosen by `automed select` when it ran)
        predictor.tta = tta
    if resume and (slides is not None or hasattr(predictor, "target")):
        raise ConfigError.single(input_path, "--continue takes up label maps of images, case by case",
                                 "whole slides" if slides is not None else "a classification/regression model "
                                 "(one predictions.csv for all cases)", "drop --continue")  # fmt: skip
    if save_probabilities and hasattr(predictor, "target"):  # one table: no CASE.npz to write
        logging.getLogger("automed").warning(
            "--save-probabilities writes label maps' probabilities (CASE.npz); a classification model's are the "
            "probability_<class> columns of predictions.csv, a regression model has none"
        )
    owner = registered if registered is not None else model_dir(Path(model))  # the folder holding the model
    holder = None if registered is not None else owner
    if slides is not None:  # only then the slide-inference stack (tissue masks, pyramids) is imported
        from automed.workflow.predict_wsi import model_mpp, predict_slides

        at_mpp = model_mpp(model, mpp, owner)  # before the output is touched
        names = _label_names(model, predictor)
        return into_output(out, lambda dest: predict_slides(
            predictor, slides, dest, mpp=at_mpp, names=names, slide_mpp=slide_mpp,
            save_probabilities=save_probabilities, show_progress=show_progress, stems=stems))  # fmt: skip
    cases = discover(input_path, predictor.n_channels, takes_dimension(predictor))
    check_takes(cases, predictor)  # before anything is written
    check_channel_grids(c.images for c in cases)  # stacked as they are, they would pair different places
    check_csv_channels(input_path, owner)  # named columns
    version = registered_version(str(model), tracking_uri) if holder is None else None
    settings = run_settings(model, holder, getattr(predictor, "tta", None), save_probabilities, output_format,
                            folds=folds, step=step, version=version)  # fmt: skip
    settings["inputs"] = input_stamps(cases)
    done: list[Path] = []
    if resume:  # the cases whose every file an earlier run of this model and these settings wrote
        finished = {
            c.case_id
            for c in cases
            if all(f.is_file() for f in case_files(out, c, save_probabilities, output_format))
        }
        check_record(out, settings, earlier, sorted(finished))
        if earlier:
            remove_partial(out)
        done = [out / f"{c.case_id}{c.suffix}" for c in cases if c.case_id in finished]
        cases = [c for c in cases if c.case_id not in finished]
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    mark_output(out, "predictions")
    record = out / RECORD  # replacing earlier predictions: recorded once they are replaced
    if not (earlier and overwrite):
        write_record(out, settings)
    else:  # replaced one by one: a failed run leaves a mix that no record describes, which --continue refuses
        record.unlink(missing_ok=True)
    truth = folder_truth(input_path, cases, getattr(predictor, "target", None))  # IN/<class>/<images>
    try:
        written, produced = _predict_cases(predictor, cases, out, model, output_format, review,
                                           save_probabilities, nan_to, show_progress, truth)  # fmt: skip
    except (
        BaseException
    ):  # an earlier run's folder stays as it was; one this run made keeps the cases it finished
        if created and not resume:
            keep_finished(out, cases, save_probabilities, output_format, review)
        raise
    if resume:
        return done + written
    if earlier:  # --overwrite: only now, so a killed run leaves the earlier predictions
        write_record(out, settings)
        remove_older(out, produced | {record})
    if log_review:
        from automed.workflow.review_log import log_review as attach

        attach(model, out / "review", out, tracking_uri)
    return written


def _predict_cases(
    predictor: Any,
    cases: list[Any],
    out: Path,
    model: str | Path,
    output_format: str,
    review: bool,
    save_probabilities: bool,
    nan_to: float | None,
    show_progress: bool,
    truth: dict[str, str] | None = None,
) -> tuple[list[Path], set[Path]]:
    """Predict every case into ``out``; the predictions written and every file this run wrote (review pages,
    probabilities and segmentations too). ``truth``: an image-level table's ``truth`` column."""
    from automed.data.cases import read_case
    from automed.data.dataset import Case
    from automed.parallel import progress_bar

    image_level = hasattr(predictor, "target")
    writer: Any = (
        TableWriter(out, predictor.target, truth)
        if image_level
        else LabelMapWriter(out, label_values(predictor))
    )
    if output_format == "dicom-seg":
        writer = DicomSegWriter(writer, cases, image_level, _label_names(model, predictor))
    reviewer = ReviewWriter(out / "review", predictor) if review else None
    with progress_bar(disable=not show_progress) as bar:
        task = bar.add_task("predict", total=len(cases))
        for c in cases:
            cd = read_case(Case(c.case_id, c.images), c.is_4d)
            channels = _finite(cd.channels, c.images, nan_to)
            wanted = save_probabilities or (reviewer is not None and not image_level)
            res = predictor.predict_arrays(channels, cd.geometry, probabilities=wanted)
            if res.note:  # the network saw only part of the image, or it is a few pixels padded to the input
                logging.getLogger(__name__).warning("warning: %s: %s", c.case_id, res.note)
            if reviewer is not None:
                reviewer.add(c.case_id, channels, cd.geometry, res)
                if not save_probabilities and not image_level:
                    res.probabilities = None
            writer.add(c, cd.geometry, res)
            bar.advance(task)
    if reviewer is not None:
        reviewer.close()
    written: list[Path] = writer.close()
    produced = set(writer.written_files()) | (reviewer.written_files() if reviewer is not None else set())
    return written, produced


def _label_names(model: str | Path, predictor: Any) -> dict[int, str]:
    """Label value -> name from the model's plan (dataset.json's labels); plain numbers when there is no plan."""
    from automed.plan.schema import Plan

    plan = WorkDir(model_dir(Path(model))).plan if not str(model).startswith("models:/") else None
    if plan is not None and plan.is_file():
        return {int(k): v for k, v in Plan.load(plan).labels.items()}
    return {int(v): f"label {v}" for v in getattr(predictor, "label_values", [])}


def _finite(channels: Any, images: tuple[Path, ...], nan_to: float | None) -> Any:
    """``channels`` when every voxel is finite, or with non-finite voxels set to ``nan_to``; else a clear error."""
    from automed.runtime.io import UNUSABLE, unusable_voxels

    bad = unusable_voxels(channels)
    if not bad.any():
        return channels
    if nan_to is None:
        raise DatasetError.single(
            images[0],
            "input voxels must be finite intensities (a model given NaN predicts nothing there, silently)",
            f"{int(bad.sum())} voxel(s) {UNUSABLE}",
            "fix the image, or pass --nan-to VALUE (e.g. the background intensity) to replace them",
        )
    out = channels.copy()
    out[bad] = nan_to
    return out
