"""What a running training shows: one plain line per epoch when the console is not a terminal (CI, log files)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from automed import api
from automed.testing.synthetic import make_dataset
from automed.train.state import EpochLog
from automed.workflow.live import FoldDisplay, epoch_line

LOG = EpochLog(3, 0.91, 0.88, [0.7, 0.72], 0.712, 0.684, 0.003, 12.0, 0.04, 450, 10, 1500)


def test_epoch_line_says_schedule_time_score_and_data_wait() -> None:
    line = epoch_line("3d_fullres fold 0", LOG, 72.0, 257.0)
    assert line == (
        "3d_fullres fold 0  epoch 3/10  it 450/1500  1m12s (3m05s left)  pseudo-Dice 0.712 (EMA 0.684)"
        "  loss 0.910  data wait 4%"
    )
    assert "left" not in epoch_line("x", LOG, 72.0, None)


def test_not_a_terminal_gives_plain_lines_and_off_gives_none() -> None:
    buf = io.StringIO()
    with FoldDisplay("2d fold 1", None, "live", Console(file=buf, force_terminal=False)) as d:
        d.on_epoch_end(1, LOG)
    assert buf.getvalue().startswith("2d fold 1  epoch 3/10") and buf.getvalue().count("\n") == 1
    quiet = io.StringIO()
    with FoldDisplay("2d fold 1", None, "off", Console(file=quiet)) as d:
        d.on_epoch_end(1, LOG)
    assert quiet.getvalue() == ""


@pytest.mark.slow
def test_training_prints_every_epoch_of_every_fold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds = make_dataset(tmp_path / "data", n_cases=4, shape=(12, 24, 24), seed=5)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("epochs: 3\niterations_per_epoch: 2\nval_iterations: 1\nnum_workers: 0\n")
    api.train(
        ds, tmp_path / "W", config=cfg, folds=2, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        workers=0, show_progress=True, register=False,
    )  # fmt: skip
    lines = [x for x in capsys.readouterr().out.splitlines() if re.match(r"3d_fullres fold \d  epoch", x)]
    assert [x.split("  ")[:3] for x in lines] == [
        ["3d_fullres fold 0", f"epoch {e}/3", f"it {2 * e}/6"] for e in (1, 2, 3)
    ] + [["3d_fullres fold 1", f"epoch {e}/3", f"it {2 * e}/6"] for e in (1, 2, 3)]
    assert all("pseudo-Dice" in x and "data wait" in x for x in lines)


def _trial(root: Path, key: str, values: dict[str, object], folds: int, score: float | None) -> None:
    import json

    td = root / "trials" / key
    td.mkdir(parents=True, exist_ok=True)
    (td / "trial.json").write_text(json.dumps({"key": key, "values": values}))
    if folds:
        done = {str(f): {"score": score, "epochs": 1} for f in range(folds)}  # as trial._aggregate writes it
        result = {"folds": done, "n_folds_done": folds, "compute_s": 75.0 * folds, "score": score}
        (td / "result.json").write_text(json.dumps(result))


def test_sweep_trials_show_a_line_per_finished_fold_when_not_a_terminal(tmp_path: Path) -> None:
    import time

    from automed.workflow.trials_live import TrialsDisplay

    _trial(tmp_path, "old", {"lr": 0.01}, 2, 0.7)  # finished before a resume: not shown again
    buf = io.StringIO()
    console = Console(file=buf, width=200, force_terminal=False)

    def shown(n_lines: int) -> None:  # until the display's thread has polled (a busy machine may delay it)
        deadline = time.monotonic() + 60
        while len(buf.getvalue().splitlines()) < n_lines:
            assert time.monotonic() < deadline, buf.getvalue()
            time.sleep(0.02)

    with TrialsDisplay(tmp_path, 2, "live", console=console, interval=0.05):
        _trial(tmp_path, "a1", {"lr": 0.003, "batch": 2}, 0, None)  # started, no fold yet: nothing to say
        time.sleep(0.2)
        _trial(tmp_path, "a1", {"lr": 0.003, "batch": 2}, 1, 0.81234)
        shown(1)
        _trial(tmp_path, "a1", {"lr": 0.003, "batch": 2}, 2, 0.8)
        _trial(tmp_path, "b2", {}, 1, 0.5)  # between two polls: the exit poll shows it
    lines = buf.getvalue().splitlines()
    assert lines == [
        "trial a1  lr=0.003 batch=2  folds 1/2  Dice 0.8123  compute 1m15s",
        "trial a1  lr=0.003 batch=2  folds 2/2  Dice 0.8000  compute 2m30s",
        "trial b2  default  folds 1/2  Dice 0.5000  compute 1m15s",
    ]
    off = io.StringIO()
    with TrialsDisplay(tmp_path, 2, "off", console=Console(file=off), interval=0.05):
        _trial(tmp_path, "c3", {}, 1, 0.1)
    assert off.getvalue() == ""


@pytest.mark.parametrize("width", [80, 100, 120])
def test_the_live_bar_keeps_its_label_and_status_whole_on_an_ordinary_terminal(width: int) -> None:
    log = EpochLog(12, 0.91, 0.88, [0.7, 0.72], 0.812, 0.784, 0.003, 12.0, 0.04, 1800, 40, 6000)
    console = Console(file=io.StringIO(), width=width, force_terminal=True, record=True)
    with FoldDisplay("3d_fullres fold 0", 3600.0, "live", console) as d:
        d.on_epoch_end(0, log)
    text = console.export_text()
    last = text[text.rindex("3d_fullres fold 0") :].splitlines()  # the last frame the live display drew
    assert re.fullmatch(r"3d_fullres fold 0 ━[━╺╸]+━ \d:\d\d:\d\d", last[0].rstrip()), last
    assert all(len(line) <= width and "…" not in line for line in last)
    status = epoch_line("", log, 0.0, 3600.0).strip().split("  ")  # the items of the plain line
    shown = [line.strip() for line in last[1:] if line.strip()]
    assert len(shown) == (1 if width >= 120 else 2)  # the status under the bar: one line, or two at most
    items = [item for line in shown for item in line.split("  ")]  # each item whole on one line
    clock_item = re.compile(r"\d+[hm]\d\d[ms] \(\d+[hm]\d\d[ms] left\)")  # the elapsed time may have ticked
    assert len(items) == len(status) and all(
        a == b or (clock_item.fullmatch(a) and clock_item.fullmatch(b))
        for a, b in zip(items, status, strict=True)
    ), (items, status)


def test_the_live_trials_table_wraps_values_and_cuts_nothing_at_80_columns(tmp_path: Path) -> None:
    from automed.workflow.trials_live import TrialsDisplay

    values = {
        "augmentation.rotation_p": 0.3,
        "architecture": "resenc_unet_large_channels",
        "learning_rate": 0.003,
    }
    row = {
        "key": "train_fn_8b3d3_00000", "values": values, "folds": 3, "score": 0.81234, "compute_s": 3725.0,
        "status": "timed out",
    }  # fmt: skip
    console = Console(file=io.StringIO(), width=80, force_terminal=True, record=True)
    console.print(TrialsDisplay(tmp_path, 5, "live", console=console, score_label="pseudo-Dice").table([row]))
    text = console.export_text()
    assert "…" not in text and "train_fn_8b3d3_00000" in text and "pseudo-Dice" in text and "0.8123" in text
    lines = [line.split("│") for line in text.splitlines() if line.count("│") == 7]
    assert "".join(cells[6].strip() for cells in lines) == "timed out"
    cells = "".join(line[2].strip() for line in lines)
    assert cells == "augmentation.rotation_p=0.3architecture=resenc_unet_large_channelslearning_rate=0.003"
