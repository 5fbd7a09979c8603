"""Benchmark: full-case prediction time of the hippocampus model with torch, onnxruntime and OpenVINO, and automed's
default inference against `nnUNetv2_predict` (not a test).

Uses the equal-budget models of bench/hippocampus_budget.py (run it first): automed's fold-0 model in
bench/work/budget/automed_W and nnU-Net's fold-0 model. All predict the same 12 held-out cases on this machine, one
after the other, with mirror TTA, and are scored with the same Dice code.

- Per-runtime latency: the same automed prediction code (preprocessing, sliding window, TTA, mapping back) with the
  fold network run by torch (float32, and automed's default bf16 autocast), onnxruntime, OpenVINO f32 and bf16;
  seconds per case after loading, mean over the 12 cases.
- End to end (process start, model load, 12 cases, writing): `automed predict` as it runs by default after
  `automed export MODEL` (the linked OpenVINO export) and with `--runtime torch`, the standalone bundle's
  `predict.py --runtime openvino`, and `nnUNetv2_predict -f 0 -npp 1 -nps 1`; seconds per case = wall / 12.

    .venv/bin/python bench/export_latency.py          # about 5 minutes on 2 cores
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine, run_measured, write_section
from hippocampus_budget import NNUNET_BIN, TRAINER, WORK, dice_table, nnunet_env

ROOT = Path(__file__).resolve().parents[1]
AUTOMED = ROOT / ".venv" / "bin" / "automed"
PY = ROOT / ".venv" / "bin" / "python"
OUT = ROOT / "bench" / "work" / "export"
MODEL = WORK / "automed_W"
IMAGES, LABELS = WORK / "heldout_images", WORK / "heldout_labels"


def per_runtime(bundle: Path) -> dict[str, dict[str, float]]:
    import re

    import torch

    from automed.data.io import read_image, write_image
    from automed.export.export import _runtime_predictor
    from automed.export.formats import OnnxModule, OpenVinoModule
    from automed.infer.predictor import Predictor

    torch.set_num_threads(2)
    base = Predictor.from_workdir(MODEL, tta=True, postprocessing=[])
    rep = json.loads((bundle / "export.json").read_text())
    onnx = [bundle / f for f in rep["files"]["onnx"]]
    xml = [bundle / f for f in rep["files"]["openvino"]]
    runtimes = {
        "torch eager fp32": _runtime_predictor(base, [m.float() for m in base.models]),
        "torch eager, automed default (bf16 autocast)": base,
        "onnxruntime fp32": _runtime_predictor(base, [OnnxModule(p, 2) for p in onnx]),
        "OpenVINO f32": _runtime_predictor(base, [OpenVinoModule(p, "f32", 2) for p in xml]),
        "OpenVINO bf16": _runtime_predictor(base, [OpenVinoModule(p, "bf16", 2) for p in xml]),
    }
    cases = sorted(IMAGES.glob("*_0000.nii.gz"))
    out: dict[str, dict[str, float]] = {}
    for name, pred in runtimes.items():
        folder = OUT / "pred" / re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        seconds = []
        for img in cases:
            arrays, geo = read_image(img)
            data = np.stack(arrays).astype(np.float32)
            t0 = time.perf_counter()
            res = pred.predict_arrays(data, geo)
            seconds.append(time.perf_counter() - t0)
            write_image(res.labels, geo, folder / img.name.replace("_0000", ""))
        out[name] = {"seconds_per_case": float(np.mean(seconds)), **dice_table(folder, LABELS)}
    return out


def end_to_end(bundle: Path) -> dict[str, dict[str, float]]:
    n = len(list(IMAGES.glob("*_0000.nii.gz")))
    runs = {
        "automed predict (default: the linked OpenVINO export)": [str(AUTOMED), "-q", "predict", str(MODEL), "-i", str(IMAGES), "-o", str(OUT / "e2e_automed")],
        "automed predict --runtime torch": [str(AUTOMED), "-q", "predict", str(MODEL), "-i", str(IMAGES), "-o", str(OUT / "e2e_automed_torch"), "--runtime", "torch"],
        "bundle predict.py --runtime openvino": [str(PY), str(bundle / "predict.py"), "-i", str(IMAGES), "-o", str(OUT / "e2e_bundle"), "--runtime", "openvino", "--threads", "2"],
        "nnUNetv2_predict (fold 0)": [str(NNUNET_BIN / "nnUNetv2_predict"), "-i", str(IMAGES), "-o", str(OUT / "e2e_nnunet"), "-d", "4", "-c", "3d_fullres", "-f", "0", "-tr", TRAINER, "-device", "cpu", "-npp", "1", "-nps", "1"],
    }  # fmt: skip
    out = {}
    for name, cmd in runs.items():
        folder = Path(cmd[cmd.index("-o") + 1])
        shutil.rmtree(folder, ignore_errors=True)
        m = run_measured(cmd, nnunet_env() if "nnUNet" in name else None, OUT / f"{folder.name}.log")
        if m.returncode:
            raise SystemExit(f"{name} failed: {OUT / f'{folder.name}.log'}")
        out[name] = {"seconds_per_case": m.wall_s / n, "wall_s": m.wall_s, **dice_table(folder, LABELS)}
    return out


def main() -> None:
    if not MODEL.is_dir() or not (WORK / "nnunet_state.json").is_file():
        raise SystemExit("run bench/hippocampus_budget.py first (it trains both models)")
    OUT.mkdir(parents=True, exist_ok=True)
    bundle = MODEL / "export"  # automed export's default place; it links the export to the work dir
    shutil.rmtree(bundle, ignore_errors=True)
    m = run_measured([str(AUTOMED), "-q", "export", str(MODEL)], None, OUT / "export.log")
    if m.returncode:
        raise SystemExit(f"export failed: {OUT / 'export.log'}")
    report = json.loads((bundle / "export.json").read_text())
    parity = report["parity"]
    rt = per_runtime(bundle)
    e2e = end_to_end(bundle)
    torch_s = rt["torch eager fp32"]["seconds_per_case"]
    default_s = rt["torch eager, automed default (bf16 autocast)"]["seconds_per_case"]
    rows = "\n".join(
        f"| {k} | {v['seconds_per_case']:.2f} | {torch_s / v['seconds_per_case']:.2f}x | {default_s / v['seconds_per_case']:.2f}x | {v['mean']:.4f} |"
        for k, v in rt.items()
    )
    nn = e2e["nnUNetv2_predict (fold 0)"]
    e2e_rows = "\n".join(
        f"| {k} | {v['wall_s']:.1f} | {v['seconds_per_case']:.2f} | {v['seconds_per_case'] / nn['seconds_per_case']:.2f} | {v['mean']:.4f} |"
        for k, v in e2e.items()
    )
    par = "\n".join(
        f"| {k} | {p['max_abs_prob']:.2e} | {p['dice_vs_torch']:.4f} | {p['passed']} |"
        for k, p in parity.items()
    )
    body = f"""## Export latency: torch vs onnxruntime vs OpenVINO, and automed vs nnUNetv2_predict (MSD Hippocampus)

