"""Container entry point for MLCube and MedPerf (copied into the cube as ``entry.py``; numpy, SimpleITK and
onnxruntime/openvino only, no network access).

- MLCube: ``entry.py infer --data_path=D --parameters_file=P --additional_files=W --output_path=O`` and
  ``entry.py evaluate --predictions=P --labels=L --parameters_file=F --output_path=results.yaml``;
- MedPerf (no arguments): task ``infer`` with ``/mlcommons/volumes/{data, parameters/parameters_file.yaml,
  additional_files, predictions}``.

Inputs are only read; outputs go to the output path (and nothing else is written). ``parameters.yaml`` is a flat
``key: value`` file: ``runtime`` (onnx|openvino), ``tta`` (true|false), ``threads`` (an integer), ``folds`` (fold
numbers, e.g. ``0,1``, or ``all``) and ``step_size`` (0 < S <= 1): the bundle's ``predict.py --folds`` and
``--step-size`` (:mod:`.options`), checked against its ``preprocess.json`` before anything is predicted.
"""

from __future__ import annotations

import json
import os
import re
import sys
import unicodedata
from pathlib import Path
from typing import Any

MEDPERF = {
    "data_path": "data",
    "parameters_file": "parameters/parameters_file.yaml",
    "additional_files": "additional_files",
    "output_path": "predictions",
}  # under /mlcommons/volumes (MLCOMMONS_VOLUMES overrides the root, e.g. for Singularity or a local dry run)


PARAMETERS = "runtime, tta, threads, folds and step_size"


def _folds(value: Any) -> str | None:
    """``folds: 0,1`` (also ``0 1``, ``[0, 1]``, ``1``, ``all``) as ``--folds`` takes it; ``None`` when invalid."""
    parts = [p for p in re.split(r"[\s,]+", str(value).strip().strip("[]")) if p]
    ok = bool(parts) and all(p.isdigit() or p.lower() == "all" for p in parts)
    return ",".join(p.lower() for p in parts) if ok else None


def _step(value: Any) -> float | None:
    """``step_size: 0.5`` as a float in (0, 1]; ``None`` when invalid."""
    if isinstance(value, bool):
        return None
    try:
        step = float(value)
    except (TypeError, ValueError):
        return None
    return step if 0 < step <= 1 else None


def read_parameters(path: Path) -> dict[str, Any]:
    """A flat YAML mapping of scalars (no PyYAML in the image); ``folds`` comes back as ``--folds`` takes it
    (``0,1``), ``step_size`` as a float."""
    out: dict[str, Any] = {}
    if str(path) in ("", "."):
        return out
    if not path.is_file():
        raise SystemExit(
            f"{path}: the parameters file does not exist; pass the cube's workspace/parameters.yaml"
        )
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or ":" not in line:
            continue
        key, value = (s.strip().strip("'\"") for s in line.split(":", 1))
        low = value.lower()
        out[key] = (
            True
            if low == "true"
            else False
            if low == "false"
            else None
            if low in ("", "null", "~")
            else (int(value) if value.lstrip("-").isdigit() else value)
        )
    for key, value in out.items():  # a misspelt key or a bad value would otherwise be ignored silently
        ok = {
            "runtime": value in ("openvino", "onnx", None),
            "tta": isinstance(value, bool),
            "threads": value is None
            or (isinstance(value, int) and not isinstance(value, bool) and value >= 1),
            "folds": value is None or _folds(value) is not None,
            "step_size": value is None or _step(value) is not None,
        }.get(key)
        if ok is None:
            raise SystemExit(f"{path}: unknown parameter {key!r}; the parameters are {PARAMETERS}")
        if not ok:
            raise SystemExit(
                f"{path}: {key}: {value!r} is not valid; runtime is openvino or onnx, tta true or false, threads "
                ">= 1, folds fold numbers of the model (e.g. 0,1) or all, step_size a fraction 0 < S <= 1 (e.g. 0.5)"
            )
    if out.get("folds") is not None:
        out["folds"] = _folds(out["folds"])
    if out.get("step_size") is not None:
        out["step_size"] = _step(out["step_size"])
    return out


def _check_options(params: dict[str, Any], weights: Path, where: Path) -> None:
    """``folds`` and ``step_size`` against the bundle's ``preprocess.json`` (folds it holds, a window to move),
    before anything is predicted, named as the parameters file names them."""
    meta_file = weights / "preprocess.json"
    if (params.get("folds") is None and params.get("step_size") is None) or not meta_file.is_file():
        return  # without preprocess.json the bundle itself says what is missing
    options = _runtime("options")
    meta = json.loads(meta_file.read_text())
    try:
        folds = options.parse_folds(None if params.get("folds") is None else [params["folds"]])
        options.with_folds(meta, folds, meta_file)
        options.checked_step(params.get("step_size"), meta, meta_file)
    except options.OptionError as exc:
        raise SystemExit(
            f"{where}: folds and step_size are the bundle's predict.py --folds and --step-size; {exc} (here: "
            "change or remove folds/step_size in the parameters file)"
        ) from None


