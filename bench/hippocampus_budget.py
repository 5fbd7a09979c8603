"""Benchmark: automed vs nnU-Net v2 at an equal wall-clock training budget on MSD Hippocampus (not a test).

12 of the 60 cases are held out (every fifth). nnU-Net plans/preprocesses the other 48 (not timed), then
`nnUNetv2_train 4 3d_fullres 0 -tr nnUNetTrainer_5epochs -device cpu` runs; its wall time T is the budget.
automed gets its DEFAULT command, `automed train DATA --budget T` (it decides folds, configurations and inference;
its planning, training, validation and registration all inside T), at three seeds, and predicts with the default
`automed predict WORKDIR`. Both predict the 12 held-out cases and are scored with the same code
(`_budget_default.py`; RESULTS.md sections "hippocampus_default" and "hippocampus_curve").

    .venv/bin/python bench/hippocampus_budget.py            # nnU-Net + 3 seeds: about 1.5 hours on 2 cores
    .venv/bin/python bench/hippocampus_budget.py --nnunet-only   # nnU-Net's training alone (the budget)
    .venv/bin/python bench/hippocampus_budget.py --skip-nnunet --seeds 1,2 --curve 10,60
        # reuse nnU-Net's run; more seeds; the default at 10 and 60 minutes for the Dice-vs-budget curve
    .venv/bin/python bench/hippocampus_budget.py --fold0   # the earlier benchmark: automed --fold 0, throughput
    .venv/bin/python bench/hippocampus_budget.py --skip-nnunet --variant adamw --config adamw.yaml
        # one automed variant at the same budget with --fold 0: fold-0 (inner) validation Dice and held-out Dice go
        # to bench/work/budget/variants.json; RESULTS.md is not rewritten
    .venv/bin/python bench/hippocampus_budget.py --automed-only 1 --fixed-schedule --variant it2100 \
        --config bench/configs/it2100.yaml  # the default at a fixed iteration count (14 x 150), independent of machine speed
    .venv/bin/python bench/hippocampus_budget.py --automed-only 1169
        # automed's --fold 0 default alone at a given budget (no nnU-Net needed), recorded the same way
    .venv/bin/python bench/hippocampus_budget.py --automed-only 4081 --tag sampler_seed0 --seeds 0
        # the default command itself at a recorded budget, outside the seed series (default_runs.json)
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _budget_default import curve_text, run_default, seeds_text, train_and_predict
from _measure import machine, run_measured, write_section

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "msd_hippocampus_dev"
NNUNET_BIN = ROOT / ".bench-venv" / "nnunet" / "bin"
AUTOMED = ROOT / ".venv" / "bin" / "automed"
WORK = ROOT / "bench" / "work" / "budget"
TRAINER = "nnUNetTrainer_5epochs"


def split() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    meta = json.loads((DATA / "dataset.json").read_text())
    cases = sorted(meta["training"], key=lambda e: e["image"])
    held = cases[::5]
    return [c for c in cases if c not in held], held


def make_train_dataset(train: list[dict[str, str]]) -> Path:
    """An MSD folder with the 48 training cases (symlinks to the shared files)."""
    ds = WORK / "Task04_Hippocampus"
    if ds.exists():
        shutil.rmtree(ds)
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (ds / sub).mkdir(parents=True)
    for c in train:
        for key in ("image", "label"):
            rel = Path(c[key])
            (ds / rel).symlink_to(DATA / rel)
    meta = json.loads((DATA / "dataset.json").read_text())
    meta["training"] = train
    meta["numTraining"] = len(train)
    (ds / "dataset.json").write_text(json.dumps(meta, indent=1))
    return ds


def make_heldout(held: list[dict[str, str]]) -> tuple[Path, Path]:
    images, labels = WORK / "heldout_images", WORK / "heldout_labels"
    for d in (images, labels):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    for c in held:
        name = Path(c["image"]).name[: -len(".nii.gz")]
        (images / f"{name}_0000.nii.gz").symlink_to(DATA / c["image"])
        (labels / f"{name}.nii.gz").symlink_to(DATA / c["label"])
    return images, labels


def dice_table(pred_dir: Path, labels: Path) -> dict[str, float]:
    from automed.data.io import read_image
    from automed.evaluate.metrics import label_metrics

    per: dict[int, list[float]] = {1: [], 2: []}
    for ref_path in sorted(labels.glob("*.nii.gz")):
        ref, geo = read_image(ref_path)
        pred, _ = read_image(pred_dir / ref_path.name)
        for k in per:
            per[k].append(label_metrics(ref[0] == k, pred[0] == k, geo.spacing_zyx).dice)
    out = {"anterior": float(np.mean(per[1])), "posterior": float(np.mean(per[2]))}
    out["mean"] = (out["anterior"] + out["posterior"]) / 2
    return out


def nnunet_env() -> dict[str, str]:
    return {
        "nnUNet_raw": str(WORK / "nnUNet_raw"),
        "nnUNet_preprocessed": str(WORK / "nnUNet_preprocessed"),
        "nnUNet_results": str(WORK / "nnUNet_results"),
        "nnUNet_n_proc_DA": "1",
    }


def nnunet_throughput(env: dict[str, str]) -> tuple[float, float]:
    """Samples per second of nnU-Net (250 iterations of batch 2 per epoch) from one `nnUNetTrainer_1epoch` epoch,
    measured in this run so that the ratio compares the two tools under the same machine load; and the epoch time."""
    log = WORK / "nnunet_throughput.log"
    results = WORK / "nnUNet_results"
    for old in results.rglob("nnUNetTrainer_1epoch__*"):
        shutil.rmtree(old, ignore_errors=True)
    t = run_measured(
        [
            str(NNUNET_BIN / "nnUNetv2_train"),
            "4",
            "3d_fullres",
            "0",
            "-tr",
            "nnUNetTrainer_1epoch",
            "-device",
            "cpu",
        ],
        env,
        log,
    )
    if t.returncode:
        raise SystemExit(f"nnU-Net throughput run failed: {log}")
    logs = sorted(results.rglob("nnUNetTrainer_1epoch__*/fold_0/training_log_*.txt"))
    epoch_s = float(re.findall(r"Epoch time: ([\d.]+) s", logs[-1].read_text())[0])
    return 250 * 2 / epoch_s, epoch_s


def automed_throughput(ds: Path, amp: bool) -> float:
    """Samples per second of automed at nnU-Net's patch and batch (one 40-iteration epoch, fold 0)."""
    wd = WORK / f"throughput_{'amp' if amp else 'fp32'}"
    shutil.rmtree(wd, ignore_errors=True)
    cfg = WORK / f"throughput_{amp}.yaml"
    cfg.write_text(
        f"epochs: 1\niterations_per_epoch: 40\nval_iterations: 1\nbatch_size: 2\n"
        f"patch_size: [40, 56, 40]\namp: {str(amp).lower()}\n"
    )
    m = run_measured(
        [
            str(AUTOMED),
            "-q",
            "train",
            str(ds),
            "-o",
            str(wd),
            "--config",
            str(cfg),
            "--fold",
            "0",
            "--no-register",
            "--tracking-uri",
            f"sqlite:///{WORK / 'mlflow_throughput.db'}",
        ],
        None,
        WORK / f"automed_throughput_{amp}.log",
    )
    if m.returncode:
        raise SystemExit(f"automed throughput run failed: {WORK / f'automed_throughput_{amp}.log'}")
    hist = json.loads((wd / "train" / "3d_fullres" / "fold_0" / "progress.json").read_text())["history"]
    return 40 * 2 / hist[0]["epoch_seconds"]


