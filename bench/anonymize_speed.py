"""Benchmark: `automed anonymize` against dicom-anonymizer's own command line on the same files (not a test).

Input: the shared knee series (36 MR slices with identifying headers and private tags) copied --copies times (each
copy a patient of its own: patient ID and UIDs suffixed) into one flat folder (the library's command line reads one folder level only). Both tools run as the user would start
them (process start included), into fresh output folders, rounds alternating; medians of --rounds rounds. automed
does more per file (every file validated before anything is kept, keyed UIDs, actions applied inside sequences, a
report); the target is an overhead of at most 1.2x.

    .venv/bin/python bench/anonymize_speed.py          # about a minute on 2 cores
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine, run_measured, write_section

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
WORK = ROOT / "bench" / "work" / "anonymize"
KNEE = ROOT.parent / "shared" / "data" / "dicom" / "knee_mr_phi"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    src = WORK / "input"
    shutil.rmtree(WORK, ignore_errors=True)
    src.mkdir(parents=True)
    import pydicom

    for i in range(
        args.copies
    ):  # each copy a patient of its own, with its own study, series and instance UIDs
        for f in sorted(KNEE.iterdir()):
            ds = pydicom.dcmread(f)
            ds.PatientID = f"{ds.PatientID}{i:02d}"
            for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
                setattr(ds, kw, f"{getattr(ds, kw)}.{i + 1}")
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.save_as(src / f"c{i:02d}_{f.name}")
    n = len(list(src.iterdir()))
    runs = {
        "dicom-anonymizer": lambda out: [str(BIN / "dicom-anonymizer"), str(src), str(out)],
        "automed anonymize": lambda out: [str(BIN / "automed"), "-q", "anonymize", str(src), "-o", str(out)],
    }
    walls: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(args.rounds):
        for name, cmd in runs.items():
            out = WORK / f"out_{name.split()[0]}_{r}"
            if name == "dicom-anonymizer":
                out.mkdir()  # its command line writes into an existing folder only
            m = run_measured(cmd(out), log=WORK / f"{out.name}.log")
            if m.returncode:
                raise SystemExit(f"{name} failed: {WORK / f'{out.name}.log'}")
            assert len([p for p in out.rglob("*") if p.is_file() and not p.name.endswith(".json")]) == n, name
            walls[name].append(m.wall_s)
            shutil.rmtree(out)
    lib, ours = (statistics.median(walls[k]) for k in runs)
    per_round = ", ".join(f"{a:.1f}/{b:.1f} s" for a, b in zip(*walls.values(), strict=True))
    body = f"""## De-identification speed: automed anonymize vs dicom-anonymizer's command line

Machine: {machine()}. Command: `.venv/bin/python bench/anonymize_speed.py --copies {args.copies} --rounds {args.rounds}`.
Input: the shared knee MR series (36 slices, 448x448, identifying headers and private tags) copied {args.copies} times
(each a patient of its own) into one folder: {n} files. `dicom-anonymizer IN OUT` (dicom-anonymizer {metadata.version("dicom-anonymizer")}, its
defaults: the 2023 table, top-level attributes, random UIDs) against `automed -q anonymize IN -o OUT` (the
{metadata.version("dicom-anonymizer")} library's 2026c table at every depth, keyed UIDs, pseudonyms, validation of every
file, report). Process start included, fresh output folders, rounds alternating; medians of {args.rounds} rounds.

| | dicom-anonymizer | automed | ratio automed / dicom-anonymizer | target |
|---|---|---|---|---|
| wall time | {lib:.2f} s | {ours:.2f} s | **{ours / lib:.2f}** | <= 1.2 |
| files/s | {n / lib:.0f} | {n / ours:.0f} | | |

Per round (dicom-anonymizer / automed): {per_round}."""
    write_section(ROOT / "bench" / "RESULTS.md", "anonymize_speed", body)
    print(body)


if __name__ == "__main__":
    main()
