"""Benchmark: 3D regression with the default command: predict the labelled hippocampus volume (mm³) from the image.

Each of the 60 shared MSD Hippocampus cases gets its target from its own label map (voxels of labels 1 and 2 times
the voxel volume); the images (not the label maps) go into a CSV and ``automed train CSV -o W --budget 15m`` runs as a
user would run it. Reported: the cross-validation MAE and R² of the folds the budget trained (issue 15's target: CV
R² >= 0.75 at a 15-minute budget).

    .venv/bin/python bench/hippocampus_volume.py            # about 16 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine, run_measured, write_section

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "msd_hippocampus_dev"
AUTOMED = ROOT / ".venv" / "bin" / "automed"


def volume_csv(dest: Path) -> Path:
    """``SubjectID,Channel_0,ValueToPredict`` with each case's labelled volume in mm³ (paths into the shared data)."""
    meta = json.loads((DATA / "dataset.json").read_text())
    rows = ["SubjectID,Channel_0,ValueToPredict"]
    for entry in sorted(meta["training"], key=lambda e: e["image"]):
        label = sitk.ReadImage(str(DATA / entry["label"]))
        voxels = int(np.count_nonzero(sitk.GetArrayViewFromImage(label)))
        volume = voxels * float(np.prod(label.GetSpacing()))
        cid = Path(entry["image"]).name.removesuffix(".nii.gz")
        rows.append(f"{cid},{DATA / entry['image']},{volume:.1f}")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "volumes.csv").write_text("\n".join(rows) + "\n")
    return dest / "volumes.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", default="15m")
    args = ap.parse_args()
    work = ROOT / "bench" / "work" / "hippocampus_volume"
    if work.exists():
        shutil.rmtree(work)
    csv = volume_csv(work)
    cmd = [str(AUTOMED), "train", str(csv), "-o", str(work / "W"), "--budget", args.budget]
    cmd += ["--tracking-uri", f"sqlite:///{work / 'mlflow.db'}"]
    run = run_measured(cmd, log=work / "train.log")
    assert run.returncode == 0, (work / "train.log").read_text()[-3000:]
    cv = json.loads((work / "W" / "cv" / "summary.json").read_text())
    meta = json.loads((work / "W" / "model.json").read_text())
    width = meta["config"]["base_features"] or "the plan's"
    options = json.loads((work / "W" / "train_config.json").read_text())["options"]
    tta = json.loads((work / "W" / "selection" / "tta_choice.json").read_text())["choice"]
    reasons = f"{options['folds_reason']}; {tta['reason']}"
    result = {"budget": args.budget, "train_seconds": round(run.wall_s, 1), "folds": meta["folds"], **cv}
    (work / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    text = (
        f"## Hippocampus volume regression: `automed train --budget {args.budget}` (default command)\n\n"
        f"Machine: {machine()}. Command: `.venv/bin/python bench/hippocampus_volume.py --budget {args.budget}`.\n"
        "Target: the labelled volume (mm³, labels 1 + 2) of each of the 60 shared MSD Hippocampus cases, predicted "
        "from the image alone.\n\n"
        "| folds | base features | mirror TTA | train s | CV MAE mm³ | CV RMSE mm³ | CV R² | CV Pearson r |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"| {meta['folds']} | {width} | {meta['inference']['tta']} | {run.wall_s:.0f} | {cv['mae']:.1f} "
        f"| {cv['rmse']:.1f} | {cv['r2']:.3f} | {cv['pearson_r']:.3f} |\n\n"
        f"Why (the training's own reasons): {reasons}\n\n"
        "Issue 15's target: CV R² >= 0.75 at a 15-minute budget.\n"
    )
    write_section(ROOT / "bench" / "RESULTS.md", "hippocampus-volume", text)


if __name__ == "__main__":
    main()