def inner_val_dice(wd: Path) -> float:
    """Foreground-mean Dice of the fold-0 validation cases (inside the 48 training cases: no held-out case)."""
    rows = json.loads((wd / "train" / "3d_fullres" / "fold_0" / "validation_metrics.json").read_text())
    labels = sorted({r["label"] for r in rows})
    return float(np.mean([np.mean([r["dice"] for r in rows if r["label"] == k]) for k in labels]))


def run_variant(name: str, config: Path, ds: Path, images: Path, labels: Path, budget: float | None) -> None:
    """Train fold 0 at ``budget`` seconds (None: the config's own epochs and iterations), predict, score."""
    wd, out = WORK / f"automed_{name}", WORK / f"pred_{name}"
    shutil.rmtree(wd, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(AUTOMED), "-q", "train", str(ds), "-o", str(wd), "--fold", "0"]
    if budget is not None:
        cmd += ["--budget", f"{budget:.0f}s"]
    if config.stat().st_size:
        cmd += ["--config", str(config)]
    cmd += ["--tracking-uri", f"sqlite:///{WORK / f'mlflow_{name}.db'}"]
    a, _ = train_and_predict(cmd, wd, images, out, f"automed_{name}")
    hist = json.loads((wd / "train" / "3d_fullres" / "fold_0" / "progress.json").read_text())
    entry = {
        "variant": name,
        "config": config.read_text(),
        "train_wall_s": round(a.wall_s, 1),
        "epochs": len(hist["history"]),
        "schedule": hist["schedule"],
        "inner_val_dice": round(inner_val_dice(wd), 4),
        "heldout": {k: round(v, 4) for k, v in dice_table(out, labels).items()},
    }
    log = WORK / "variants.json"
    entries = json.loads(log.read_text()) if log.is_file() else []
    log.write_text(json.dumps([*entries, entry], indent=1))
    print(json.dumps(entry, indent=1))


