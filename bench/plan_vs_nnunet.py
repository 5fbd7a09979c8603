"""Benchmark: `automed plan` vs `nnUNetv2_plan_and_preprocess -c 3d_fullres -np 2` on the 60 hippocampus cases.

Not a test. Needs the nnU-Net peer venv (../shared/reference/nnunet-peer.md) at .bench-venv/nnunet. Both tools start
from a fresh output folder each round (no cache), rounds alternate, and the medians are written to bench/RESULTS.md.

    .venv/bin/python bench/plan_vs_nnunet.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine, run_measured, write_section

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "msd_hippocampus_dev"
NNUNET_BIN = ROOT / ".bench-venv" / "nnunet" / "bin"
WORK = ROOT / "bench" / "work" / "plan"


def _nnunet_raw() -> dict[str, str]:
    """Convert the MSD folder once (not timed) and return nnU-Net's environment."""
    env = {
        "nnUNet_raw": str(WORK / "nnUNet_raw"),
        "nnUNet_preprocessed": str(WORK / "nnUNet_preprocessed"),
        "nnUNet_results": str(WORK / "nnUNet_results"),
        "nnUNet_n_proc_DA": "1",
    }
    if not (WORK / "nnUNet_raw" / "Dataset004_Hippocampus" / "dataset.json").is_file():
        task = WORK / "Task04_Hippocampus"
        task.mkdir(parents=True, exist_ok=True)
        for name in ("imagesTr", "labelsTr", "dataset.json"):
            if not (task / name).exists():
                (task / name).symlink_to(DATA / name)
        (task / "imagesTs").mkdir(exist_ok=True)
        r = run_measured(
            [str(NNUNET_BIN / "nnUNetv2_convert_MSD_dataset"), "-i", str(task), "-overwrite_id", "4"], env
        )
        if r.returncode:
            raise SystemExit("nnUNetv2_convert_MSD_dataset failed")
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not (NNUNET_BIN / "nnUNetv2_plan_and_preprocess").exists():
        raise SystemExit(
            f"nnU-Net peer not installed at {NNUNET_BIN} (see ../shared/reference/nnunet-peer.md)"
        )
    env = _nnunet_raw()
    auto: list = []
    peer: list = []
    for i in range(args.rounds):
        shutil.rmtree(WORK / "nnUNet_preprocessed", ignore_errors=True)
        m = run_measured(
            [str(NNUNET_BIN / "nnUNetv2_plan_and_preprocess"), "-d", "4", "-c", "3d_fullres", "-np", "2"],
            env,
            WORK / f"nnunet_{i}.log",
        )
        if m.returncode:
            raise SystemExit(f"nnU-Net failed, see {WORK / f'nnunet_{i}.log'}")
        peer.append(m)
        wd = WORK / f"automed_{i}"
        shutil.rmtree(wd, ignore_errors=True)
        m = run_measured(
            [
                str(ROOT / ".venv" / "bin" / "automed"),
                "-q",
                "plan",
                str(DATA),
                "-o",
                str(wd),
                "-c",
                "3d_fullres",
                "--workers",
                "2",
            ],
            None,
            WORK / f"automed_{i}.log",
        )
        if m.returncode:
            raise SystemExit(f"automed failed, see {WORK / f'automed_{i}.log'}")
        auto.append(m)
        print(
            f"round {i}: nnU-Net {peer[-1].wall_s:.1f} s {peer[-1].peak_rss_mb:.0f} MB | "
            f"automed {auto[-1].wall_s:.1f} s {auto[-1].peak_rss_mb:.0f} MB"
        )
    pw, ar = statistics.median(m.wall_s for m in peer), statistics.median(m.wall_s for m in auto)
    pr, am = statistics.median(m.peak_rss_mb for m in peer), statistics.median(m.peak_rss_mb for m in auto)
    nn_plans = json.loads(
        (WORK / "nnUNet_preprocessed" / "Dataset004_Hippocampus" / "nnUNetPlans.json").read_text()
    )
    nn_full = nn_plans["configurations"]["3d_fullres"]
    am_full = json.loads((WORK / f"automed_{args.rounds - 1}" / "plan.json").read_text())["configurations"][
        "3d_fullres"
    ]
    text = f"""## Planning + preprocessing: automed vs nnU-Net v2 (MSD Hippocampus, 60 cases, 3d_fullres)

Machine: {machine()}. Command: `.venv/bin/python bench/plan_vs_nnunet.py --rounds {args.rounds}`.
nnU-Net: `nnUNetv2_plan_and_preprocess -d 4 -c 3d_fullres -np 2` (fingerprint + plans + 3d_fullres preprocessing).
automed: `automed plan DATA -o W -c 3d_fullres --workers 2` (verify + fingerprint + plan + 3d_fullres
preprocessing + splits). Fresh output folders each round, rounds alternate; medians of {args.rounds} rounds.
Peak RSS = the largest sum over each tool's process tree, sampled every 20 ms.

| | nnU-Net v2.8.1 | automed | ratio automed / nnU-Net | target |
|---|---|---|---|---|
| wall time | {pw:.1f} s | {ar:.1f} s | **{ar / pw:.2f}** | <= 0.5 |
| peak RSS | {pr:.0f} MB | {am:.0f} MB | **{am / pr:.2f}** | <= 1.0 |

Per round (nnU-Net / automed): {", ".join(f"{p.wall_s:.1f}/{a.wall_s:.1f} s" for p, a in zip(peer, auto, strict=True))}.

Plans side by side (3d_fullres):

| | spacing | patch | batch | stages |
|---|---|---|---|---|
| nnU-Net | {nn_full["spacing"]} | {nn_full["patch_size"]} | {nn_full["batch_size"]} | {len(nn_full["architecture"]["arch_kwargs"]["features_per_stage"])} |
| automed | {am_full["spacing"]} | {am_full["patch_size"]} | {am_full["batch_size"]} | {am_full["network"]["n_stages"]} |

automed keeps the patch inside the median image (36x50x35) where nnU-Net pads it past it. Most of nnU-Net's memory
is its fingerprint's 1e8 pooled intensity samples; automed pools at most 1e7 in total. Summed RSS counts pages shared
between forked processes more than once, for both tools alike.
"""
    write_section(ROOT / "bench" / "RESULTS.md", "plan_vs_nnunet", text)
    print(text)


if __name__ == "__main__":
    main()
