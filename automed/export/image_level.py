"""Export of an image-level model (classification, regression): fold networks to ONNX / OpenVINO, the torch-free
bundle (``predict.py`` writes ``predictions.csv``), a parity check on a real case and a model card.

Parity: the case is predicted end to end (preprocessing, centre fit, folds, flips) by torch in float32 and by each
runtime through the same predictor; classification compares the class probabilities (max |dp| <= 1e-3 in float32,
<= 0.1 in bf16) and the predicted class (must agree); regression compares the value in units of the target's
standard deviation (<= 1e-3 in float32, <= 0.1 in bf16).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automed.artifacts import write_json_atomic
from automed.data.io import Geometry
from automed.export.bundle import (
    OUTPUT_TEXT,
    copy_runtime,
    dicom_input_text,
    folds_text,
    python_needed,
    readable,
    shipped_model,
    write_requirements,
)
from automed.export.card import INTENDED_USE
from automed.export.export import THRESHOLDS as SEGMENTATION_THRESHOLDS
from automed.export.export import ExportResult, quiet
from automed.export.formats import OPSET, OnnxModule, OpenVinoModule, export_onnx, export_openvino
from automed.export.timing import best_of
from automed.infer.image_level import ImagePrediction, ImagePredictor
from automed.preprocess.pipeline import spec_for
from automed.records import read_cv_summary
from automed.workdir import WorkDir

BUNDLE_MODEL = "image_model.ImageBundleModel"  # the runtime class an image-level bundle's predict.py runs
# max |dp| of probabilities, or |dv| / std of regression values: the label maps' thresholds, one table of precisions
THRESHOLDS = {prec: th["max_abs_prob"] for prec, th in SEGMENTATION_THRESHOLDS.items()}


def _with(predictor: ImagePredictor, modules: list[torch.nn.Module]) -> ImagePredictor:
    return ImagePredictor(
        predictor.plan,
        predictor.cfg.name,
        modules,
        device=torch.device("cpu"),
        tta=predictor.tta,
        mirrors=predictor.mirrors,
    )


def _timed(
    pred: ImagePredictor, channels: np.ndarray, geometry: Geometry, repeats: int
) -> tuple[ImagePrediction, float]:
    return best_of(lambda: pred.predict_arrays(channels, geometry), repeats)


def _difference(a: ImagePrediction, b: ImagePrediction, std: float) -> tuple[float, bool]:
    """The largest probability difference and whether the class agrees (classification), or the value difference
    in standard deviations of the target (regression)."""
    if a.probabilities is not None and b.probabilities is not None:
        return float(np.abs(a.probabilities - b.probabilities).max()), a.name == b.name
    assert a.value is not None and b.value is not None
    return abs(a.value - b.value) / std, True


def _runtime_modules(runtime: str, files: list[Path], precision: str) -> list[torch.nn.Module]:
    if runtime == "onnx":
        return [OnnxModule(p) for p in files]
    return [OpenVinoModule(p, precision) for p in files]


def _bundle_prediction(
    folder: Path, channels: np.ndarray, geometry: Geometry, target: Any, repeats: int
) -> tuple[str, ImagePrediction, float]:
    """The written bundle's own model (:func:`shipped_model`) on the parity case: runtime, prediction comparable
    with torch's, seconds (best of ``repeats``, the model loaded before timing)."""
    image, spacing = channels.astype(np.float32), list(geometry.spacing_zyx)
    with shipped_model(folder, BUNDLE_MODEL) as (runtime, model):
        row, best = best_of(lambda: model.predict(image, spacing), repeats)
    if target.kind == "regression":
        return runtime, ImagePrediction(None, None, None, float(row["prediction"])), best
    probs = np.asarray([row[f"probability_{n}"] for n in target.class_names])
    return runtime, ImagePrediction(probs, None, str(row["prediction"]), None), best


