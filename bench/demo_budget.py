"""Benchmark: the budget rules (``--folds auto``, the width rule) on a second dataset, the demo's synthetic data.

The budget rules in ``planners/*.yaml`` (``budget:``) were measured on MSD Hippocampus. Here the demo's 20 training
cases (two channels, a large and a small structure, 3 mm slices; ``automed.testing.demo``) train at each budget
twice: the default command (``automed train DATA --budget B``: the rules decide folds and width) and the same with
``--folds 5`` (five folds, the width rule still applies). Both predict 10 held-out synthetic cases (another seed of
the same generator) with ``automed predict``; reported: what the budget decided, the held-out Dice per label and the
prediction time.

    .venv/bin/python bench/demo_budget.py --budgets 2m,6m     # about 20 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine, run_measured, write_section

ROOT = Path(__file__).resolve().parents[1]
AUTOMED = ROOT / ".venv" / "bin" / "automed"
WORK = ROOT / "bench" / "work" / "demo_budget"
N_HELD_OUT = 10


def make_data() -> tuple[Path, Path]:
    from automed.testing.demo import demo_cases, make_demo_data

    train, _ = make_demo_data(WORK)
    return train, demo_cases(WORK / "heldout10", N_HELD_OUT, 2024, "DemoHeldout10")


def held_out_dice(pred_dir: Path, labels: Path) -> dict[str, float]:
    from automed.data.io import read_image
    from automed.evaluate.metrics import label_metrics

    per: dict[str, list[float]] = {"large": [], "small": []}
    for ref_path in sorted(labels.glob("*.nii.gz")):
        ref, geo = read_image(ref_path)
        pred, _ = read_image(pred_dir / ref_path.name)
        for value, name in ((1, "large"), (2, "small")):
            per[name].append(label_metrics(ref[0] == value, pred[0] == value, geo.spacing_zyx).dice)
    out = {k: float(np.mean(v)) for k, v in per.items()}
    out["mean"] = (out["large"] + out["small"]) / 2
    return out


def run(train: Path, held: Path, budget: str, folds: str | None) -> dict[str, object]:
    tag = f"{budget}_{folds or 'auto'}"
    wd = WORK / tag
    cmd = [str(AUTOMED), "train", str(train), "-o", str(wd), "--budget", budget]
    cmd += ["--folds", folds] if folds else []
    cmd += ["--tracking-uri", f"sqlite:///{WORK / 'mlflow.db'}"]
    t = run_measured(cmd, log=WORK / f"{tag}.log")
    assert t.returncode == 0, (WORK / f"{tag}.log").read_text()[-3000:]
    out = WORK / f"{tag}_pred"
    p = run_measured(
        [str(AUTOMED), "-q", "predict", str(wd), "-i", str(held / "imagesTr"), "-o", str(out)],
        log=WORK / f"{tag}_predict.log",
    )
    assert p.returncode == 0, (WORK / f"{tag}_predict.log").read_text()[-3000:]
    options = json.loads((wd / "train_config.json").read_text())["options"]
    meta = json.loads((wd / "model.json").read_text())
    cv = json.loads((wd / "cv" / "summary.json").read_text())["foreground_mean"]["dice"]
    return {
        "budget": budget,
        "folds": folds or "auto",
        "trained": meta["folds"],
        "width": meta["config"]["base_features"] or "plan's",
        "reason": options["folds_reason"],
        "train_s": t.wall_s,
        "cv_dice": cv,
        "held_out": held_out_dice(out, held / "labelsTr"),
        "predict_s_per_case": p.wall_s / N_HELD_OUT,
    }


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| budget | --folds | folds trained | width | train s | own CV Dice | held-out large / small | held-out mean "
        "| predict per case |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        h = r["held_out"]
        assert isinstance(h, dict)
        lines.append(
            f"| {r['budget']} | {r['folds']} | {r['trained']} | {r['width']} | {r['train_s']:.0f} | "
            f"{r['cv_dice']:.4f} | {h['large']:.4f} / {h['small']:.4f} | {h['mean']:.4f} | "
            f"{r['predict_s_per_case']:.2f} s |"
        )
    lines += ["", "Reasons the default runs printed:", ""]
    lines += [f"- {r['budget']}: {r['reason']}" for r in rows if r["folds"] == "auto"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budgets", default="2m,6m")
    args = ap.parse_args()
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    train, held = make_data()
    rows = []
    for budget in args.budgets.split(","):
        for folds in (None, "5"):
            rows.append(run(train, held, budget, folds))
            (WORK / "rows.json").write_text(json.dumps(rows, indent=1))
    text = (
        "## Budget rules on a second dataset: the demo's synthetic data (20 training cases, 10 held out)\n\n"
        f"Machine: {machine()}. Command: `.venv/bin/python bench/demo_budget.py --budgets {args.budgets}`. "
        "Each budget: the default command (`--folds auto`) and the same with `--folds 5`; "
        f"`automed predict` of {N_HELD_OUT} held-out cases (another seed of the demo's generator).\n\n"
        + table(rows)
    )
    write_section(ROOT / "bench" / "RESULTS.md", "demo-budget", text)
    print(text)


if __name__ == "__main__":
    main()
