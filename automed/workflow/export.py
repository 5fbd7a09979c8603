"""``automed export`` (ONNX/OpenVINO networks proven equal to the trained model, the standalone bundle, the model
card, the link that lets ``automed predict`` run it) and ``automed package`` (an MLCube / MedPerf cube)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from automed.errors import ArtifactError, ConfigError, DatasetError, ProblemsError
from automed.export.export import ExportResult
from automed.package.mlcube import PackageResult
from automed.parallel import progress_bar
from automed.records import read_bundle_meta
from automed.workdir import WorkDir
from automed.workflow.disclosure import redactor_for
from automed.workflow.predict import load_predictor, model_dir, pair_workdirs
from automed.workflow.predict_bundle import fetch_registered
from automed.workflow.predict_output import training_datasets

log = logging.getLogger(__name__)


def export(
    model: str | Path,
    output: str | Path | None = None,
    *,
    formats: str = "onnx,openvino",
    case: str | Path | None = None,
    ov_precision: str = "auto",
    repeats: int = 1,
    tracking_uri: str | None = None,
    overwrite: bool = False,
    keep_case_ids: bool = False,
    link: bool = True,
    show_progress: bool = False,
) -> ExportResult:
    """Export a trained model's fold networks to ONNX / OpenVINO and check parity and latency on a real case.

    ``model`` is a work dir, a ``models:/`` URI or an ``automed select`` folder (its choice: one training, or a pair
    exported as one bundle that averages both). ``output`` defaults to ``MODEL/export`` for a folder.
    ``ov_precision`` ``auto`` is bf16 on CPUs with native bf16 (AVX512-BF16/AMX, the same rule as torch's autocast
    in automed) and f32 elsewhere. Exporting a segmentation folder links the export to it (``export_link.json``),
    so ``automed predict MODEL`` then runs it instead of torch. A failed parity check keeps any earlier export.
    ``output`` is never the model folder, a folder holding it or the sample case, and an existing folder is replaced
    only when it is an earlier export (or, with ``overwrite``, another output automed wrote). The parity case is
    named by its pseudonym (unless ``keep_case_ids``); no local path is written into the export. ``link`` False (``automed package``'s temporary
    export) leaves the work dir's link as it was."""
    case = None if case is None else Path(case).expanduser()  # (--case=~/x reaches us unexpanded)
    if case is not None and not case.exists():  # before anything loads, in the option's own words
        raise ConfigError.single(
            "--case", "the parity case must exist (an image, or the folder of a case's DICOM series)", str(case),
            "check the path, or leave --case out to check parity on a validation case",
        )  # fmt: skip
    from automed.artifacts import (
        atomic_directory,
        claim_output,
        mark_output,
        unmarked_kind,
        write_json_atomic,
    )
    from automed.data.cases import read_case
    from automed.data.dataset import Case
    from automed.export.bundle import readable
    from automed.export.export import THRESHOLDS, first_validation_case, parity_failures, parse_formats
    from automed.export.link import checkpoint_digests, settings_digest, write_link
    from automed.export.mlflow_attach import attach_export
    from automed.infer.ensemble import EnsemblePredictor
    from automed.infer.inputs import check_takes, discover, takes_dimension
    from automed.registry import check_choice
    from automed.tasks.registry import task_for
    from automed.train.device import cpu_has_native_bf16

    fmts = parse_formats(formats)
    check_choice(ov_precision, ["auto", *THRESHOLDS], what="the OpenVINO precision", where="--ov-precision")
    if ov_precision == "auto":
        ov_precision = "bf16" if cpu_has_native_bf16() else "f32"
    is_uri = str(model).startswith("models:/")
    if output is None:
        if is_uri:
            raise ConfigError.single(
                "--output", "exporting a registered model needs an output folder", "none", "pass -o DIR"
            )
        output = Path(model) / "export"
    if is_uri and case is None:  # no dataset comes with it: the check had been skipped without a word
        raise ConfigError.single(
            "--case", "a registered model's export is checked against torch on a real case (parity and latency)",
            "no --case", "pass --case IMAGE (or a case's folder), an input of the kind the model was trained on",
        )  # fmt: skip
    given = Path(model)
    if not is_uri:
        model = model_dir(given)
    out = Path(output)
    earlier = unmarked_kind(out) == "export"  # exports before the marker
    # the folder as given (a selection), the training it chose, a chosen pair's members
    protected = (
        []
        if is_uri
        else [given, Path(model), *(pair_workdirs(given) if WorkDir(given).pair.is_file() else [])]
    )
    claim_output(
        out,
        "export",
        protected=protected + ([case] if case else []),
        datasets=training_datasets(protected),  # its validation cases are read there (parity)
        overwrite=overwrite,
        earlier=earlier,
    )
    # a registered model's downloaded bundle is what the export reads (its fold numbers, for predict.py --folds)
    registered = fetch_registered(str(model), tracking_uri) if is_uri else None
    predictor = load_predictor(model, tracking_uri, runtime="torch", registered=registered)
    pair = isinstance(predictor, EnsemblePredictor)
    members = [] if is_uri else (pair_workdirs(Path(model)) if pair else [Path(model)])
    redactor = redactor_for(members, keep_case_ids=keep_case_ids, outputs=[out])
    sample = None
    if case is not None:
        import numpy as np

        found = discover(case, predictor.plan.n_channels, takes_dimension(predictor))
        # what predict and the bundle refuse (a picture for a volume model) is no parity check
        check_takes(found, predictor)
        c = found[0]
        cd = read_case(Case(c.case_id, c.images), c.is_4d)
        if not np.isfinite(cd.channels).all():  # before the export: parity on NaN would blame the model
            raise DatasetError.single(
                c.images[0], "the parity case's voxels must be finite (a NaN input gives NaN outputs in every runtime)",
                f"{int((~np.isfinite(cd.channels)).sum())} NaN/infinite voxel(s)",
                "pass another --case, or replace those voxels (e.g. by the background intensity) in a copy",
            )  # fmt: skip
        sample = (c.case_id, cd.channels, cd.geometry)
    elif (sample := first_validation_case(members[0])) is None:  # (the export had gone on unchecked, its link
        raise ConfigError.single(  # "parity did not pass", and a cube was packaged from it without a word)
            "--case", "an export is checked against torch on a real case (parity and latency)",
            f"no validation case recorded in {members[0]} (its splits.json or train_config.json missing)",
            "pass --case IMAGE (or a case's folder), an input of the kind the model was trained on",
        )  # fmt: skip
    if sample is not None:
        sample = (redactor.case(sample[0]), sample[1], sample[2])
    final = Path(output)
    workdir = None if is_uri else Path(model)
    task = task_for(predictor.plan.task_type, model)
    with atomic_directory(final) as tmp, progress_bar(disable=not show_progress) as bar:
        # a failed export leaves the earlier one (and its link) in place
        shown = bar.add_task("export", total=None)

        def step(what: str) -> None:  # each network's conversion, the bundle, the parity and latency check
            bar.update(shown, description=f"export: {what}", advance=1)

        with _named_by(registered, str(model)):
            res = task.export(
                predictor, registered or model, tmp, fmts, sample, ov_precision=ov_precision, repeats=repeats,
                step=step,
            )  # fmt: skip
        bar.update(shown, description="export", total=bar.tasks[0].completed)
        failed = parity_failures(res.report)
        if (
            failed
        ):  # the report goes to the work dir (automed's folder), never beside -o among the user's files
            kept = final if workdir is None else workdir / f"{final.name}.parity-failed.json"
            if workdir is not None:  # a registered model's has no folder of automed's: said, not written
                write_json_atomic(kept, res.report)
            raise ConfigError.single(
                kept,
                "exported models must match torch within the documented thresholds",
                "; ".join(failed),
                "report this model with that file; predict with the torch model meanwhile (an earlier export, if "
                "any, is unchanged)",
            )
        card = redactor.text(task.model_card(predictor, res.report, workdir))
        (tmp / "MODEL_CARD.md").write_text(card)
        mark_output(tmp, "export")
        readable(tmp)
    res.folder = final
    if workdir is not None:
        (workdir / f"{final.name}.parity-failed.json").unlink(missing_ok=True)  # an earlier failure's report
    if link and workdir is not None and task.links_export:
        res.report["link"] = write_link(workdir, final, res.report)
    try:  # the export is in place: a registry that fails now is reported, not an export that failed
        res.report["registered"] = attach_export(final, res.report, card, str(model), tracking_uri)
    except Exception as exc:  # MLflow raises many types (unreachable store, deleted version)
        # export.json travels (package ships it): the exception's text may hold the store's URL with its
        # password, or a local path; the console (this machine) gets it whole
        res.report["registered"] = {"error": f"{type(exc).__name__} (the export command's console shows it)"}
        log.warning("the export is written but was not attached to the registered model: %s", exc)
    if workdir is not None:  # which weights and settings this export holds (package checks them)
        res.report["checkpoints"] = checkpoint_digests(workdir)
        res.report["settings"] = settings_digest(workdir)
    res.report["case_ids_kept"] = (
        keep_case_ids  # a package ships this export as it is only when asked the same
    )
    # the link names this machine's folder: it stays in the work dir, never in the export
    write_json_atomic(final / "export.json", {k: v for k, v in res.report.items() if k != "link"})
    readable(final)
    return res


