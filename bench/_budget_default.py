"""The default command's side of `bench/hippocampus_budget.py`: `automed train DATA --budget T` exactly as a user
types it (automed decides folds, configurations and inference), at several seeds and budgets, then
`automed predict WORKDIR` as a user types it. Each run is appended to `bench/work/budget/default_runs.json` as it
finishes, so a long benchmark that is stopped keeps what it measured."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path
from typing import Any

from _measure import Measurement, machine, run_measured

ROOT = Path(__file__).resolve().parents[1]
AUTOMED = ROOT / ".venv" / "bin" / "automed"
WORK = ROOT / "bench" / "work" / "budget"
RUNS = WORK / "default_runs.json"
# nnU-Net's fully trained MSD Hippocampus test Dice as commonly cited (anterior 0.90, posterior 0.89), marked
# unverified in ../shared/reference/nnunet.md: the line a budget curve has to reach
PUBLISHED_NNUNET = 0.895


def _runs() -> list[dict[str, Any]]:
    return json.loads(RUNS.read_text()) if RUNS.is_file() else []


def _record(entry: dict[str, Any]) -> None:
    runs = [r for r in _runs() if r["tag"] != entry["tag"]]
    RUNS.write_text(json.dumps([*runs, entry], indent=1))


def _num(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else "n/a"


def _inference(inf: dict[str, Any] | None) -> str:
    if not inf:
        return "default"
    folds = "all trained folds" if inf.get("folds") is None else f"folds {inf['folds']}"
    return f"{folds}, mirror TTA {'on' if inf.get('tta') else 'off'}, step {inf.get('step')}"


def train_and_predict(
    train_cmd: list[str], wd: Path, images: Path, out: Path, log_stem: str
) -> tuple[Measurement, Measurement]:
    """Run an ``automed train`` command into ``wd``, then ``automed predict wd`` on ``images``; both measured,
    logs ``WORK/<log_stem>.log`` and ``WORK/<log_stem>_predict.log``."""
    a = run_measured(train_cmd, None, WORK / f"{log_stem}.log")
    if a.returncode:
        raise SystemExit(f"automed training failed: {WORK / f'{log_stem}.log'}")
    p = run_measured(
        [str(AUTOMED), "-q", "predict", str(wd), "-i", str(images), "-o", str(out)],
        None,
        WORK / f"{log_stem}_predict.log",
    )
    if p.returncode:
        raise SystemExit(f"automed prediction failed: {WORK / f'{log_stem}_predict.log'}")
    return a, p


def run_default(
    ds: Path, images: Path, labels: Path, budget_s: float, seed: int, tag: str, dice_table: Any
) -> dict[str, Any]:
    """Train with the default command at ``budget_s`` (``seed`` 0: no ``--config`` at all; else a config holding
    only ``seed``), predict the held-out images with the default ``automed predict``, score, record."""
    wd, out = WORK / f"default_{tag}", WORK / f"pred_default_{tag}"
    for d in (wd, out):
        shutil.rmtree(d, ignore_errors=True)
    cmd = [str(AUTOMED), "-q", "train", str(ds), "-o", str(wd), "--budget", f"{budget_s:.0f}s"]
    if seed:
        cfg = WORK / f"seed{seed}.yaml"
        cfg.write_text(f"seed: {seed}\n")
        cmd += ["--config", str(cfg)]
    cmd += ["--tracking-uri", f"sqlite:///{WORK / 'mlflow_default.db'}"]
    a, p = train_and_predict(cmd, wd, images, out, f"default_{tag}")
    opts = json.loads((wd / "train_config.json").read_text())["options"]
    cv = json.loads((wd / "cv" / "summary.json").read_text())["foreground_mean"]["dice"]
    model = json.loads((wd / "model.json").read_text())
    n_cases = len(list(labels.glob("*.nii.gz")))
    entry = {
        "tag": tag,
        "seed": seed,
        "budget_s": round(budget_s, 1),
        "train_wall_s": round(a.wall_s, 1),
        "folds": opts.get("only_folds"),
        "folds_reason": opts.get("folds_reason", ""),
        "inference": model.get("inference"),
        "cv_dice": round(float(cv), 4) if cv is not None else None,  # None: no label defined
        "machine": machine(),
        "predict_s_per_case": round(p.wall_s / n_cases, 2),
        "heldout": {k: round(v, 4) for k, v in dice_table(out, labels).items()},
    }
    _record(entry)
    print(json.dumps(entry, indent=1))
    return entry


def seeds_text(nn: dict[str, Any], nn_dice: dict[str, float], n_cases: int, command: str) -> str:
    """The RESULTS.md section for the seeded default runs at nnU-Net's wall time (``seed*`` tags at that budget)."""
    budget = round(nn["train_s"], 1)
    runs = sorted(
        (r for r in _runs() if r["tag"].startswith("seed") and r["budget_s"] == budget),
        key=lambda r: r["seed"],
    )
    if not runs:
        return f"No run of the default command at nnU-Net's wall time ({budget:.0f} s) recorded yet.\n"
    means = [r["heldout"]["mean"] for r in runs]
    mean = statistics.fmean(means)
    spread = f"{max(means) - min(means):.4f}" if len(runs) > 1 else "n/a (one run)"
    nn_case = nn["predict_s"] / n_cases
    inference = "; ".join(f"seed {r['seed']}: {_inference(r['inference'])}" for r in runs)
    rows = "\n".join(
        f"| {r['seed']} | {r['train_wall_s']:.0f} s | {r['folds_reason']} | {_num(r['cv_dice'])} | "
        f"{r['heldout']['anterior']:.4f} / {r['heldout']['posterior']:.4f} | {r['heldout']['mean']:.4f} | "
        f"{r['heldout']['mean'] / nn_dice['mean']:.3f} | {r['predict_s_per_case']:.2f} s |"
        for r in runs
    )
    return f"""## The default command vs nnU-Net v2 at equal wall time (MSD Hippocampus, 48 train / 12 held out)

Command: `{command}`. Budget = wall time of `nnUNetv2_train 4 3d_fullres 0 -tr nnUNetTrainer_5epochs -device cpu`
(its training and fold-0 validation, measured in this run's series): **{nn["train_s"]:.0f} s**. automed runs exactly
what a user types: `automed train DATA --budget {nn["train_s"]:.0f}s` (plus `--tracking-uri` to a benchmark store;
seed 0: nothing else; other seeds: a `--config` holding only `seed: N`), then `automed predict WORKDIR -i HELD_OUT
-o OUT`: automed decides folds, configurations, test-time augmentation ({inference}). Same 12 held-out cases and Dice code for both; prediction time is the
command's wall time (start-up included) divided by 12.

| seed | train wall | what the budget decided | automed's own CV Dice | held-out anterior / posterior | held-out mean | vs nnU-Net | predict per case |
|---|---|---|---|---|---|---|---|
{rows}

| | nnU-Net v2.8.1 (fold 0, 5 epochs) | automed default, {len(runs)} seeds | ratio | target |
|---|---|---|---|---|
| held-out mean Dice | {nn_dice["mean"]:.4f} ({nn_dice["anterior"]:.4f} / {nn_dice["posterior"]:.4f}) | mean {mean:.4f}, spread (max - min) {spread} | **{mean / nn_dice["mean"]:.3f}** | >= 1.03, spread <= 0.01 |
| prediction per case | {nn_case:.2f} s (`nnUNetv2_predict -f 0`, 8 mirrors, `-npp 1 -nps 1`) | {statistics.fmean(r["predict_s_per_case"] for r in runs):.2f} s (mean) | {statistics.fmean(r["predict_s_per_case"] for r in runs) / nn_case:.2f} | <= 1 |

nnU-Net's epoch times (s): {", ".join(f"{e:.0f}" for e in nn["epoch_s"])}; its own fold-0 validation Dice: {nn["val_dice"]}.
"""