def default_command(
    args: argparse.Namespace, nn: dict[str, float], ds: Path, images: Path, labels: Path
) -> None:
    """The issue-14 benchmark: automed's default command at nnU-Net's wall time over seeds, and a budget curve."""
    command = f".venv/bin/python bench/hippocampus_budget.py{''.join(' ' + a for a in sys.argv[1:])}"
    (WORK / "nnunet_this_run.json").write_text(json.dumps({**nn, "command": command}))
    for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
        run_default(ds, images, labels, nn["train_s"], seed, f"seed{seed}", dice_table)
    for minutes in [float(m) for m in args.curve.split(",") if m.strip()]:
        run_default(ds, images, labels, minutes * 60, 0, f"curve{minutes:g}m", dice_table)
    render_default(labels)


def render_default(labels: Path) -> None:
    """The RESULTS.md sections of the default command, from the runs recorded so far."""
    state = WORK / "nnunet_this_run.json"
    if not state.is_file():
        raise SystemExit(f"{state} is missing: run the default-command benchmark first (without --render)")
    nn = json.loads(state.read_text())
    nn_dice = dice_table(WORK / "pred_nnunet", labels)
    n_cases = len(list(labels.glob("*.nii.gz")))
    results = ROOT / "bench" / "RESULTS.md"
    text = seeds_text(nn, nn_dice, n_cases, nn["command"])
    write_section(results, "hippocampus_default", f"Machine: {machine()}.\n\n{text}")
    curve = curve_text(nn_dice, ROOT / "bench" / "hippocampus_curve.png")
    if curve:  # only once a budget other than nnU-Net's has run
        write_section(results, "hippocampus_curve", f"Machine: {machine()}.\n\n{curve}")
    print(text + "\n" + curve)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--skip-nnunet", action="store_true", help="reuse the nnU-Net results of an earlier run")
    ap.add_argument(
        "--reuse-automed",
        action="store_true",
        help="reuse automed's trained work dir of an earlier run (re-predict and re-score only)",
    )
    ap.add_argument("--variant", help="name of an automed variant to train with --config (see the docstring)")
    ap.add_argument(
        "--automed-only",
        type=float,
        metavar="SECONDS",
        help="train only automed's default (or --variant) at this budget, without nnU-Net (a machine without the "
        "nnU-Net venv; e.g. 1169, the recorded equal budget): held-out and fold-0 Dice go to variants.json",
    )
    ap.add_argument("--config", help="TrainConfig YAML for --variant")
    ap.add_argument(
        "--tag",
        help="with --automed-only SECONDS: automed's DEFAULT command (no --fold: the budget decides folds and width) "
        "at that budget and the first of --seeds, recorded under this tag in default_runs.json outside the seed "
        "series (e.g. a rerun after a code change); RESULTS.md is not rewritten",
    )
    ap.add_argument(
        "--fixed-schedule",
        action="store_true",
        help="with --automed-only: no --budget, the --config's epochs x iterations_per_epoch (a result that does "
        "not depend on the machine's speed or load, to compare at the recorded runs' iteration count)",
    )
    ap.add_argument(
        "--nnunet-only",
        action="store_true",
        help="train nnU-Net's fold 0 (its wall time is the budget) and stop; later runs reuse it with --skip-nnunet",
    )
    ap.add_argument(
        "--seeds",
        default="0,1,2",
        help="seeds of automed's default command at nnU-Net's wall time (the main run; e.g. 1,2 to add runs)",
    )
    ap.add_argument(
        "--curve",
        default="",
        metavar="MINUTES,...",
        help="also train the default command (seed 0) at these budgets for the held-out Dice vs budget curve",
    )
    ap.add_argument(
        "--render",
        action="store_true",
        help="only rewrite the RESULTS.md sections of the default command from the runs recorded so far",
    )
    ap.add_argument(
        "--fold0",
        action="store_true",
        help="the earlier benchmark: automed with --fold 0 at nnU-Net's wall time, plus both tools' throughput",
    )
    args = ap.parse_args()
    if bool(args.variant) != bool(args.config) and not args.automed_only:
        ap.error(
            "--variant and --config go together (with --automed-only, --variant alone names the default)"
        )
    WORK.mkdir(parents=True, exist_ok=True)
    if args.render:
        render_default(WORK / "heldout_labels")
        return
    train, held = split()
    ds = make_train_dataset(train)
    images, labels = make_heldout(held)
    if args.automed_only:
        config = Path(args.config).resolve() if args.config else WORK / "default.yaml"
        if not args.config:
            config.write_text("")
        budget = None if args.fixed_schedule else args.automed_only
        if (
            args.tag
        ):  # the default command itself (the budget decides folds and width), outside the seed series
            seed = int(args.seeds.split(",")[0] or 0)
            run_default(ds, images, labels, args.automed_only, seed, args.tag, dice_table)
            return
        run_variant(args.variant or "default", config, ds, images, labels, budget)
        return
    env = nnunet_env()
    state_file = WORK / "nnunet_state.json"
    if not args.skip_nnunet:
        for d in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            shutil.rmtree(WORK / d, ignore_errors=True)
        steps = [
            [str(NNUNET_BIN / "nnUNetv2_convert_MSD_dataset"), "-i", str(ds), "-overwrite_id", "4"],
            [str(NNUNET_BIN / "nnUNetv2_plan_and_preprocess"), "-d", "4", "-c", "3d_fullres", "-np", "2"],
        ]
        for i, cmd in enumerate(steps):
            if run_measured(cmd, env, WORK / f"nnunet_prep_{i}.log").returncode:
                raise SystemExit(f"nnU-Net step failed: {WORK / f'nnunet_prep_{i}.log'}")
        t = run_measured(
            [str(NNUNET_BIN / "nnUNetv2_train"), "4", "3d_fullres", "0", "-tr", TRAINER, "-device", "cpu"],
            env,
            WORK / "nnunet_train.log",
        )
        if t.returncode:
            raise SystemExit(f"nnU-Net training failed: {WORK / 'nnunet_train.log'}")
        logs = sorted((WORK / "nnUNet_results").rglob(f"{TRAINER}__*/fold_0/training_log_*.txt"))
        epochs = [float(x) for x in re.findall(r"Epoch time: ([\d.]+) s", logs[-1].read_text())]
        dice_val = re.findall(r"Mean Validation Dice:\s+([\d.]+)", logs[-1].read_text())
        state_file.write_text(
            json.dumps(
                {
                    "train_s": t.wall_s,
                    "epoch_s": epochs,
                    "val_dice": dice_val[-1] if dice_val else None,
                }
            )
        )
    if args.nnunet_only:
        print(state_file.read_text())
        return
    nn = json.loads(state_file.read_text())
    budget = nn["train_s"]
    # nnU-Net's prediction is timed in every run (the machine's speed varies between sessions)
    out = WORK / "pred_nnunet"
    shutil.rmtree(out, ignore_errors=True)
    p = run_measured(
        [
            str(NNUNET_BIN / "nnUNetv2_predict"),
            "-i",
            str(images),
            "-o",
            str(out),
            "-d",
            "4",
            "-c",
            "3d_fullres",
            "-f",
            "0",
            "-tr",
            TRAINER,
            "-device",
            "cpu",
            "-npp",
            "1",
            "-nps",
            "1",
        ],
        env,
        WORK / "nnunet_predict.log",
    )
    if p.returncode:
        raise SystemExit(f"nnU-Net prediction failed: {WORK / 'nnunet_predict.log'}")
    nn["predict_s"] = p.wall_s
    if args.variant:
        run_variant(args.variant, Path(args.config).resolve(), ds, images, labels, budget)
        return
    if not args.fold0:
        default_command(args, nn, ds, images, labels)
        return
    wd = WORK / "automed_W"
    auto_state = WORK / "automed_state.json"
    if not (args.reuse_automed and auto_state.is_file()):
        shutil.rmtree(wd, ignore_errors=True)
        a = run_measured(
            [
                str(AUTOMED),
                "-q",
                "train",
                str(ds),
                "-o",
                str(wd),
                "--budget",
                f"{budget:.0f}s",
                "--fold",
                "0",
                "--tracking-uri",
                f"sqlite:///{WORK / 'mlflow.db'}",
            ],
            None,
            WORK / "automed_train.log",
        )
        if a.returncode:
            raise SystemExit(f"automed training failed: {WORK / 'automed_train.log'}")
        auto_state.write_text(json.dumps({"train_s": a.wall_s}))
    train_wall = json.loads(auto_state.read_text())["train_s"]
    out = WORK / "pred_automed"
    shutil.rmtree(out, ignore_errors=True)
    ap_ = run_measured(
        [str(AUTOMED), "-q", "predict", str(wd), "-i", str(images), "-o", str(out), "--runtime", "torch"],
        None,
        WORK / "automed_predict.log",
    )
    if ap_.returncode:
        raise SystemExit(f"automed prediction failed: {WORK / 'automed_predict.log'}")
    d_nn = dice_table(WORK / "pred_nnunet", labels)
    d_am = dice_table(out, labels)
    hist = json.loads((wd / "train" / "3d_fullres" / "fold_0" / "progress.json").read_text())
    thr_nn, nn_epoch_s = nnunet_throughput(env)
    thr_bf16 = automed_throughput(ds, True)
    thr_fp32 = automed_throughput(ds, False)
    plan = json.loads((wd / "plan.json").read_text())["configurations"]["3d_fullres"]
    text = f"""## Equal training budget: automed vs nnU-Net v2 (MSD Hippocampus, 48 train / 12 held out)

Machine: {machine()}. Command: `.venv/bin/python bench/hippocampus_budget.py{"".join(" " + a for a in sys.argv[1:])}`
(`--skip-nnunet`: nnU-Net's training and budget from the first run; `--reuse-automed`: automed's training from the
previous run, re-predicted and re-scored; nnU-Net's prediction and both throughputs are measured in every run).
Budget = wall time of `nnUNetv2_train 4 3d_fullres 0 -tr {TRAINER} -device cpu` (training + its fold-0 validation):
**{budget:.0f} s**. automed: `automed train DATA --budget {budget:.0f}s --fold 0` (planning, training, fold-0
validation and registration all inside the budget): {train_wall:.0f} s wall, {len(hist["history"])} epochs,
schedule "{hist["schedule"]}", plan patch {plan["patch_size"]} batch {plan["batch_size"]}.
Held-out prediction: fold 0 only, default mirror TTA, 12 cases, same Dice code for both.

| held-out Dice | nnU-Net v2.8.1 | automed | ratio automed / nnU-Net | target |
|---|---|---|---|---|
| anterior | {d_nn["anterior"]:.4f} | {d_am["anterior"]:.4f} | {d_am["anterior"] / d_nn["anterior"]:.3f} | |
| posterior | {d_nn["posterior"]:.4f} | {d_am["posterior"]:.4f} | {d_am["posterior"] / d_nn["posterior"]:.3f} | |
| mean | {d_nn["mean"]:.4f} | {d_am["mean"]:.4f} | **{d_am["mean"] / d_nn["mean"]:.3f}** | >= 1.05 |

| | nnU-Net v2.8.1 | automed | ratio |
|---|---|---|---|
| prediction of 12 cases (wall, incl. start-up) | {nn["predict_s"]:.1f} s | {ap_.wall_s:.1f} s | {ap_.wall_s / nn["predict_s"]:.2f} |
| training throughput, patch 40x56x40, batch 2 (samples/s) | {thr_nn:.2f} (fp32; one epoch of `nnUNetTrainer_1epoch` in this run: {nn_epoch_s:.0f} s) | {thr_bf16:.2f} (bf16 autocast) | **{thr_bf16 / thr_nn:.2f}** (target >= 1.3) |
| same, automed in fp32 (`amp: false`) | | {thr_fp32:.2f} | {thr_fp32 / thr_nn:.2f} |

nnU-Net's epoch times in the budget run (s): {", ".join(f"{e:.0f}" for e in nn["epoch_s"])}; its own fold-0
validation Dice: {nn["val_dice"]}. Throughput: both tools measured one after the other in this run (the machine's
speed varies between sessions); nnU-Net's epoch includes its 50 validation iterations, automed's 40-iteration epoch
its 1 validation iteration. automed's prediction here is `automed predict --runtime torch` (the training has no
export yet; `bench/export_latency.py` measures the default path with an export).
"""
    write_section(ROOT / "bench" / "RESULTS.md", "hippocampus_budget", text)
    print(text)


if __name__ == "__main__":
    main()