@contextmanager
def _named_by(bundle: Path | None, uri: str) -> Iterator[None]:
    """A refusal that names ``bundle`` (a registered model's temporary download) names ``uri``, as it was given."""
    try:
        yield
    except ProblemsError as exc:
        if bundle is None or not any(p.file == str(bundle) for p in exc.problems):
            raise
        named = [replace(p, file=uri) if p.file == str(bundle) else p for p in exc.problems]
        raise type(exc)(named, exc.headline) from exc


def package(
    model: str | Path,
    mlcube: str | Path,
    *,
    export_dir: str | Path | None = None,
    image: str | None = None,
    tracking_uri: str | None = None,
    overwrite: bool = False,
    keep_case_ids: bool = False,
    show_progress: bool = False,
) -> PackageResult:
    """An MLCube / MedPerf cube folder for a trained model: from ``export_dir``, else from the export ``automed
    export`` linked to the work dir while it is still the model's (its weights, parity passed, both runtimes, case
    IDs as asked), else from a new export. ``mlcube`` is never the model or export folder (or one holding them);
    an existing folder is replaced only when it is an earlier cube (or, with ``overwrite``, another output automed
    wrote)."""
    import tempfile

    from automed.artifacts import claim_output, unmarked_kind
    from automed.package.mlcube import write_cube

    if str(model).startswith("models:/") and export_dir is None:  # its export needs a case to check parity on
        raise ConfigError.single(
            "--export", "a registered model's cube ships an export checked against torch on a real case",
            "no --export",
            f"export it first (`automed export {model} -o DIR --case IMAGE`), then pass --export DIR",
        )  # fmt: skip
    linked = None if export_dir is not None else _linked_export(model, keep_case_ids)
    protected = [Path(p) for p in (export_dir, linked) if p is not None]
    if not str(model).startswith("models:/"):
        protected.append(Path(model))
    earlier = unmarked_kind(Path(mlcube)) == "cube"  # cubes written before the marker
    trainings = [] if str(model).startswith("models:/") else _trainings(Path(model))
    claim_output(
        Path(mlcube), "cube", protected=protected, datasets=training_datasets(trainings), overwrite=overwrite,
        earlier=earlier,
    )  # fmt: skip

    if linked is not None:  # shipped as it is, not exported again
        return replace(write_cube(linked, Path(mlcube), read_bundle_meta(linked), image), export=linked)
    if export_dir is None:
        with tempfile.TemporaryDirectory(prefix="automed-export-") as tmp:
            bundle = export(
                model,
                Path(tmp) / "bundle",
                tracking_uri=tracking_uri,
                keep_case_ids=keep_case_ids,
                link=False,
                show_progress=show_progress,
            ).folder
            return write_cube(bundle, Path(mlcube), read_bundle_meta(bundle), image)
    bundle = Path(export_dir)
    if not (bundle / "preprocess.json").is_file():
        raise ArtifactError.single(
            bundle,
            "--export must be a folder written by `automed export`",
            "no preprocess.json",
            "run `automed export MODEL -o DIR`",
        )
    _check_export_is_the_models(bundle, model)
    _check_export_has_both_runtimes(bundle)
    return write_cube(bundle, Path(mlcube), read_bundle_meta(bundle), image)