def curve_text(nn_dice: dict[str, float] | None, plot: Path) -> str:
    """The RESULTS.md section for held-out Dice against budget (seed 0 of each budget), with a plot; empty while
    only one budget has run."""
    runs = sorted((r for r in _runs() if r["seed"] == 0), key=lambda r: r["budget_s"])
    if len({r["budget_s"] for r in runs}) < 2:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    minutes = [r["budget_s"] / 60 for r in runs]
    ax.plot(minutes, [r["heldout"]["mean"] for r in runs], "o-", label="automed default (held-out mean Dice)")
    ax.plot(
        minutes, [r["cv_dice"] or float("nan") for r in runs], "s--", alpha=0.6, label="automed's own CV Dice"
    )
    ax.axhline(
        PUBLISHED_NNUNET, color="k", ls=":", label="nnU-Net fully trained, MSD test (published, unverified)"
    )
    if nn_dice is not None:
        ax.axhline(nn_dice["mean"], color="tab:red", ls="--", label="nnU-Net 5 epochs, fold 0 (this machine)")
    ax.set_xlabel("budget (minutes, 2 CPU cores)")
    ax.set_ylabel("mean Dice (anterior, posterior)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(plot)
    plt.close(fig)
    rows = "\n".join(
        f"| {r['budget_s'] / 60:.1f} min | {r['folds_reason']} | {_num(r['cv_dice'])} | {r['heldout']['mean']:.4f} | "
        f"{r['predict_s_per_case']:.2f} s |"
        for r in runs
    )
    return f"""## Held-out Dice against budget: automed's default command (MSD Hippocampus, 48 train / 12 held out)

Command: `.venv/bin/python bench/hippocampus_budget.py --skip-nnunet --seeds "" --curve MINUTES,...` (seed 0 of each
budget; the point at nnU-Net's 5-epoch wall time is seed 0 of the seeded runs). The line to reach: nnU-Net fully trained on the MSD
test set, about 0.90 / 0.89 (mean {PUBLISHED_NNUNET}; unverified, `../shared/reference/nnunet.md`).

![held-out Dice against budget]({plot.name})

| budget | what the budget decided | own CV Dice | held-out mean Dice | predict per case |
|---|---|---|---|---|
{rows}
"""