def _args(argv: list[str]) -> tuple[str, dict[str, str]]:
    if not argv:
        root = Path(os.environ.get("MLCOMMONS_VOLUMES", "/mlcommons/volumes"))
        return "infer", {k: str(root / v) for k, v in MEDPERF.items()}
    task, opts = argv[0], {}
    for a in argv[1:]:
        if not a.startswith("--") or "=" not in a:
            raise SystemExit(f"arguments are --name=value, got {a!r}")
        k, v = a[2:].split("=", 1)
        opts[k] = v
    return task, opts


def _runtime(module: str) -> Any:
    """A module of the runtime package: the cube's copy (``runtime.``, beside this file) or automed's own."""
    import importlib

    return importlib.import_module(f"{__package__}.{module}" if __package__ else f"runtime.{module}")


def infer(opts: dict[str, str]) -> int:
    main = _runtime("cli").main  # the cube's copy of automed.runtime

    params = read_parameters(Path(opts.get("parameters_file", "")))
    weights = Path(opts.get("additional_files") or Path(__file__).resolve().parent)
    # the output volume is the cube's own: a rerun (mlcube run twice, a MedPerf retry) replaces its predictions
    argv = ["-i", opts["data_path"], "-o", opts["output_path"], "--overwrite"]
    if params.get("runtime"):
        argv += ["--runtime", str(params["runtime"])]
    if params.get("tta") is False:
        argv.append("--no-tta")
    if params.get("threads"):
        argv += ["--threads", str(params["threads"])]
    _check_options(params, weights, Path(opts.get("parameters_file", "")))
    if params.get("folds") is not None:
        argv += ["--folds", str(params["folds"])]
    if params.get("step_size") is not None:
        argv += ["--step-size", str(params["step_size"])]
    if os.environ.get("AUTOMED_DEVICE") == "cuda":
        argv += ["--device", "cuda"]
    return int(main(argv, bundle=weights))


def dice_per_label(pred: Any, ref: Any) -> dict[str, float]:
    """Dice of every foreground label found in the prediction or the reference (background 0 is never scored; a
    label absent from both is undefined there and left out, as in automed's training metrics)."""
    import numpy as np

    scores = {}
    for v in sorted((set(np.unique(pred).tolist()) | set(np.unique(ref).tolist())) - {0}):
        p, r = pred == v, ref == v
        scores[str(int(v))] = 2 * float((p & r).sum()) / float(p.sum() + r.sum())
    return scores


def _table(path: Path) -> dict[str, str]:
    """``SubjectID`` -> the CSV's ``prediction``, ``target`` or ``ValueToPredict`` column."""
    import csv

    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    col = next((c for c in ("prediction", "target", "ValueToPredict") if rows and c in rows[0]), None)
    if col is None or "SubjectID" not in rows[0]:
        raise SystemExit(f"{path}: needs SubjectID and prediction/target/ValueToPredict columns")
    return {r["SubjectID"]: r[col] for r in rows}


def as_class(value: str) -> str:
    """A class as written in either table: ``1``, ``1.0`` and `` 1 `` are the same class (a reference CSV written
    by pandas or a spreadsheet holds floats where the model's table names integer classes); names stay names, in
    one Unicode spelling (composed, NFC: a class folder named on macOS is decomposed, `Ödem` one letter or two)."""
    text = unicodedata.normalize("NFC", value.strip())
    if whole := re.fullmatch(r"([+-]?\d+)(\.0*)?", text):  # exactly, however many digits (codes, not floats)
        return str(int(whole[1]))
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() and abs(number) < 2**53 else text


