"""``automed export MODEL --format onnx,openvino``: fold networks to ONNX / OpenVINO, proven equal on a real case.

Output folder (a standalone bundle, see :mod:`automed.export.bundle`): ``networks/onnx/fold_<k>.onnx``,
``networks/openvino/fold_<k>.xml|.bin`` (a pair chosen by selection: ``networks/member_<i>/...`` per training),
``predict.py`` + ``runtime/``, ``preprocess.json``, ``requirements-*.txt``, ``README.md``, ``export.json`` (formats,
opset, precision, parity and latency reports). Parity: one real case is predicted end to end (preprocessing, sliding
window, fold and pair averaging, TTA, mapping back) by torch in float32 and by each runtime through the same code,
and by the written bundle's own code (``bundle_<runtime>``: its ``runtime/`` copy with its ``preprocess.json``,
on the runtime its ``predict.py`` would choose here, on the same arrays; its image reader is tested separately);
the report gives the largest absolute difference of class probabilities and the Dice between the two label maps.
Thresholds (enforced by :func:`automed.api.export`, which then keeps the earlier export): float32 runtimes max |dp| <= 1e-3 and Dice >= 0.999; OpenVINO bf16 (and f16) max |dp| <= 0.1
and Dice >= 0.98 (bf16 keeps 8 bits of mantissa). Latency: full prediction of that case with each runtime, best of
``repeats``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automed.artifacts import write_json_atomic
from automed.data.io import Geometry
from automed.errors import ArtifactError, ConfigError
from automed.export.bundle import all_files, readable, shipped_model, write_bundle
from automed.export.card import tta_words
from automed.export.formats import OPSET, OnnxModule, OpenVinoModule, export_onnx, export_openvino
from automed.export.timing import best_of
from automed.infer.ensemble import EnsemblePredictor
from automed.infer.prediction import Prediction
from automed.infer.predictor import Predictor
from automed.parallel import process_pool
from automed.records import read_train_config
from automed.workdir import WorkDir

FORMATS = ("onnx", "openvino")
BUNDLE_MODEL = "model.BundleModel"  # the runtime class a label-map bundle's predict.py runs
THRESHOLDS = {
    "f32": {"max_abs_prob": 1e-3, "min_dice": 0.999},
    "bf16": {"max_abs_prob": 0.1, "min_dice": 0.98},
    "f16": {"max_abs_prob": 0.1, "min_dice": 0.98},  # reduced precision: held to bf16's thresholds
}


@dataclass
class ExportResult:
    folder: Path
    report: dict[str, Any]


def parse_formats(text: str) -> list[str]:
    formats = [f.strip() for f in text.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        from automed.registry import did_you_mean

        raise ConfigError.single(
            "--format",
            f"formats are a comma-separated subset of {list(FORMATS)}",
            text,
            f"e.g. --format onnx,openvino.{did_you_mean(bad[0], FORMATS) if bad else ''}",
        )
    return formats


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Dice over the foreground labels present in either map (1.0 when both are empty)."""
    labels = [v for v in np.union1d(np.unique(a), np.unique(b)) if v != 0]
    if not labels:
        return 1.0
    scores = [2 * np.sum((a == v) & (b == v)) / (np.sum(a == v) + np.sum(b == v)) for v in labels]
    return float(np.mean(scores))


def parts(predictor: Any) -> list[Predictor]:
    """The trainings a predictor holds: itself, or the members of a pair (:class:`EnsemblePredictor`)."""
    return list(predictor.members) if isinstance(predictor, EnsemblePredictor) else [predictor]


def _runtime_predictor(base: Predictor, modules: list[torch.nn.Module]) -> Predictor:
    return Predictor(
        base.plan,
        base.configuration,
        modules,
        device=torch.device("cpu"),
        amp=False,
        step=base.step,
        tta=base.tta,
        mirrors=base.mirrors,
        patch=base.patch,
        postprocessing=base.postprocessing,
    )