def _trainings(model: Path) -> list[Path]:
    """The training work dirs a model folder stands for: itself, a selection's choice, a chosen pair's members."""
    if not model.is_dir():
        return []
    chosen = model_dir(model)
    return [chosen, *(pair_workdirs(chosen) if WorkDir(chosen).pair.is_file() else [])]


def _linked_export(model: str | Path, keep_case_ids: bool) -> Path | None:
    """The export ``automed export`` linked to the work dir, when a cube may ship it as it is: the model's weights
    and settings (``automed select``'s choice) as they are now, its parity check passed, ONNX and OpenVINO networks,
    and case IDs kept or not as now asked (an export that does not record these is exported again); else None."""
    from automed.export.link import read_export_record, settings_digest, usable_export

    if str(model).startswith("models:/") or not Path(model).is_dir():
        return None
    workdir = model_dir(Path(model))
    folder, _ = usable_export(workdir)
    if folder is None:
        return None
    try:
        record = read_export_record(folder) or {}
    except ArtifactError:  # a damaged record: this export is not shipped, a new one is made
        return None
    both = {"onnx", "openvino"} <= set(record.get("formats") or [])
    same = record.get("settings") == settings_digest(workdir) and record.get("case_ids_kept") is keep_case_ids
    return folder if both and same else None