def _check(
    predictor: ImagePredictor,
    formats: list[str],
    files: dict[str, list[Path]],
    case: tuple[str, np.ndarray, Geometry],
    ov_precision: str,
    repeats: int,
    folder: Path,
) -> dict[str, Any]:
    cid, channels, geometry = case
    ref_pred = _with(predictor, [m.float().cpu() for m in predictor.models])
    ref, t_ref = _timed(ref_pred, channels, geometry, repeats)
    latency: dict[str, float] = {"torch_fp32": t_ref}
    runs: dict[str, tuple[str, str]] = {}
    if "onnx" in formats:
        runs["onnxruntime"] = ("onnx", "f32")
    if "openvino" in formats:
        runs["openvino_f32"] = ("openvino", "f32")
        if ov_precision != "f32":
            runs[f"openvino_{ov_precision}"] = ("openvino", ov_precision)
    std = predictor.target.std
    parity: dict[str, Any] = {}
    # and the bundle as shipped: its own runtime code, not automed's torch pipeline around the runtime's networks
    shipped, bundled, bundled_s = _bundle_prediction(folder, channels, geometry, predictor.target, repeats)
    runs[f"bundle_{shipped}"] = (shipped, "f32" if shipped == "onnx" else ov_precision)
    for name, (runtime, prec) in runs.items():
        if name == f"bundle_{shipped}":
            res, seconds = bundled, bundled_s
        else:
            res, seconds = _timed(
                _with(predictor, _runtime_modules(runtime, files[runtime], prec)), channels, geometry, 1
            )
        latency[name] = seconds
        diff, same = _difference(res, ref, std)
        ok = diff <= THRESHOLDS[prec] and same
        why = "" if ok else f"difference {diff:.2e} (<= {THRESHOLDS[prec]}), same class: {same}"
        parity[name] = {
            "max_difference": diff,
            "same_prediction": same,
            "precision": prec,
            "passed": ok,
            "why": why,
        }
    return {"parity_case": cid, "parity": parity, "latency_seconds": latency}


def _bundle_meta(
    predictor: ImagePredictor, files: dict[str, list[str]], ov_precision: str, folds: list[int] | None
) -> dict[str, Any]:
    t = predictor.target
    return {
        # the training's fold numbers of the networks, in file order (predict.py --folds); absent when unknown
        **({} if folds is None else {"folds": list(folds)}),
        "schema_version": 1,
        "task": t.kind,
        "dataset": predictor.plan.dataset_name,
        "labels": predictor.plan.labels,
        "configuration": predictor.cfg.name,
        "spec": spec_for(predictor.plan, predictor.cfg).to_json(),
        "inference": {
            "patch": list(predictor.cfg.patch_size),
            "n_classes": predictor.cfg.network.n_classes,
            "tta": predictor.tta,
            "mirrors": predictor.mirrors,
            "openvino_precision": ov_precision,
        },
        "target": {"kind": t.kind, "class_names": t.class_names, "mean": t.mean, "std": t.std},
        "files": files,
    }


def export_image_predictor(
    predictor: ImagePredictor,
    out: Path,
    formats: list[str],
    case: tuple[str, np.ndarray, Geometry] | None,
    *,
    ov_precision: str = "f32",
    repeats: int = 1,
    step: Callable[[str], None] = quiet,
    folds: list[int] | None = None,
) -> ExportResult:
    """Export the fold networks, write the bundle, and check parity and latency on ``case`` (id, channels,
    geometry); ``step`` is told each step as it starts (a progress display); ``folds``: the training's fold numbers
    of its networks, recorded for the bundle's ``--folds``."""
    out.mkdir(parents=True, exist_ok=True)
    net = predictor.cfg.network
    report: dict[str, Any] = {
        "schema_version": 1,
        "task": predictor.target.kind,
        "formats": formats,
        "onnx_opset": OPSET,
        "openvino_precision": ov_precision,
        "patch": list(predictor.cfg.patch_size),
        "tta": predictor.tta,
        "mirrors": predictor.mirrors,
        "thresholds": THRESHOLDS,
        "export_seconds": {},
    }
    onnx_files, ov_files = [], []
    for k, model in enumerate(predictor.models):
        step(f"ONNX fold {k}")
        path = out / "networks" / "onnx" / f"fold_{k}.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        report["export_seconds"][f"onnx_fold_{k}"] = export_onnx(
            model.float().cpu(), net.in_channels, list(predictor.cfg.patch_size), net.divisor, path
        )
        onnx_files.append(path)
        if "openvino" in formats:
            step(f"OpenVINO fold {k}")
            xml = out / "networks" / "openvino" / f"fold_{k}.xml"
            xml.parent.mkdir(parents=True, exist_ok=True)
            report["export_seconds"][f"openvino_fold_{k}"] = export_openvino(path, xml)
            ov_files.append(xml)
    paths = {"onnx": onnx_files, "openvino": ov_files}
    files = {r: [str(p.relative_to(out)) for p in paths[r]] for r in formats}
    report["files"] = files
    step("bundle")
    write_image_bundle(predictor, out, files, ov_precision, folds)
    if case is not None:
        step("parity and latency on one case")
        report.update(_check(predictor, formats, paths, case, ov_precision, repeats, out))
    write_json_atomic(out / "export.json", report)
    readable(out)
    return ExportResult(out, report)


