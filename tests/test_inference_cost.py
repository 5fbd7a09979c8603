"""``automed select``'s inference cost (automed/select/inference_cost.py) on the session's small training: each fold's
weights are loaded once, each setting scores the Dice a predictor of its own gives, a setting that computes what an
earlier one did for a case (the same windows) shares that prediction and its time, and the timing shows its
progress as plain lines off a terminal. Also the plain lines of :class:`automed.parallel.Stages`."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import pytest
from rich.console import Console

from automed.data.cases import read_case
from automed.data.dataset import load_dataset
from automed.infer.sliding_window import window_corners
from automed.parallel import Stages
from automed.plan.schema import Plan
from automed.select.selection import dice_summary, dice_table
from automed.train.meta import read_meta
from automed.workdir import WorkDir


def test_stages_show_plain_lines_at_each_tenth_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    with Stages(every_s=0).stage("timing", 20) as done:
        for _ in range(20):
            done()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "timing: 0/20"
    assert [line.split()[1] for line in lines[1:-1]] == [f"{n}/20" for n in range(2, 20, 2)]
    assert lines[-1].startswith("timing: 20/20 done in ")
    with Stages().stage("fast", 3) as done:  # a stage faster than every_s: its start and its end
        for _ in range(3):
            done()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "fast: 0/3" and lines[1].startswith("fast: 3/3 done in ") and len(lines) == 2
    with Stages(show=False).stage("quiet", 2) as done:
        done()
    assert capsys.readouterr().out == ""
    terminal = Console(file=io.StringIO(), force_terminal=True, width=100)
    with Stages(console=terminal, every_s=0).stage("timing", 4) as done:  # a bar, not lines
        for _ in range(4):
            done()
    drawn = terminal.file.getvalue()  # type: ignore[attr-defined]
    assert "timing" in drawn and "4/4" in drawn and "done in" not in drawn and capsys.readouterr().out == ""


def test_a_stage_stopped_or_skipped_says_so_not_done(capsys: pytest.CaptureFixture[str]) -> None:
    with Stages(every_s=3600).stage("reading", 5) as read:
        read()
        read.stop("too large")
    with Stages(every_s=3600).stage("whole", 2) as steps:  # not stopped: done, as before
        steps()
        steps()
    Stages().skip("searching", "too large")
    Stages(show=False).skip("quiet", "no reason")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "reading: 0/5" and re.fullmatch(r"reading: 1/5 stopped in \d+ s: too large", lines[1])
    assert lines[3].startswith("whole: 2/2 done in ") and lines[4:] == ["searching: skipped (too large)"]
    terminal = Console(file=io.StringIO(), force_terminal=True, width=120)
    with Stages(console=terminal).stage("reading", 5) as read:  # a bar: its description says where and why
        read()
        read.stop("too large")
    drawn = terminal.file.getvalue()  # type: ignore[attr-defined]
    assert "reading (stopped: too large)" in drawn and "1/5" in drawn


@pytest.mark.slow
def test_inference_cost_loads_each_fold_once_and_predicts_a_case_once_per_distinct_work(
    small_training: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import automed.infer.predictor as predictor_module
    from automed.select.inference_cost import measure

    w = small_training["W"]
    meta = read_meta(WorkDir(w).require_model())
    loads: list[Path] = []
    load = predictor_module.load_checkpoint

    def counted(path: Path) -> dict[str, object]:
        loads.append(path)
        return load(path)

    monkeypatch.setattr(predictor_module, "load_checkpoint", counted)
    table = measure(w, progress=Stages(every_s=0))
    assert len(loads) == len(set(loads)) == len(meta.folds)  # every fold once (it was once per setting)
    shown = capsys.readouterr().out.splitlines()
    n_cases, predictions = len(table["cases"]), len(table["settings"]) + len(table["fold_seconds_per_case"])
    total = n_cases * predictions
    assert shown[0].startswith("inference timing: ") and shown[0].endswith(f" case(s) of fold 0: 0/{total}")
    assert shown[-1].startswith("inference timing: ") and f": {total}/{total} done in " in shown[-1]

    # each setting's Dice is what a predictor of its own predicts, case by case (as select measured it before)
    plan = Plan.load(WorkDir(w).plan)
    ds = load_dataset(small_training["ds"])
    by_id = {c.case_id: c for c in ds.cases}
    cases = [read_case(by_id[c], ds.images_are_4d) for c in table["cases"]]
    values = sorted(int(k) for k in plan.labels)
    post = meta.inference.postprocessing
    own = {}
    for row in [r for r in table["settings"] if r["step"] == 0.5]:
        mirrors = row["mirrors"] if row["tta"] else meta.inference.mirrors
        pred = predictor_module.Predictor.from_folds(
            w, plan, meta.config, [meta.folds[0]], checkpoint=meta.checkpoint, postprocessing=post,
            tta=row["tta"], step=row["step"], mirrors=mirrors,
        )  # fmt: skip
        per_case = []
        for cd in cases:
            assert cd.label is not None
            per_case.append(
                dice_table(pred.predict_arrays(cd.channels, cd.geometry).labels, cd.label, values)
            )
        dice = dice_summary(per_case, values)["foreground_mean"]
        assert dice == row["dice"] or (math.isnan(dice) and math.isnan(row["dice"])), row
        own[(row["tta"], row["mirrors"])] = pred

    # these small cases fit a few patches: step 0.75 has step 0.5's windows, so it is that prediction and its time
    pred = next(iter(own.values()))
    shapes = [pred.preprocess(c.channels, c.geometry).data.shape[1:] for c in cases]  # a 3D network
    assert all(window_corners(s, pred.patch, 0.75) == window_corners(s, pred.patch, 0.5) for s in shapes)
    for tta, mirrors in {(r["tta"], r["mirrors"]) for r in table["settings"] if r["step"] == 0.75}:
        rows = {r["step"]: r for r in table["settings"] if (r["tta"], r["mirrors"]) == (tta, mirrors)}
        assert rows[0.75]["reused_cases"] == n_cases and rows[0.5]["reused_cases"] == 0
        assert rows[0.75]["seconds_per_case"] == rows[0.5]["seconds_per_case"]
        assert rows[0.75]["dice"] == rows[0.5]["dice"] or math.isnan(rows[0.5]["dice"])
    # one fold at step 0.5 with the training's TTA is the first setting's prediction: timed once
    (first,) = [r for r in table["settings"] if r["tta"] and r["step"] == 0.5 and r["candidate"]]
    assert table["fold_seconds_per_case"][1] == first["seconds_per_case"]
    assert table["fold_seconds_per_case"][len(meta.folds)] > 0


@pytest.mark.slow  # (a training: small_training)
def test_timings_stop_adding_cases_past_a_budgets_end(small_training: dict[str, Path]) -> None:
    """A --budget training timed its inference settings on five cases after the budget was used up (89 s of a
    90 s budget, on top of it): past the deadline the first case alone is timed, and the table says which."""
    from automed.select.inference_cost import measure_folds

    w = small_training["W"]
    meta = read_meta(WorkDir(w).require_model())
    plan = Plan.load(WorkDir(w).plan)
    dataset = str(small_training["ds"])
    args = (w, plan, meta.config, meta.folds, dataset, meta.inference.postprocessing)
    full = measure_folds(*args)
    late = measure_folds(*args, deadline=0.0)  # perf_counter() is past 0: the budget is used up
    assert len(full["cases"]) > 1 and late["cases"] == full["cases"][:1]
    assert [r["tta"] for r in late["settings"]] == [r["tta"] for r in full["settings"]]
