"""What the driver of ``automed train --ray-address`` shows of folds running on other nodes (``FoldWatch``): a line
per new epoch from each fold's ``progress.json``, a fold's end with its score or its failure; nothing twice."""

from __future__ import annotations

import io
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from automed import api
from automed.artifacts import write_json_atomic
from automed.records import PROGRESS, PROGRESS_VERSION, stamped
from automed.testing.synthetic import make_dataset
from automed.train.state import EpochLog
from automed.workdir import WorkDir
from automed.workflow.fold import FoldJob, FoldOutcome
from automed.workflow.fold_watch import FoldWatch


def _epochs(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    logs = [EpochLog(e, 1.0, 1.0, [0.5], 0.5, 0.4, 0.01, 2.0, 0.1, 3 * e, 4, 12) for e in range(1, n + 1)]
    write_json_atomic(folder / PROGRESS, stamped({"history": [asdict(h) for h in logs]}, PROGRESS_VERSION))


def test_the_driver_shows_each_new_epoch_once_and_each_folds_end(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", n_cases=3, shape=(8, 16, 16))
    wd = tmp_path / "W"
    api.plan_dataset(root, wd, workers=1, show_progress=False, run_preprocess=False)
    job = FoldJob(str(wd), str(root), {"configuration": "3d_fullres"}, 0, [], [], 60.0, None, False, 0, "r",
                  "u", "e", 0, False)  # fmt: skip
    jobs = [job, FoldJob(**{**job.__dict__, "fold": 1})]
    folders = [WorkDir(wd).fold("3d_fullres", k) for k in (0, 1)]
    _epochs(folders[1], 2)  # fold 1 resumes after epoch 2: those were shown by the run that trained them
    out = io.StringIO()
    watch = FoldWatch(jobs, Console(file=out, width=80))
    watch({})  # nothing new yet
    assert out.getvalue() == ""
    _epochs(folders[0], 2)
    _epochs(folders[1], 3)
    watch({})
    watch({})
    lines = out.getvalue().splitlines()
    assert [line.split("  it")[0] for line in lines] == [
        "3d_fullres fold 0  epoch 1/4",
        "3d_fullres fold 0  epoch 2/4",
        "3d_fullres fold 1  epoch 3/4",
    ]
    # a log line is never wrapped; its time is this run's epochs' (fold 1: epoch 3 only), with the budget left
    assert (
        "  0m04s (0m56s left)  pseudo-Dice 0.500 (EMA 0.400)" in lines[1] and "0m02s (0m58s left)" in lines[2]
    )
    _epochs(folders[0], 4)
    ended = FoldOutcome(0, [], 4, 1.0, 0.75, None)  # type: ignore[arg-type]
    # what ray.get raises: its text is the worker's (coloured) traceback; the line says the error it wraps
    from ray.exceptions import RayTaskError

    trace = "Traceback (most recent call last):\n" + '  File "/site-packages/automed/x.py", line 1\n' * 20
    failed = RayTaskError("_run_task", trace, RuntimeError("CUDA out of memory")).as_instanceof_cause()
    watch({0: ended, 1: failed})
    watch({0: ended, 1: failed})  # said once
    lines = out.getvalue().splitlines()[3:]
    assert [line.split("  it")[0] for line in lines] == [
        "3d_fullres fold 0  epoch 3/4",
        "3d_fullres fold 0  epoch 4/4",
        "3d_fullres fold 0  finished: 4 epochs, validation dice_fg_mean 0.750",
        "3d_fullres fold 1  failed on the cluster: RuntimeError: CUDA out of memory",
    ]