def bundle_input_text(n_channels: int, *, pictures: bool = False) -> str:
    """The bundle README's sentences on its input, for a model of ``n_channels`` channels (``pictures``: on 2D
    pictures, every DICOM file a case)."""
    if n_channels == 1:
        return "Input: a folder of images, one file per case, one image, or DICOM. " + dicom_input_text(
            pictures=pictures
        )
    return (
        f"Input: a folder of images with the {n_channels} channels of a case as `CASE_0000`, `CASE_0001`, ... (or "
        f"one file holding all {n_channels}, such as an RGB picture), or one image."
    )


def write_image_bundle(
    predictor: ImagePredictor,
    out: Path,
    files: dict[str, list[str]],
    ov_precision: str,
    folds: list[int] | None = None,
) -> None:
    """``out`` runnable without torch or automed: ``predict.py`` + ``runtime/``, ``preprocess.json``,
    requirements, README."""
    copy_runtime(out)
    meta = _bundle_meta(predictor, files, ov_precision, folds)
    write_json_atomic(out / "preprocess.json", meta)
    write_requirements(out, files)
    t = predictor.target
    columns = (
        "`prediction` (the value)"
        if t.kind == "regression"
        else (
            "`prediction` (the class: " + ", ".join(t.class_names) + ") and `probability_<class>` per class "
            "(with `truth` first when INPUT_DIR is a folder per class, `INPUT_DIR/<class>/<images>`: each image's "
            "folder, empty for a folder that is not one of these classes)"
        )
    )
    (out / "README.md").write_text(
        f"""# automed {t.kind} model: {predictor.plan.dataset_name} ({predictor.cfg.name})

Runs without torch or automed. Set-up ({python_needed()}): `pip install -r requirements-onnx.txt` (or
`requirements-openvino.txt`). Then

    python predict.py -i INPUT_DIR -o OUTPUT_DIR [--runtime onnx|openvino] [--no-tta] [--threads N]

{OUTPUT_TEXT} {bundle_input_text(predictor.plan.n_channels, pictures=len(predictor.cfg.patch_size) == 2)} Output: `OUTPUT_DIR/predictions.csv` with `SubjectID`, {columns}, averaged over
{len(predictor.models)} fold network(s){" and mirrored inputs" if predictor.tta else ""}. {folds_text(folds)}

`preprocess.json` holds the preprocessing (transpose, crop, normalization, resampling, input shape
{list(predictor.cfg.patch_size)}) and the target's decoding. `export.json` has the parity check against torch.
"""
    )


def image_card(predictor: ImagePredictor, report: dict[str, Any], workdir: Path | None) -> str:
    """MODEL_CARD.md of an image-level model: data, plan, cross-validation, export checks, intended use."""
    plan, cfg, t = predictor.plan, predictor.cfg, predictor.target
    lines = [f"# {plan.dataset_name}: automed {t.kind} model ({cfg.name})", "", "## Data", ""]
    if t.kind == "classification":
        counts = ", ".join(f"{n}: {c}" for n, c in zip(t.class_names, t.class_counts, strict=True))
        lines.append(f"- classes (training cases): {counts}")
    else:
        lines.append(f"- target: mean {t.mean:.4g}, standard deviation {t.std:.4g} over the training cases")
    lines += [f"- loss: {t.reasons.get('loss', t.loss)}", "", "## Plan", ""]
    lines += [
        f"- input: spacing {cfg.spacing}, shape {list(cfg.patch_size)} (the whole image), batch {cfg.batch_size}",
        f"- network: the plan's encoder ({cfg.network.n_stages} stages, features {cfg.network.features_per_stage}) "
        "with global average pooling and a linear head",
        "",
    ]
    summary = WorkDir(workdir).cv_summary if workdir is not None else None
    if summary is not None and summary.is_file():
        cv = read_cv_summary(summary)
        keys = [k for k, v in cv.items() if isinstance(v, int | float) and k != "schema_version"]
        shown = [f"- {k.replace('_', ' ')}: {_number(k, cv[k])}" for k in keys]
        lines += ["## Cross-validation", "", *shown, ""]
    if report.get("parity"):
        lines += ["## Export checks", ""]
        for name, r in report["parity"].items():
            lines.append(
                f"- {name}: difference {r['max_difference']:.2e}, {'passed' if r['passed'] else 'FAILED'}"
            )
        lines.append("")
    return "\n".join(lines + INTENDED_USE) + "\n"


def _number(key: str, v: float) -> str:
    """A count as a count (``n cases: 16``), a score to four decimals."""
    return str(int(v)) if key.startswith("n_") else f"{v:.4f}"