def with_modules(predictor: Any, modules: list[list[torch.nn.Module]]) -> Any:
    """``predictor`` with every training's fold networks replaced (one list per member), in float32 on the CPU."""
    if isinstance(predictor, EnsemblePredictor):
        members = [_runtime_predictor(p, m) for p, m in zip(predictor.members, modules, strict=True)]
        return EnsemblePredictor(members, predictor.postprocessing)
    return _runtime_predictor(predictor, modules[0])


def _timed(
    pred: Predictor | EnsemblePredictor, channels: np.ndarray, geometry: Geometry, repeats: int
) -> tuple[Any, float]:
    return best_of(lambda: pred.predict_arrays(channels, geometry, probabilities=True), repeats)


def quiet(what: str) -> None:
    """A step of an export, not shown (the default of ``step``)."""


def _export_networks(
    predictor: Predictor,
    folder: Path,
    formats: list[str],
    report: dict[str, Any],
    tag: str,
    step: Callable[[str], None] = quiet,
) -> tuple[list[Path], list[Path]]:
    """One training's fold networks to ``folder/onnx`` (and ``folder/openvino``); their paths."""
    net = predictor.cfg.network
    onnx_files, ov_files = [], []
    for k, model in enumerate(predictor.models):
        step(f"{tag}ONNX fold {k}")
        path = folder / "onnx" / f"fold_{k}.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        report["export_seconds"][f"{tag}onnx_fold_{k}"] = export_onnx(
            model.float().cpu(), net.in_channels, predictor.patch, net.divisor, path
        )
        onnx_files.append(path)
    if "openvino" in formats:
        for k, path in enumerate(onnx_files):
            step(f"{tag}OpenVINO fold {k}")
            xml = folder / "openvino" / f"fold_{k}.xml"
            xml.parent.mkdir(parents=True, exist_ok=True)
            report["export_seconds"][f"{tag}openvino_fold_{k}"] = export_openvino(path, xml)
            ov_files.append(xml)
    return onnx_files, ov_files


def export_predictor(
    predictor: Predictor | EnsemblePredictor,
    out: Path,
    formats: list[str],
    case: tuple[str, np.ndarray, Geometry] | None,
    *,
    ov_precision: str = "f32",
    repeats: int = 1,
    threads: int | None = None,
    step: Callable[[str], None] = quiet,
    folds: list[list[int]] | None = None,
) -> ExportResult:
    """Export ``predictor``'s fold networks (every member's, for a pair), then check parity and time them on
    ``case`` (id, channels, geometry); ``step`` is told each step as it starts (a progress display); ``folds``: each
    training's fold numbers of its networks, recorded for the bundle's ``--folds`` (:mod:`automed.export.link`)."""
    members = parts(predictor)
    cascade = [m.configuration for m in members if m.previous is not None]
    if cascade:
        raise ArtifactError.single(
            cascade[0],
            "an export runs one configuration's networks; a cascade chains two (3d_lowres, then this one)",
            "a cascade model",
            "predict with `automed predict MODEL` (torch runs both stages), or export a 3d_fullres training",
        )
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "schema_version": 1,
        "formats": formats,
        "onnx_opset": OPSET,
        "openvino_weights": "FP32",
        "openvino_precision": ov_precision,
        "members": len(members),
        "patch": [p.patch for p in members] if len(members) > 1 else members[0].patch,
        "tta": members[0].tta,
        "mirrors": members[0].mirrors,
        "step": members[0].step,
        "thresholds": THRESHOLDS,
        "files": {},
        "export_seconds": {},
    }
    onnx_files: list[list[Path]] = []
    ov_files: list[list[Path]] = []
    member_files: list[dict[str, list[str]]] = []
    for i, p in enumerate(members):
        # networks/..., not ./onnx: it would shadow the package; a pair's members under networks/member_<i>/
        folder = out / "networks" if len(members) == 1 else out / "networks" / f"member_{i}"
        tag = "" if len(members) == 1 else f"member_{i}_"
        onnx_i, ov_i = _export_networks(p, folder, formats, report, tag, step)
        onnx_files.append(onnx_i)
        ov_files.append(ov_i)
        files = {"onnx": [str(f.relative_to(out)) for f in onnx_i]}
        if ov_i:
            files["openvino"] = [str(f.relative_to(out)) for f in ov_i]
        if "onnx" not in formats:  # ONNX was only the way to OpenVINO
            files.pop("onnx")
        member_files.append(files)
    report["files"] = all_files(member_files)
    step("bundle")
    write_bundle(predictor, out, member_files, ov_precision, folds)
    if case is not None:
        step("parity and latency on one case")
        report.update(
            _check(predictor, formats, onnx_files, ov_files, case, ov_precision, repeats, threads, out)
        )
    write_json_atomic(out / "export.json", report)
    readable(out)
    return ExportResult(out, report)