def _check_export_has_both_runtimes(bundle: Path) -> None:
    """A cube's CPU image runs the OpenVINO networks and its CUDA image the ONNX ones: an export of one format would
    build an image that cannot predict."""
    from automed.export.link import read_export_record

    formats = (read_export_record(bundle) or {}).get("formats")
    missing = [f for f in ("onnx", "openvino") if formats is not None and f not in formats]
    if missing:
        raise ArtifactError.single(
            bundle, "a cube's export holds ONNX (its CUDA image) and OpenVINO (its CPU image) networks",
            f"formats {formats}: no {' or '.join(missing)}",
            "export with both formats (the default: `automed export MODEL -o DIR`), or package without --export",
        )  # fmt: skip


def _check_export_is_the_models(bundle: Path, model: str | Path) -> None:
    """``--export`` must hold the model's own weights (recorded in its ``export.json``); exports written before
    the record are taken with a warning, a registered model's bundle is not checked (no work dir here)."""
    from automed.export.link import checkpoint_digests, read_export_record

    if str(model).startswith("models:/"):
        return
    recorded = (read_export_record(bundle) or {}).get("checkpoints")
    if recorded is None:
        log.warning(
            "%s records no weights (an export of an earlier automed): not checked against %s", bundle, model
        )
        return
    if recorded != checkpoint_digests(model_dir(Path(model))):
        raise ArtifactError.single(
            bundle, "--export holds this model's weights", "another model's export (or older weights)",
            f"run `automed export {model}` (or `automed package {model}` without --export)",
        )  # fmt: skip
