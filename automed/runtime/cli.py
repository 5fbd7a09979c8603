"""The bundle's entry point: ``python predict.py -i INPUT -o OUTPUT [--runtime onnx|openvino]``.

Needs numpy, SimpleITK and onnxruntime or openvino only. Reads ``preprocess.json`` (the plan's pre/post-processing
and the inference settings automed chose) next to ``predict.py``, runs every fold network on every case with the
Gaussian sliding window and mirror TTA, and writes label maps in each input's geometry (``CASE.nii.gz``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .backends import choose_runtime, forwards_for
from .io import find_cases, read_case, spacing_zyx, write_labels
from .pipeline import Spec, preprocess_image, to_original
from .postprocess import apply as postprocess
from .sliding import predict_windows


def _runtime(runtime: str | None, meta: dict[str, Any]) -> str:
    chosen = choose_runtime(runtime, meta["files"])
    if chosen is None:
        if runtime:
            raise SystemExit(f"--runtime {runtime}: this bundle has {sorted(meta['files'])}")
        raise SystemExit("install onnxruntime or openvino (see requirements-*.txt in the bundle)")
    return chosen


def main(argv: list[str] | None = None, bundle: Path | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Segment images with this automed bundle (no torch, no automed)."
    )
    ap.add_argument(
        "-i", "--input", required=True, type=Path, help="folder of images, one image, or a DICOM folder"
    )
    ap.add_argument("-o", "--output", required=True, type=Path, help="folder for the label maps")
    ap.add_argument(
        "--runtime", choices=["onnx", "openvino"], help="default: openvino if installed, else onnx"
    )
    ap.add_argument("--no-tta", action="store_true", help="skip mirror test-time augmentation (faster)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for the runtime")
    ap.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="cuda: onnxruntime-gpu's CUDA provider"
    )
    args = ap.parse_args(argv)
    root = bundle or Path(sys.argv[0]).resolve().parent
    meta = json.loads((root / "preprocess.json").read_text())
    spec = Spec.from_json(meta["spec"])
    inf = meta["inference"]
    runtime = _runtime(args.runtime, meta)
    forwards = forwards_for(root, meta, runtime, args.threads, args.device)
    tta = inf["tta"] and not args.no_tta
    cases = find_cases(args.input.resolve(), spec.n_channels)
    args.output.mkdir(parents=True, exist_ok=True)
    for i, case in enumerate(cases, 1):
        t0 = time.perf_counter()
        channels, ref = read_case(case)
        if channels.shape[0] != spec.n_channels:
            raise SystemExit(
                f"{case.paths[0]}: the model needs {spec.n_channels} channel(s), found {channels.shape[0]}"
            )
        data, props, _ = preprocess_image(channels, spacing_zyx(ref), spec)

        def run(x: np.ndarray) -> np.ndarray:
            return predict_windows(forwards, x, inf["patch"], inf["n_classes"], step=inf["step"], tta=tta)

        probs = (
            np.stack([run(data[:, z]) for z in range(data.shape[1])], axis=1)
            if spec.dimension == 2
            else run(data)
        )
        labels, _ = to_original(probs, props, spec)
        if inf.get("postprocessing"):
            labels = postprocess(labels, inf["postprocessing"])
        write_labels(labels, ref, args.output / f"{case.case_id}{case.suffix}")
        print(f"[{i}/{len(cases)}] {case.case_id}: {time.perf_counter() - t0:.1f} s", flush=True)
    return 0