Machine: {machine()}. Command: `.venv/bin/python bench/export_latency.py`. Model: automed's fold-0 network from the
equal-budget benchmark (bench/work/budget/automed_W) and nnU-Net's fold 0 ({TRAINER}); 12 held-out cases, mirror
TTA on everywhere, 2 threads. Export: `automed export MODEL` with its defaults (OpenVINO precision
"{report["openvino_precision"]}", chosen by `--ov-precision auto` on this CPU).

Per runtime (same automed pre/post-processing and sliding window; seconds per case after loading):

| runtime | s/case | speed-up vs torch fp32 | vs automed's torch default | held-out Dice |
|---|---|---|---|---|
{rows}

Target "OpenVINO >= 2x torch eager at equal TTA": OpenVINO bf16 {torch_s / rt["OpenVINO bf16"]["seconds_per_case"]:.2f}x torch fp32,
{default_s / rt["OpenVINO bf16"]["seconds_per_case"]:.2f}x automed's bf16-autocast torch; OpenVINO f32 {torch_s / rt["OpenVINO f32"]["seconds_per_case"]:.2f}x torch fp32.

End to end (process start, loading, 12 cases, writing):

| command | wall s | s/case | ratio to nnUNetv2_predict | held-out Dice |
|---|---|---|---|---|
{e2e_rows}

Parity of the export on one validation case (full prediction vs torch float32):

| runtime | max abs prob diff | Dice vs torch | passed |
|---|---|---|---|
{par}
"""
    write_section(ROOT / "bench" / "RESULTS.md", "export_latency", body)
    print(body)


if __name__ == "__main__":
    main()