def parity_failures(report: dict[str, Any]) -> list[str]:
    """``runtime: why`` for every runtime whose parity check failed (see the thresholds above)."""
    return [f"{name}: {r['why']}" for name, r in report.get("parity", {}).items() if not r["passed"]]


def _runtime_prediction(
    predictor: Predictor | EnsemblePredictor,
    runtime: str,
    files: list[list[Path]],
    precision: str,
    threads: int | None,
    channels: np.ndarray,
    geometry: Geometry,
    repeats: int,
) -> tuple[Any, float]:
    modules: list[list[torch.nn.Module]] = [
        [OnnxModule(p, threads) for p in member]
        if runtime == "onnx"
        else [OpenVinoModule(p, precision, threads) for p in member]
        for member in files
    ]
    return _timed(with_modules(predictor, modules), channels, geometry, repeats)


def _bundle_prediction(
    folder: Path, threads: int | None, channels: np.ndarray, spacing_zyx: list[float], repeats: int
) -> tuple[str, Prediction, float]:
    """The written bundle's own model (:func:`shipped_model`) on the parity case: runtime, prediction, seconds
    (best of ``repeats``, the model loaded before timing like the other rows)."""
    image = channels.astype(np.float32)
    with shipped_model(folder, BUNDLE_MODEL, threads) as (runtime, model):
        out, seconds = best_of(lambda: model.predict(image, spacing_zyx, probabilities=True), repeats)
    return runtime, Prediction(*out), seconds


def _child() -> ProcessPoolExecutor:
    """One fresh process for every runtime's prediction (started once per export: a spawn costs seconds of
    imports). OpenVINO's CPU plugin swaps the thread's signal stack and later restores one it freed; a process that
    has a Python signal handler (torch's DataLoader installs one for SIGCHLD) then dies on the next such signal.
    Keeping the runtimes out of the caller's process avoids that."""
    return process_pool(1, "spawn")


