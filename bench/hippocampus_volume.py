"""Benchmark: 3D regression with the default command: predict the labelled hippocampus volume (mm³) from the image.

Each of the 60 shared MSD Hippocampus cases gets its target from its own label map (voxels of labels 1 and 2 times
the voxel volume); the images (not the label maps) go into a CSV and ``automed train CSV -o W --budget 15m`` runs as a
user would run it. Reported: the cross-validation MAE and R² of the folds the budget trained (issue 15's target: CV
R² >= 0.75 at a 15-minute budget).

The peer, measured in the same run (``--segmentation-peer``): automed's own segmentation route, which needs what the
regression never sees, the label maps. The default ``automed train DATASET --budget`` (same budget) on the training
cases of the regression's first fold, then ``automed predict`` of that fold's validation cases; the volume of each
predicted label map is scored against the labelled volume with the same metrics, on the same cases.

    .venv/bin/python bench/hippocampus_volume.py            # about 16 minutes on 2 cores
    .venv/bin/python bench/hippocampus_volume.py --segmentation-peer   # and the peer: about 32 minutes
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


def segmentation_peer(work: Path, budget: str) -> dict[str, float]:
    """Train segmentation on the regression's fold-0 training cases (MSD folder of symlinks), predict its validation
    cases, and score the predicted volumes against the labelled ones (the same metrics as the regression's CV)."""
    from automed.evaluate.image_level import regression_metrics

    fold = json.loads((work / "W" / "splits.json").read_text())["folds"][0]
    meta = json.loads((DATA / "dataset.json").read_text())
    by_id = {Path(e["image"]).name.removesuffix(".nii.gz"): e for e in meta["training"]}
    ds, images, pred = work / "seg_dataset", work / "seg_val_images", work / "seg_pred"
    for d in (ds / "imagesTr", ds / "labelsTr", images):
        d.mkdir(parents=True)
    for cid in fold["train"]:
        for key in ("image", "label"):
            (ds / by_id[cid][key]).symlink_to(DATA / by_id[cid][key])
    for cid in fold["val"]:
        (images / f"{cid}_0000.nii.gz").symlink_to(DATA / by_id[cid]["image"])
    meta["training"] = [by_id[c] for c in fold["train"]]
    meta["numTraining"] = len(fold["train"])
    (ds / "dataset.json").write_text(json.dumps(meta, indent=1))
    cmd = [str(AUTOMED), "train", str(ds), "-o", str(work / "S"), "--budget", budget]
    cmd += ["--tracking-uri", f"sqlite:///{work / 'mlflow.db'}"]
    run = run_measured(cmd, log=work / "seg_train.log")
    assert run.returncode == 0, (work / "seg_train.log").read_text()[-3000:]
    predict = [str(AUTOMED), "-q", "predict", str(work / "S"), "-i", str(images), "-o", str(pred)]
    assert run_measured(predict, log=work / "seg_predict.log").returncode == 0
    targets = {
        r.split(",")[0]: float(r.split(",")[2]) for r in (work / "volumes.csv").read_text().split()[1:]
    }
    truth, guess = [], []
    for cid in fold["val"]:
        image = sitk.ReadImage(str(pred / f"{cid}.nii.gz"))
        voxels = int(np.count_nonzero(sitk.GetArrayViewFromImage(image)))
        truth.append(targets[cid])
        guess.append(voxels * float(np.prod(image.GetSpacing())))
    return {"train_seconds": round(run.wall_s, 1), **regression_metrics(np.array(truth), np.array(guess))}


def fold0_metrics(work: Path) -> dict[str, float]:
    """The regression's metrics on its fold-0 validation cases (from ``cv/metrics.csv``)."""
    from automed.evaluate.image_level import regression_metrics

    rows = [r.split(",") for r in (work / "W" / "cv" / "metrics.csv").read_text().split()[1:]]
    rows = [r for r in rows if r[1] == "0"]
    return regression_metrics(np.array([float(r[2]) for r in rows]), np.array([float(r[3]) for r in rows]))


def peer_text(budget: str, reg: dict[str, float], seg: dict[str, float]) -> str:
    line = "| {} | {:.1f} | {:.1f} | {:.1f} | {:.3f} | {:.3f} |\n"
    return (
        "\nThe peer in the same run: the default segmentation command (`automed train DATASET --budget "
        f"{budget}`) on the same fold-0 training cases with their label maps ({seg['train_seconds']:.0f} s), "
        f"then `automed predict` of the {seg['n_cases']} fold-0 validation cases; the volume of each predicted "
        "label map against the labelled volume, on the same cases as the regression's fold 0:\n\n"
        "| route | MAE mm³ | RMSE mm³ | mean error mm³ | R² | Pearson r |\n|---|---|---|---|---|---|\n"
        + line.format(
            "regression (image only)", reg["mae"], reg["rmse"], reg["mean_error"], reg["r2"], reg["pearson_r"]
        )
        + line.format(
            "segmentation (label maps), volume of the prediction",
            seg["mae"],
            seg["rmse"],
            seg["mean_error"],
            seg["r2"],
            seg["pearson_r"],
        )
        + (
            f"\nRatio of R² (regression / segmentation route): {reg['r2'] / seg['r2']:.2f}.\n"
            if seg["r2"] > 0
            else ""
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", default="15m")
    ap.add_argument(
        "--segmentation-peer", action="store_true", help="also the segmentation route (see above)"
    )
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
    if args.segmentation_peer:
        seg = segmentation_peer(work, args.budget)
        reg = fold0_metrics(work)
        (work / "peer.json").write_text(
            json.dumps({"regression_fold0": reg, "segmentation": seg}, indent=1) + "\n"
        )
        print(json.dumps({"regression_fold0": reg, "segmentation": seg}, indent=1))
        text += peer_text(args.budget, reg, seg)
    write_section(ROOT / "bench" / "RESULTS.md", "hippocampus-volume", text)


if __name__ == "__main__":
    main()
