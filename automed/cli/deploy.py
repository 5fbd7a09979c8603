"""Deployment verbs: export (ONNX / OpenVINO with a parity check), package (MLCube), predict, explain."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from automed.cli._common import (
    DeviceOpt,
    KeepCaseIdsOpt,
    ModelArg,
    OverwriteOpt,
    RegistryUriOpt,
    expand_user,
    out,
    progress,
)

app = typer.Typer()


@app.command()
def export(
    model: ModelArg,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", callback=expand_user, help="Export folder (default: WORKDIR/export)."),
    ] = None,
    format: Annotated[
        str, typer.Option("--format", help="Comma-separated: onnx, openvino.")
    ] = "onnx,openvino",
    case: Annotated[
        Path | None, typer.Option(help="Image (or folder) for the parity check (default: a validation case).")
    ] = None,
    ov_precision: Annotated[
        str,
        typer.Option(
            help="OpenVINO runtime precision, checked and timed: auto (bf16 on CPUs with native bf16, else f32), "
            "f32, bf16 or f16."
        ),
    ] = "auto",
    repeats: Annotated[int, typer.Option(min=1, help="Timed predictions per runtime (best is kept).")] = 1,
    tracking_uri: RegistryUriOpt = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Replace a folder automed wrote as another output (an earlier export there is replaced without it; a folder automed did not write never is)."
        ),
    ] = False,
    keep_case_ids: KeepCaseIdsOpt = False,
) -> None:
    """Export fold networks to ONNX / OpenVINO IR; check parity with torch and time each runtime on a real case.

    Exporting a segmentation work dir links the export to it: `automed predict WORKDIR` then runs the export
    (OpenVINO) while its checkpoints are unchanged; a classification/regression export runs through its predict.py.

    Example: automed export work --format onnx,openvino
    """
    from automed import api

    res = api.export(
        model,
        output,
        formats=format,
        case=case,
        ov_precision=ov_precision,
        repeats=repeats,
        tracking_uri=tracking_uri,
        overwrite=overwrite,
        keep_case_ids=keep_case_ids,
        show_progress=progress(),
    )
    rep = res.report
    if "parity" in rep:
        out.print(_parity_table(rep))
    out.print(f"exported to {res.folder} (report: {res.folder / 'export.json'})")
    link = rep.get("link")
    if link is not None:
        out.print(
            "automed predict will use this export"
            if link["parity_passed"]
            else "parity did not pass: automed predict keeps using torch"
        )


@app.command()
def package(
    model: ModelArg,
    mlcube: Annotated[Path, typer.Option("--mlcube", help="Cube folder to write.")],
    export_dir: Annotated[
        Path | None,
        typer.Option(
            "--export",
            help="Reuse a folder written by `automed export` (default: the work dir's own export while it holds the model's weights, else a new export).",
        ),
    ] = None,
    image: Annotated[
        str | None, typer.Option(help="Container image name (default: automed/<dataset>:0.1.0).")
    ] = None,
    tracking_uri: RegistryUriOpt = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Replace a folder automed wrote as another output (an earlier cube there is replaced without it; a folder automed did not write never is)."
        ),
    ] = False,
    keep_case_ids: KeepCaseIdsOpt = False,
) -> None:
    """Package a model as an MLCube + MedPerf container folder (Dockerfiles, entry point, weights, README).

    Example: automed package work --mlcube dist/cube
    """
    from automed import api

    res = api.package(
        model,
        mlcube,
        export_dir=export_dir,
        image=image,
        tracking_uri=tracking_uri,
        overwrite=overwrite,
        keep_case_ids=keep_case_ids,
        show_progress=progress(),
    )
    if res.export is not None:
        out.print(f"from the export {res.export} (still this model's weights; not exported again)")
    out.print(
        f"cube written to {res.folder} (image {res.image}); build with: docker build -t {res.image} {res.folder / 'project'}"
    )


@app.command()
def predict(
    model: Annotated[
        str,
        typer.Argument(
            help="Training work dir, `automed select` folder, or models:/NAME@ALIAS (MLflow registry)."
        ),
    ],
    input_path: Annotated[Path, typer.Option("--input", "-i", help="Folder of images, DICOM folder or CSV.")],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Folder for the label maps (or predictions.csv of a classification or regression model).",
        ),
    ],
    tta: Annotated[
        bool | None, typer.Option(help="Mirror test-time augmentation (default: the model's setting).")
    ] = None,
    save_probabilities: Annotated[bool, typer.Option(help="Also write CASE.npz probabilities.")] = False,
    device: DeviceOpt = None,
    tracking_uri: RegistryUriOpt = None,
    runtime: Annotated[
        str,
        typer.Option(
            help="auto: the work dir's export (from `automed export`; OpenVINO, else onnxruntime) when it is "
            "still the model's, else torch; or torch, openvino, onnx."
        ),
    ] = "auto",
    nan_to: Annotated[
        float | None,
        typer.Option(help="Value for NaN/infinite input voxels (default: refuse such inputs with an error)."),
    ] = None,
    overwrite: OverwriteOpt = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--continue",
            help="Continue an unfinished run into OUTPUT (Ctrl-C, a killed job, an input that failed): predict only "
            "the cases whose outputs are not there yet (same model and settings only); a failed run keeps the "
            "cases it finished.",
        ),
    ] = False,
    review: Annotated[
        bool,
        typer.Option(
            help="Also write OUTPUT/review/: per input a PNG with the contours (3D: three slices through each "
            "label's largest component) and a JSON of the structures (volumes, components, boxes, mean "
            "probabilities), and index.html listing them."
        ),
    ] = False,
    log_review: Annotated[
        bool,
        typer.Option(
            help="With --review: also attach the review pages (input names and pictures) to the model's MLflow "
            "training run, as a child run predict-review."
        ),
    ] = False,
    output_format: Annotated[
        str,
        typer.Option(
            help="nifti, or dicom-seg: for DICOM series inputs also CASE.seg.dcm, a DICOM Segmentation that "
            "references the series, one segment per label named from dataset.json."
        ),
    ] = "nifti",
    mpp: Annotated[
        float | None,
        typer.Option(
            help="Whole slides: the model's resolution in micrometres per pixel (default: the patch miner's "
            "resolution of its training patches)."
        ),
    ] = None,
    slide_mpp: Annotated[
        float | None,
        typer.Option(
            help="Whole slides: the level-0 pixel size in um (overrides their metadata; needed where it lacks one)."
        ),
    ] = None,
    folds: Annotated[
        list[str] | None,
        typer.Option(
            help="Predict with only these folds of a training (work dir, a selection folder's one training, or a "
            "registered model's bundle), nnU-Net's -f: --folds 0,1 or --folds 0 --folds 1; all: the all-data model (default: the model's own "
            "folds, those automed select kept, else all). Each fold predicts with its final weights, the ones CV, "
            "postprocessing and selection measured (no -chk: a fold's checkpoint_best.pt, its best epoch on validation "
            "patches, was never validated on whole cases).",
        ),
    ] = None,
    step_size: Annotated[
        float | None,
        typer.Option(
            help="Segmentation: the sliding window moves by this fraction of the patch, 0 < s <= 1 (nnU-Net's "
            "-step_size; default: the model's own, 0.5 unless automed select chose another); smaller overlaps "
            "more and is slower. A selected pair takes it for each member.",
        ),
    ] = None,
) -> None:
    """Predict label maps in each input's own geometry (CASE_0000.nii.gz ... in, CASE.nii.gz out), or, for a
    classification or regression model, OUT/predictions.csv (SubjectID, prediction, probability_<class>).

    Example: automed predict models:/automed-Hippocampus@champion -i images/ -o predictions/
    """
    from automed import api
    from automed.infer.predict_options import parse_folds

    paths = api.predict(
        model,
        input_path,
        output,
        tta=tta,
        save_probabilities=save_probabilities,
        device=device,
        tracking_uri=tracking_uri,
        show_progress=progress(),
        runtime=runtime,
        on_load=lambda text: out.print(f"predicting with {text}"),
        nan_to=nan_to,
        overwrite=overwrite,
        resume=resume,
        review=review,
        log_review=log_review,
        output_format=output_format,
        mpp=mpp,
        slide_mpp=slide_mpp,
        folds=parse_folds(folds),
        step=step_size,
    )
    if len(paths) == 1 and paths[0].name == "predictions.csv":  # an image-level model: one table row per case
        import csv

        with paths[0].open(newline="") as f:
            n_rows = sum(1 for _ in csv.reader(f)) - 1
        out.print(f"wrote {n_rows} prediction(s) to {paths[0]}")
    else:
        done = (
            f"{output} holds {len(paths)} prediction(s)"
            if resume
            else f"wrote {len(paths)} prediction(s) to {output}"
        )
        out.print(done)
    if review or log_review:
        out.print(f"review: {Path(output) / 'review' / 'index.html'}")


@app.command()
def explain(
    model: Annotated[
        str,
        typer.Argument(
            help="Training work dir, `automed select` folder, or models:/NAME@ALIAS (a registered training)."
        ),
    ],
    input_path: Annotated[Path, typer.Option("--input", "-i", help="Folder of images, DICOM folder or CSV.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", callback=expand_user, help="Folder for the attention maps.")
    ],
    backend: Annotated[
        str,
        typer.Option(
            help="gcam (Grad-CAM), gcampp (Grad-CAM++), gbp (guided backpropagation) or ggcam (guided Grad-CAM)."
        ),
    ] = "gcam",
    layer: Annotated[
        str | None,
        typer.Option(
            help="Network module to explain, e.g. decoder.1 (default: a U-Net's last decoder block, an "
            "image-level network's last encoder stage)."
        ),
    ] = None,
    label: Annotated[
        str | None,
        typer.Option(
            help="Segmentation: the label value or name (default: the first foreground label); classification: "
            "the class as ValueToPredict names it: its name, or its number for integer classes (default: the "
            "predicted class)."
        ),
    ] = None,
    device: DeviceOpt = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Replace earlier maps of the same names in OUT (another --label or --layer), or a folder automed wrote as another output (never one it did not write)."
        ),
    ] = False,
    tracking_uri: RegistryUriOpt = None,
) -> None:
    """Attention maps (medcam) of a model for each input case: CASE_BACKEND.nii.gz in the input's geometry (values
    in [0, 1]) and CASE_BACKEND.png (the slice with the strongest attention over the image).

    Example: automed explain work -i images/ -o maps/ --backend gcam --label 1
    """
    from automed import api

    paths = api.explain(
        model,
        input_path,
        output,
        backend=backend,
        layer=layer,
        label=label,
        device=device,
        overwrite=overwrite,
        show_progress=progress(),
        tracking_uri=tracking_uri,
    )
    out.print(f"wrote {len(paths) // 2} attention map(s) to {output}")


def _parity_table(rep: dict[str, Any]) -> Table:
    """Each runtime against torch: a segmentation export's largest probability difference and Dice, an image-level
    export's largest difference (probabilities, or values in target standard deviations) and same prediction."""
    image_level = any("max_difference" in p for p in rep["parity"].values())
    cols = ("max |d|", "same prediction") if image_level else ("max |dp|", "Dice vs torch")
    t = Table(title=f"parity and latency on {rep['parity_case']}")
    for col in ("runtime", *cols, "seconds"):
        t.add_column(col)
    for name, sec in rep["latency_seconds"].items():
        p = rep["parity"].get(name, {})
        if not p:
            t.add_row(name, "reference" if name == "torch_fp32" else "", "", f"{sec:.2f}")
        elif image_level:
            t.add_row(
                name, f"{p['max_difference']:.2e}", "yes" if p["same_prediction"] else "no", f"{sec:.2f}"
            )
        else:
            t.add_row(name, f"{p['max_abs_prob']:.2e}", f"{p['dice_vs_torch']:.4f}", f"{sec:.2f}")
    return t
