"""Container entry point for MLCube and MedPerf (copied into the cube as ``entry.py``; numpy, SimpleITK and
onnxruntime/openvino only, no network access).

- MLCube: ``entry.py infer --data_path=D --parameters_file=P --additional_files=W --output_path=O`` and
  ``entry.py evaluate --predictions=P --labels=L --parameters_file=F --output_path=results.yaml``;
- MedPerf (no arguments): task ``infer`` with ``/mlcommons/volumes/{data, parameters/parameters_file.yaml,
  additional_files, predictions}``.

Inputs are only read; outputs go to the output path (and nothing else is written). ``parameters.yaml`` is a flat
``key: value`` file: ``runtime`` (onnx|openvino), ``tta`` (true|false), ``threads`` (an integer).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

MEDPERF = {
    "data_path": "data",
    "parameters_file": "parameters/parameters_file.yaml",
    "additional_files": "additional_files",
    "output_path": "predictions",
}  # under /mlcommons/volumes (MLCOMMONS_VOLUMES overrides the root, e.g. for Singularity or a local dry run)


def read_parameters(path: Path) -> dict[str, Any]:
    """A flat YAML mapping of scalars (no PyYAML in the image)."""
    out: dict[str, Any] = {}
    if not path.is_file():
        return out
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
    return out


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


def infer(opts: dict[str, str]) -> int:
    import importlib

    main = importlib.import_module("runtime.cli").main  # the cube's copy of automed.runtime

    params = read_parameters(Path(opts.get("parameters_file", "")))
    weights = Path(opts.get("additional_files") or Path(__file__).resolve().parent)
    argv = ["-i", opts["data_path"], "-o", opts["output_path"]]
    if params.get("runtime"):
        argv += ["--runtime", str(params["runtime"])]
    if params.get("tta") is False:
        argv.append("--no-tta")
    if params.get("threads"):
        argv += ["--threads", str(params["threads"])]
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


def evaluate(opts: dict[str, str]) -> int:
    """Dice per label between ``predictions`` and ``labels`` (same file names); writes a YAML (JSON) summary."""
    import numpy as np
    import SimpleITK as sitk

    pred_dir, ref_dir, out = Path(opts["predictions"]), Path(opts["labels"]), Path(opts["output_path"])
    per_case: dict[str, dict[str, float]] = {}
    for ref in sorted(p for p in ref_dir.iterdir() if p.is_file()):
        pred = pred_dir / ref.name
        if not pred.is_file():
            raise SystemExit(f"{pred}: missing prediction for {ref.name}")
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(pred)))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(ref)))
        per_case[ref.name] = dice_per_label(a, b)
    labels = sorted({k for s in per_case.values() for k in s}, key=int)
    mean = {k: float(np.mean([s[k] for s in per_case.values() if k in s])) for k in labels}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"dice_mean": mean, "dice_per_case": per_case}, indent=1) + "\n")
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
