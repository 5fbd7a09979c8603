"""Benchmark: automed's default classification command on MedMNIST v2 (not a test).

The shared ``../shared/data/medmnist/<name>.npz`` holds the official train and validation splits (the test split is
held back and scored independently). The train split becomes PNG files plus a CSV (class names as ValueToPredict);
``automed train CSV -o W --budget 10m`` runs as a user would run it (planning, folds chosen by the budget, CV,
registration all inside the budget); ``automed predict W`` then predicts the validation split, scored here with
scikit-learn (AUC of the positive class's probability, accuracy of the predicted class). Published test-split
numbers (Yang et al., Sci Data 2023) are quoted for reference only: they are on the held-back test split.

    .venv/bin/python bench/medmnist.py breastmnist            # about 12 minutes on 2 cores
    .venv/bin/python bench/medmnist.py pneumoniamnist --budget 10m
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine, run_measured, write_section

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "medmnist"
AUTOMED = ROOT / ".venv" / "bin" / "automed"
# MedMNIST v2 label names (class index order)
CLASSES = {"pneumoniamnist": ["normal", "pneumonia"], "breastmnist": ["malignant", "normal_benign"]}
PUBLISHED = {
    "pneumoniamnist": "test AUC/ACC: ResNet-18 (28) 0.944/0.854, ResNet-50 (224) 0.962/0.884, auto-sklearn "
    "0.942/0.855, AutoKeras 0.947/0.878, Google AutoML Vision 0.991/0.946",
    "breastmnist": "test AUC/ACC: ResNet-18 (28) 0.901/0.863, ResNet-50 (224) 0.866/0.842, Google AutoML Vision AUC "
    "0.919",
}


def write_split(images: np.ndarray, labels: np.ndarray, names: list[str], dest: Path) -> Path:
    """PNG per image and ``dest/dataset.csv`` (``SubjectID,PatientID,Channel_0,ValueToPredict`` with class names).

    Identical images share a PatientID (the fix ``automed verify`` asks for: PneumoniaMNIST's train split holds 17
    exact duplicates, which would otherwise sit in different folds)."""
    import hashlib

    (dest / "images").mkdir(parents=True, exist_ok=True)
    rows = ["SubjectID,PatientID,Channel_0,ValueToPredict"]
    first: dict[str, int] = {}
    for i, (img, lab) in enumerate(zip(images, labels.reshape(-1), strict=True)):
        png = dest / "images" / f"img_{i:05d}.png"
        sitk.WriteImage(sitk.GetImageFromArray(img.astype(np.uint8)), str(png))
        group = first.setdefault(hashlib.sha1(img.tobytes()).hexdigest(), i)
        rows.append(f"img_{i:05d},p{group:05d},images/{png.name},{names[int(lab)]}")
    (dest / "dataset.csv").write_text("\n".join(rows) + "\n")
    return dest / "dataset.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=sorted(CLASSES))
    ap.add_argument("--budget", default="10m")
    args = ap.parse_args()
    from sklearn.metrics import accuracy_score, roc_auc_score

    work = ROOT / "bench" / "work" / f"medmnist_{args.name}"
    if work.exists():
        shutil.rmtree(work)
    z = np.load(DATA / f"{args.name}.npz")
    names = CLASSES[args.name]
    csv = write_split(z["train_images"], z["train_labels"], names, work / "train")
    write_split(z["val_images"], z["val_labels"], names, work / "val")
    cmd = [str(AUTOMED), "train", str(csv), "-o", str(work / "W"), "--budget", args.budget]
    cmd += ["--tracking-uri", f"sqlite:///{work / 'mlflow.db'}"]
    train = run_measured(cmd, log=work / "train.log")
    assert train.returncode == 0, (work / "train.log").read_text()[-3000:]
    pred = run_measured(
        [str(AUTOMED), "predict", str(work / "W"), "-i", str(work / "val" / "images"), "-o", str(work / "P")],
        log=work / "predict.log",
    )
    assert pred.returncode == 0, (work / "predict.log").read_text()[-3000:]
    table = pd.read_csv(work / "P" / "predictions.csv").sort_values("SubjectID")
    y = z["val_labels"].reshape(-1)
    auc = float(roc_auc_score(y, table[f"probability_{names[1]}"]))
    acc = float(accuracy_score(y, [names.index(p) for p in table["prediction"]]))
    cv = json.loads((work / "W" / "cv" / "summary.json").read_text())
    meta = json.loads((work / "W" / "model.json").read_text())
    result = {
        "dataset": args.name,
        "budget": args.budget,
        "train_seconds": round(train.wall_s, 1),
        "folds": meta["folds"],
        "cv_auc": cv["auc_macro"],
        "cv_accuracy": cv["accuracy"],
        "val_auc": round(auc, 4),
        "val_accuracy": round(acc, 4),
        "predict_seconds": round(pred.wall_s, 1),
    }
    (work / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    text = (
        f"## MedMNIST v2 {args.name}: `automed train --budget {args.budget}` (default command)\n\n"
        f"Machine: {machine()}. Command: `.venv/bin/python bench/medmnist.py {args.name} --budget {args.budget}`.\n\n"
        f"| folds | train s | CV AUC | CV ACC | val AUC | val ACC |\n|---|---|---|---|---|---|\n"
        f"| {meta['folds']} | {train.wall_s:.0f} | {cv['auc_macro']:.4f} | {cv['accuracy']:.4f} | {auc:.4f} "
        f"| {acc:.4f} |\n\n"
        f"Official validation split ({len(y)} images) predicted by `automed predict`. Published ({PUBLISHED[args.name]}) "
        "are on the held-back test split: not comparable with these validation numbers, quoted as the target.\n"
    )
    write_section(ROOT / "bench" / "RESULTS.md", f"medmnist-{args.name}", text)


if __name__ == "__main__":
    main()
