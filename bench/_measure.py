"""Wall time and peak resident memory of a command and all its child processes (sampled every 20 ms)."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass
class Measurement:
    wall_s: float
    peak_rss_mb: float
    returncode: int


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += p.memory_info().rss
    return total


def run_measured(cmd: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> Measurement:
    """Run ``cmd`` and return its wall time and the peak of the summed RSS of its process tree."""
    out = log.open("w") if log else subprocess.DEVNULL
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, tree_rss(ps))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    if log:
        out.close()  # type: ignore[union-attr]
    return Measurement(wall, peak / 2**20, proc.returncode)


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, {platform.platform()}"


def write_section(results: Path, key: str, text: str) -> None:
    """Replace the section between ``<!-- key -->`` markers in RESULTS.md (or append it)."""
    start, end = f"<!-- {key} -->", f"<!-- /{key} -->"
    body = results.read_text() if results.is_file() else "# Benchmark results\n"
    block = f"{start}\n{text.rstrip()}\n{end}"
    if start in body and end in body:
        body = body[: body.index(start)] + block + body[body.index(end) + len(end) :]
    else:
        body = body.rstrip() + "\n\n" + block + "\n"
    results.write_text(body)