def _check(
    predictor: Predictor | EnsemblePredictor,
    formats: list[str],
    onnx_files: list[list[Path]],
    ov_files: list[list[Path]],
    case: tuple[str, np.ndarray, Geometry],
    ov_precision: str,
    repeats: int,
    threads: int | None,
    folder: Path,
) -> dict[str, Any]:
    cid, channels, geometry = case
    ref_pred = with_modules(predictor, [[m.float().cpu() for m in p.models] for p in parts(predictor)])
    ref, t_ref32 = _timed(ref_pred, channels, geometry, repeats)
    default, t_default = _timed(
        predictor, channels, geometry, repeats
    )  # automed's own default (amp where native)
    latency: dict[str, float] = {"torch_fp32": t_ref32, "torch_default": t_default}
    runs: dict[str, tuple[str, list[list[Path]], str]] = {}
    if "onnx" in formats:
        runs["onnxruntime"] = ("onnx", onnx_files, "f32")
    if "openvino" in formats:
        runs["openvino_f32"] = ("openvino", ov_files, "f32")
        if ov_precision != "f32":
            runs[f"openvino_{ov_precision}"] = ("openvino", ov_files, ov_precision)
    parity: dict[str, Any] = {}
    # and the bundle as shipped: its own runtime code, not automed's torch pipeline around the runtime's networks
    with _child() as child:
        outputs = {
            name: child.submit(
                _runtime_prediction, predictor, runtime, files, prec, threads, channels, geometry, repeats
            )
            for name, (runtime, files, prec) in runs.items()
        }
        shipped = child.submit(
            _bundle_prediction, folder, threads, channels, list(geometry.spacing_zyx), repeats
        )
        done = {name: out.result() for name, out in outputs.items()}
        runtime, bundled, seconds = shipped.result()
        done[f"bundle_{runtime}"] = (bundled, seconds)
    runs[f"bundle_{runtime}"] = (runtime, [], "f32" if runtime == "onnx" else ov_precision)
    for name, (_, _, prec) in runs.items():
        res, seconds = done[name]
        latency[name] = seconds
        diff = float(np.abs(res.probabilities - ref.probabilities).max())
        dice = _dice(res.labels, ref.labels)
        th = THRESHOLDS[prec]
        ok = diff <= th["max_abs_prob"] and dice >= th["min_dice"]
        why = (
            ""
            if ok
            else f"max |dp| {diff:.2e} (<= {th['max_abs_prob']}), Dice {dice:.4f} (>= {th['min_dice']})"
        )
        parity[name] = {
            "max_abs_prob": diff,
            "dice_vs_torch": dice,
            "precision": prec,
            "passed": ok,
            "why": why,
        }
    return {
        "parity_case": cid,
        "parity": parity,
        "latency_seconds": latency,
        "latency_note": f"full-case prediction (preprocessing, {_networks(predictor)}, "
        f"TTA {tta_words(parts(predictor)[0])}, step {parts(predictor)[0].step}), best of {repeats}, "
        f"{threads or torch.get_num_threads()} threads",
        "default_vs_fp32_dice": _dice(default.labels, ref.labels),
    }


def _networks(predictor: Predictor | EnsemblePredictor) -> str:
    members = parts(predictor)
    if len(members) == 1:
        return f"{len(members[0].models)} fold(s)"
    return f"{len(members)} trainings with {'+'.join(str(len(p.models)) for p in members)} folds"


def first_validation_case(workdir: Path) -> tuple[str, np.ndarray, Geometry] | None:
    """A real case to check parity on: fold 0's first validation case of a training work dir."""
    from automed.data.cases import read_case
    from automed.data.dataset import load_dataset
    from automed.data.splits import read_splits

    cfg_file, splits_file = WorkDir(workdir).train_config, WorkDir(workdir).splits
    sweep = Path(workdir).parent.parent  # a sweep's trial (SWEEP/trials/KEY) was split by its sweep
    if not splits_file.is_file() and (sweep / "sweep.json").is_file():
        splits_file = sweep / "splits.json"
    if not cfg_file.is_file() or not splits_file.is_file():  # (the export refuses to go on unchecked)
        return None
    cid = read_splits(splits_file)["folds"][0]["val"][0]  # a damaged split: refused before the dataset loads
    where = Path(read_train_config(cfg_file)["dataset"])
    if (
        not where.exists()
    ):  # said as the parity check's need, with the ways on (was "the dataset path must exist")
        raise ArtifactError.single(
            cfg_file,
            "the parity check predicts fold 0's first validation case, read from the training's dataset",
            f"{where} missing (moved or deleted since the training)",
            f"give an image with --case IMAGE, or record the dataset's new place: automed train NEW_PLACE --resume "
            f"{workdir}",
        )
    ds = load_dataset(where)
    case = next((c for c in ds.cases if c.case_id == cid), None)
    if case is None:  # (a StopIteration had escaped)
        raise ArtifactError.single(where, "the parity check predicts fold 0's first validation case",
                                   "the dataset no longer holds it", "give an image with --case IMAGE")  # fmt: skip
    cd = read_case(case, ds.images_are_4d)
    return cid, cd.channels, cd.geometry
