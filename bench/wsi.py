"""Benchmark: whole-slide patch mining throughput and the memory of mining and slide inference (not a test).

Synthetic pyramidal TIFFs (automed.testing.synthetic_wsi, flat colours so that big slides stay small on disk) of
10k x 10k, 30k x 30k and 60k x 60k pixels at 0.5 um/px.

- Throughput on the 30k slide, 256-pixel patches at 0.5 um/px: `automed patch-miner` by default (a worker per core)
  and with one worker (tissue mask, artifact checks, PNG writing, CSV) against a plain loop of OpenSlide
  `read_region` + RGB conversion over the very coordinates automed kept (the reader's limit, nothing written), in one
  process and split over as many processes as automed's workers; patches per second, process start included, median of five interleaved rounds.
- Peak RSS (the process tree, sampled every 20 ms) of mining (1 worker) and of slide inference at 4 um/px (block
  store, pyramid writing, pictures) on each slide size; the network is replaced by a per-pixel colour rule so that
  the measurement is the WSI machinery's, not a network's (whose memory per block is the same at any slide size).

    .venv/bin/python bench/wsi.py          # about 10 minutes on 2 cores
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import statistics
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine, run_measured, write_section

ROOT = Path(__file__).resolve().parents[1]
PY = ROOT / ".venv" / "bin" / "python"
AUTOMED = ROOT / ".venv" / "bin" / "automed"
WORK = ROOT / "bench" / "work" / "wsi"
SIZES = (10_000, 30_000, 60_000)
REPEATS = 5
NCPU = min(8, os.cpu_count() or 1)  # automed's default worker count

MAKE = """
import sys
from pathlib import Path
from automed.testing.synthetic_wsi import default_scene, write_slide
n = int(sys.argv[1])
scene = default_scene(n, n, mpp=0.5, seed=1)
scene.noise = 0.0
write_slide(scene, Path(sys.argv[2]), levels=6)
"""

LOOP = """
import csv, os, sys
import openslide
from PIL import Image
rows = list(csv.DictReader(open(sys.argv[2])))
procs = int(sys.argv[3])
part = 0
for i in range(1, procs):  # the coordinates split between processes, each with its own reader
    if os.fork() == 0:
        part = i
        break
slide = openslide.OpenSlide(sys.argv[1])
for r in rows[part::procs]:
    region = slide.read_region((int(r["Info_X"]), int(r["Info_Y"])), 0, (256, 256))
    Image.alpha_composite(Image.new("RGBA", region.size, (255, 255, 255, 255)), region).convert("RGB")
if part:
    os._exit(0)
for _ in range(procs - 1):
    os.wait()
print(len(rows))
"""

PREDICT = """
import sys
from pathlib import Path
import numpy as np
from automed.infer.prediction import Prediction
from automed.testing.synthetic_wsi import GLASS, STAINS
from automed.workflow.predict_wsi import predict_slides

class ColourRule:
    def predict_arrays(self, channels, geometry, probabilities=False):
        rgb = channels[:, 0].transpose(1, 2, 0)
        ref = np.array([GLASS, STAINS[0], STAINS[1]], np.float32)
        d = ((rgb[..., None, :] - ref) ** 2).sum(-1)
        p = np.exp(-(d - d.min(-1, keepdims=True)) / 500.0)
        p /= p.sum(-1, keepdims=True)
        return Prediction(d.argmin(-1)[None].astype(np.uint8), p.transpose(2, 0, 1)[:, None].astype(np.float32))

out = Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
predict_slides(ColourRule(), [Path(sys.argv[1])], out, mpp=4.0, names={0: "glass", 1: "a", 2: "b"}, show_progress=False)
"""


def _script(name: str, text: str) -> Path:
    p = WORK / name
    p.write_text(textwrap.dedent(text))
    return p


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    make, loop, predict = _script("make.py", MAKE), _script("loop.py", LOOP), _script("predict.py", PREDICT)
    slides = {}
    for n in SIZES:
        path = WORK / f"slide_{n // 1000}k.tif"
        if not path.is_file():
            m = run_measured([str(PY), str(make), str(n), str(path)], log=WORK / f"make_{n}.log")
            assert m.returncode == 0, f"making the {n} slide failed (see {WORK})"
        slides[n] = path
    # throughput on the 30k slide: the commands interleaved, REPEATS rounds, the median of each (this VM's speed
    # drifts by tens of percent between minutes); written pages flushed before each run
    mid = slides[30_000]
    csv_path = WORK / "mine_w1" / "patches.csv"
    cmds: dict[str, list[str]] = {}
    for name, extra in (("w1", ["--workers", "1"]), ("default", [])):
        out = WORK / f"mine_{name}"
        cmds[name] = [
            str(AUTOMED),
            "-q",
            "patch-miner",
            str(mid),
            "-o",
            str(out),
            "--patch-size",
            "256",
            *extra,
        ]
    for procs in sorted({1, NCPU}):
        cmds[f"loop{procs}"] = [str(PY), str(loop), str(mid), str(csv_path), str(procs)]
    walls: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(REPEATS):
        for name, cmd in cmds.items():  # w1 first: its CSV gives the loops their coordinates
            if not name.startswith("loop"):
                shutil.rmtree(WORK / f"mine_{name}", ignore_errors=True)
            os.sync()
            m = run_measured(cmd, log=WORK / f"{name}.log")
            assert m.returncode == 0, f"{name} failed: {WORK / f'{name}.log'}"
            walls[name].append(m.wall_s)
    wall = {k: statistics.median(v) for k, v in walls.items()}
    n_patches = len(list(csv.DictReader(csv_path.open())))
    rate = {k: n_patches / wall[k] for k in ("w1", "default")}
    base_rate, base2_rate = n_patches / wall["loop1"], n_patches / wall[f"loop{NCPU}"]
    spread = max(max(v) / min(v) for v in walls.values())
    # memory across slide sizes
    mem = {}
    for n, path in slides.items():
        out = WORK / f"mem_mine_{n}"
        shutil.rmtree(out, ignore_errors=True)
        mine = run_measured([str(AUTOMED), "-q", "patch-miner", str(path), "-o", str(out), "--patch-size", "256",
                             "--mpp", "2.0", "--num-patches", "300", "--workers", "1"], log=WORK / f"mem_mine_{n}.log")  # fmt: skip
        pout = WORK / f"mem_pred_{n}"
        shutil.rmtree(pout, ignore_errors=True)
        pred = run_measured([str(PY), str(predict), str(path), str(pout)], log=WORK / f"mem_pred_{n}.log")
        assert mine.returncode == 0 and pred.returncode == 0, f"memory runs failed for {n} (see {WORK})"
        mem[n] = (mine, pred)
    lo_m, hi_m = min(m.peak_rss_mb for m, _ in mem.values()), max(m.peak_rss_mb for m, _ in mem.values())
    lo_p, hi_p = min(p.peak_rss_mb for _, p in mem.values()), max(p.peak_rss_mb for _, p in mem.values())
    mem_rows = "\n".join(
        f"| {n // 1000}k x {n // 1000}k | {m.peak_rss_mb:.0f} MB ({m.wall_s:.1f} s) | {p.peak_rss_mb:.0f} MB ({p.wall_s:.1f} s) |"
        for n, (m, p) in mem.items()
    )
    body = f"""## Whole slides: mining throughput and memory (synthetic pyramidal TIFFs)

Machine: {machine()}. Command: `.venv/bin/python bench/wsi.py`. Slides: synthetic tiled pyramidal TIFFs at 0.5 um/px
(flat colours, two tissue ellipses; automed.testing.synthetic_wsi), 10k, 30k and 60k pixels a side.

Mining throughput, 30k x 30k slide, 256-pixel patches at 0.5 um/px, every patch over tissue ({n_patches} patches;
process start included; median of {REPEATS} interleaved rounds,
written pages flushed before each run; the slowest/fastest run of one command differed by up to {spread:.2f}x):

| | patches/s | ratio to the read_region loop | target |
|---|---|---|---|
| plain OpenSlide `read_region` + RGB loop over the same coordinates, one process (nothing written) | {base_rate:.0f} | 1.00 | |
| `automed patch-miner` default (`--workers` = {NCPU} cores; mask, checks, PNG + CSV) | {rate["default"]:.0f} | **{rate["default"] / base_rate:.2f}** | >= 0.8 |
| `automed patch-miner --workers 1` | {rate["w1"]:.0f} | {rate["w1"] / base_rate:.2f} | |
| the same loop split over {NCPU} processes | {base2_rate:.0f} | {base2_rate / base_rate:.2f} | |

Default vs one sequential worker: {rate["default"] / rate["w1"]:.2f}x. Per core (default against the loop on as many
processes): {rate["default"] / base2_rate:.2f}.

Peak RSS (process tree) by slide size: mining 300 patches at 2 um/px with 1 worker; slide inference at 4 um/px
(blocks of 512 model pixels, level-0 label pyramid of the slide's size, pictures, per-block CSV; the network replaced
by a per-pixel colour rule):

| slide | mining | slide inference |
|---|---|---|
{mem_rows}

Spread (largest / smallest peak): mining **{hi_m / lo_m:.2f}**, inference **{hi_p / lo_p:.2f}** (target: flat within
15 %, <= 1.15)."""
    write_section(ROOT / "bench" / "RESULTS.md", "wsi", body)
    print(body)
    (WORK / "result.json").write_text(json.dumps({"rate": rate, "base": base_rate, "base2": base2_rate}))


if __name__ == "__main__":
    main()