def evaluate_table(pred_csv: Path, ref: Path, out: Path) -> int:
    """An image-level model's ``predictions.csv`` against a reference CSV (or a folder holding one): accuracy and
    per-class sensitivity for classes, MAE and RMSE for numbers."""
    import numpy as np

    ref_csv = ref if ref.is_file() else next(iter(sorted(ref.glob("*.csv"))), ref / "labels.csv")
    pred, truth = _table(pred_csv), _table(ref_csv)
    import csv

    with pred_csv.open(
        newline=""
    ) as fh:  # a classifier's table: classes, however many (22 had read as values)
        classifier = any(c.startswith("probability_") for c in next(csv.reader(fh), []))
    missing = sorted(set(truth) - set(pred))
    if missing:
        raise SystemExit(f"{pred_csv}: missing predictions for {', '.join(missing[:5])}")
    ids = sorted(truth)
    try:
        t = np.array([float(truth[i]) for i in ids])
        p = np.array([float(pred[i]) for i in ids])
        # values, not classes: a regression model predicts non-integers, or there are many distinct targets
        numeric = not classifier and (
            not (np.all(t == np.round(t)) and np.all(p == np.round(p))) or len(np.unique(t)) > 20
        )
    except ValueError:
        numeric = False
    result: dict[str, Any]
    if numeric:
        result = {
            "mae": float(np.mean(np.abs(p - t))),
            "rmse": float(np.sqrt(np.mean((p - t) ** 2))),
            "n": len(ids),
        }
    else:
        same = [as_class(pred[i]) == as_class(truth[i]) for i in ids]
        classes = sorted({as_class(truth[i]) for i in ids})
        predicted = sorted({as_class(pred[i]) for i in ids})

        def is_number(c: str) -> bool:
            try:
                float(c)
            except ValueError:
                return False
            return True

        # none in common: a regression model's values or another model's classes; unless a test set of one class
        # was predicted as another class of the same kind (a score of 0)
        other_kind = {is_number(c) for c in predicted} != {is_number(c) for c in classes}
        if not set(predicted) & set(classes) and (len(classes) > 1 or other_kind):
            raise SystemExit(
                f"{pred_csv}: the predictions must name the reference's classes; found {', '.join(predicted[:5])} "
                f"against {', '.join(classes[:5])} in {ref_csv} (not one in common); score the predictions of a "
                "model trained on these classes, or a regression model's against a reference of numbers"
            )
        sens = {
            c: float(np.mean([s for i, s in zip(ids, same, strict=True) if as_class(truth[i]) == c]))
            for c in classes
        }
        result = {"accuracy": float(np.mean(same)), "sensitivity": sens, "n": len(ids)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


def _label_map(io: Any, path: Path) -> Any:
    """A label map read as the bundle reads its inputs (``io.read_picture``: ``.MHA``/``.MHD`` in upper case too,
    which ITK's own choice of reader by the lower-case ending could not open); an unreadable one is named."""
    try:
        return io.read_picture(path)
    except RuntimeError as exc:
        raise SystemExit(
            f"{path}: not readable as a label map ({(str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]}); give NIfTI, NRRD or "
            "MHA label maps, or move the file out"
        ) from None


def evaluate(opts: dict[str, str]) -> int:
    """Dice per label between ``predictions`` and ``labels`` (same file names), or an image-level model's
    ``predictions.csv`` against a reference CSV; writes a YAML (JSON) summary: the mean per label and each case's
    Dice under ``case_<n>``, numbered in the order of the reference file names (no case's name leaves the site)."""
    import numpy as np
    import SimpleITK as sitk

    pred_dir, ref_dir, out = Path(opts["predictions"]), Path(opts["labels"]), Path(opts["output_path"])
    if (pred_dir / "predictions.csv").is_file():
        return evaluate_table(pred_dir / "predictions.csv", ref_dir, out)
    io = _runtime("io")
    suffixes = io.SUFFIXES  # label maps only: a dataset.json or notes beside them are no cases
    refs = sorted(
        p
        for p in ref_dir.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(suffixes)
    )
    if not refs:
        raise SystemExit(f"{ref_dir}: no reference label maps (image files) found")
    per_case: dict[str, dict[str, float]] = {}
    for ref in refs:
        pred = pred_dir / ref.name
        if not pred.is_file() and (
            parts := io.split_suffix(ref.name)
        ):  # A.MHA's label map: predict wrote A.mha
            pred = pred_dir / "".join(parts) if (pred_dir / "".join(parts)).is_file() else pred
        if not pred.is_file():
            raise SystemExit(f"{pred}: missing prediction for {ref.name}")
        a_img, b_img = _label_map(io, pred), _label_map(io, ref)
        if a_img.GetSize() != b_img.GetSize():
            raise SystemExit(
                f"{pred}: the prediction's grid {a_img.GetSize()} differs from its reference {ref} "
                f"{b_img.GetSize()}; score predictions of the reference's own images"
            )
        per_case[ref.name] = dice_per_label(sitk.GetArrayFromImage(a_img), sitk.GetArrayFromImage(b_img))
    labels = sorted({k for s in per_case.values() for k in s}, key=int)
    mean = {k: float(np.mean([s[k] for s in per_case.values() if k in s])) for k in labels}
    out.parent.mkdir(parents=True, exist_ok=True)
    # the results go to the benchmark (MedPerf sends them to its server): cases in the order of the reference
    # file names, never by name (a file name is often a patient's ID)
    numbered = {f"case_{i}": scores for i, scores in enumerate(per_case.values(), start=1)}
    result = {"dice_mean": mean, "n_cases": len(numbered), "dice_per_case": numbered}
    out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    task, opts = _args(sys.argv[1:] if argv is None else argv)
    if task == "infer":
        return infer(opts)
    if task == "evaluate":
        return evaluate(opts)
    raise SystemExit(f"unknown task {task!r}: use infer or evaluate")


if __name__ == "__main__":
    raise SystemExit(main())
