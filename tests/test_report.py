"""``automed report``: Holm's correction and Wilcoxon tests against scipy, outliers, and a self-contained page with
every named section (its browser check runs where Debian's chromium is installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from automed import api
from automed.evaluate.report import holm, outliers, paired_tests


def test_holm_matches_hand_values() -> None:
    # p = 0.01, 0.04, 0.03 -> sorted 0.01*3, 0.03*2, 0.04*1 -> 0.03, 0.06, then max(0.06, 0.04) = 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def _table(run: str, dice: np.ndarray, names: tuple[str, ...] = ("anterior",)) -> pd.DataFrame:
    rows = [
        {
            "run": run,
            "case": f"c{i}",
            "label": str(k + 1),
            "name": n,
            "dice": float(d),
            "hd95": 2.0 - float(d),
        }
        for k, n in enumerate(names)
        for i, d in enumerate(dice)
    ]
    return pd.DataFrame(rows)


def test_paired_wilcoxon_equals_scipy_and_names_the_better_run() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0.7, 0.9, 20)
    b = a + rng.normal(0.03, 0.02, 20)
    tests = paired_tests(pd.concat([_table("A", a), _table("B", b)]))
    (t,) = tests
    ref = stats.wilcoxon(a, b)
    assert t["p_value"] == pytest.approx(ref.pvalue) and t["statistic"] == pytest.approx(ref.statistic)
    assert t["better"] == "B" and t["median_difference"] == pytest.approx(float(np.median(b - a)))
    assert t["p_holm"] == pytest.approx(t["p_value"])  # one test: nothing to correct


def test_structures_come_in_the_order_of_their_label_values_and_keep_them() -> None:
    """Labels are read as text (one run names them, another numbers them); the tests still go 2 before 10 and give
    a numbered label back as its value."""
    rng = np.random.default_rng(1)
    a = rng.uniform(0.7, 0.9, 8)
    names = tuple(f"s{k}" for k in range(1, 11))  # labels "1" ... "10"
    tests = paired_tests(pd.concat([_table("A", a, names), _table("B", a + 0.01, names)]))
    assert [t["label"] for t in tests] == list(range(1, 11))
    worst = outliers(_table("A", a, names), worst=1)
    assert [w["label"] for w in worst] == list(range(1, 11))
    named = _table("A", a).assign(label="outer")  # a name stays a name, after the numbers
    mixed = pd.concat([_table("A", a, ("x", "y")), named])
    assert [w["label"] for w in outliers(mixed, worst=1)] == [1, 2, "outer"]


def test_regression_runs_get_a_wilcoxon_on_absolute_errors_and_a_printable_line() -> None:
    from automed.cli.tools import _test_line
    from automed.evaluate.report import paired_error_tests

    rng = np.random.default_rng(3)
    err_a = rng.uniform(0, 100, 15)
    err_b = err_a + rng.uniform(5, 20, 15)  # run b is worse on every case
    table = pd.concat(
        [
            pd.DataFrame({"run": r, "case": [f"c{i}" for i in range(15)], "abs_error": e})
            for r, e in (("a", err_a), ("b", err_b))
        ]
    )
    (test,) = paired_error_tests(table)
    assert test["p_value"] == pytest.approx(stats.wilcoxon(err_a, err_b).pvalue)
    assert test["better"] == "a" and test["median_difference"] == pytest.approx(np.median(err_b - err_a))
    line = _test_line(test)  # what `automed report` prints for it (it once expected a structure name)
    assert (
        line.startswith("Wilcoxon (absolute errors): a vs b") and f"{test['median_difference']:+.4g}" in line
    )


def test_outliers_list_the_worst_and_those_beyond_the_fence() -> None:
    dice = np.array([0.9, 0.91, 0.92, 0.9, 0.89, 0.91, 0.2])
    out = outliers(_table("A", dice), worst=2)
    cases = {o["case"]: o["why"] for o in out}
    assert cases["c6"] == "beyond 1.5 IQR" and cases["c4"] == "worst 2" and len(out) == 2


@pytest.fixture()
def two_runs(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(1)
    paths = []
    for run, shift in (("unet", 0.0), ("unet_big", 0.05)):
        folder = tmp_path / run
        folder.mkdir()
        dice = np.clip(rng.uniform(0.6, 0.9, 12) + shift, 0, 1)
        _table(run, dice, ("anterior", "posterior")).drop(columns="run").to_csv(
            folder / "metrics.csv", index=False
        )
        paths.append(folder)
    return paths


def test_a_moved_training_gets_its_report_but_no_new_store(two_runs: list[Path], tmp_path: Path) -> None:
    """A work dir whose MLflow store is gone (moved, copied) or no longer holds its run: the report is written and
    the MLflow copy skipped with a warning - no empty store is created, the command does not fail."""
    import json

    from mlflow.tracking import MlflowClient

    gone = tmp_path / "gone.db"
    (two_runs[0] / "tracking.json").write_text(
        json.dumps({"uri": f"sqlite:///{gone}", "experiment": "x", "parent_run_id": "0" * 32})
    )
    empty = tmp_path / "empty.db"
    MlflowClient(tracking_uri=f"sqlite:///{empty}").search_experiments()  # a store without the run
    (two_runs[1] / "tracking.json").write_text(
        json.dumps({"uri": f"sqlite:///{empty}", "experiment": "x", "parent_run_id": "0" * 32})
    )
    res = api.report(two_runs, tmp_path / "R")
    assert res.page.is_file() and res.logged == [] and not gone.exists()


def test_report_page_holds_every_section_offline(two_runs: list[Path], tmp_path: Path) -> None:
    res = api.report(two_runs, tmp_path / "R")
    page = res.page.read_text()
    for title in ("Mean per run and structure", "Distributions", "Paired Wilcoxon signed-rank tests",
                  "Run vs run", "Outliers", "Per case"):  # fmt: skip
        assert title in page, title
    assert page.count("data:image/png;base64,") == 2 and "<script" not in page
    assert not re.search(r"(src|href)=\"https?:", page)
    for f in ("boxplots.png", "scatter.png", "wilcoxon.csv", "outliers.csv", "cases.csv"):
        assert (res.folder / f).is_file(), f
    assert len(res.tests) == 2 and {t["name"] for t in res.tests} == {"anterior", "posterior"}


def headless_chromium(page: str, shot: Path) -> str:
    """Open ``page`` in headless Chromium, save a screenshot, and return its verbose log (console messages are
    logged as ``INFO:CONSOLE``, every request as ``NotifyBeforeURLRequest: URL``)."""
    r = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=1",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-features=NetworkTimeServiceQuerying",
         f"--screenshot={shot}", "--window-size=1300,2000", page],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0 and shot.stat().st_size > 10_000, r.stderr[-2000:]
    return r.stderr


BROWSER_SERVICES = (
    "google.com",
    "googleapis.com",
    "gstatic.com",
    "gvt1.com",
)  # Chromium's own background calls


def page_requests(log: str) -> list[str]:
    """Network requests in a :func:`headless_chromium` log, other than local files and the browser's services."""
    urls = re.findall(r"NotifyBeforeURLRequest: (\S+)", log)
    hosts = [
        (u, re.sub(r"^\w+://([^/:?]+).*$", r"\1", u)) for u in urls if not u.startswith(("file:", "data:"))
    ]
    return [u for u, h in hosts if not any(h == s or h.endswith("." + s) for s in BROWSER_SERVICES)]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed here")
def test_report_opens_in_headless_chromium(two_runs: list[Path], tmp_path: Path) -> None:
    import os

    res = api.report(two_runs, tmp_path / "R")
    artifacts = Path(os.environ.get("AUTOMED_TEST_ARTIFACTS", tmp_path))  # CI may keep the screenshot
    artifacts.mkdir(parents=True, exist_ok=True)
    log = headless_chromium(res.page.as_uri(), artifacts / "report.png")
    assert "INFO:CONSOLE" not in log  # no console errors (or messages at all)
    assert not page_requests(log), page_requests(log)  # the page asks the network for nothing


def test_runs_without_common_cases_are_named_not_tested(tmp_path: Path) -> None:
    """Runs under different pseudonyms share no case: no paired test, and the page names them; an MLflow run's
    task comes from its CV table when its score was never logged (undefined)."""
    from automed.workflow.report_inputs import _task_of
    from automed.workflow.report_page import not_compared

    cases = pd.DataFrame({"run": ["a", "a", "b", "b"], "case": ["x", "y", "p1", "p2"], "label": 1, "name": "s",
                          "dice": [0.8, 0.7, 0.9, 0.6]})  # fmt: skip
    assert paired_tests(cases) == []
    assert "a / b" in not_compared(cases)[0][1]
    # two work dirs of other cases (a README audit: the page blamed MLflow pseudonyms): the cause said is theirs
    assert "validated on different cases" in not_compared(cases)[0][1]
    assert "pseudonyms" not in not_compared(cases)[0][1]
    keyed = cases.assign(case=["x", "y", "case-0123456789ab", "case-ba9876543210"])
    assert "An MLflow run&#x27;s CV table carries its training&#x27;s pseudonyms" in not_compared(keyed)[0][1]
    assert not_compared(cases.assign(case=["x", "y", "x", "y"])) == []
    for columns, task in (("case,label,dice", "segmentation"), ("case,target,prediction,probability_a",
                          "classification"), ("case,target,prediction", "regression")):  # fmt: skip
        (tmp_path / "m.csv").write_text(columns + "\n")
        assert _task_of({}, tmp_path / "m.csv") == task
    assert _task_of({"cv_auc": 0.5}, tmp_path / "m.csv") == "classification"


def test_selection_tables_name_candidates_as_the_page_names_their_runs() -> None:
    """Two selections of trainings with the same folder names: the page renames the second pair (t0001-3 ...);
    the selection tables said t0001 for both. Each table names its selection folder; postprocessing in words."""
    from automed.workflow.report import _selection_sections

    def sel(folder: str, root: str) -> dict[str, object]:
        a, b = f"{root}/trials/t0000", f"{root}/trials/t0001"
        cands = [
            {"candidate": "t0001", "members": [b], "foreground_mean": 0.4},
            {"candidate": "t0000", "members": [a]},
        ]
        post = [{"kind": "largest_component", "labels": [1]}]
        return {"folder": folder, "candidates": cands, "chosen": cands[0], "postprocessing": post}

    shown = {"/x/S6/trials/t0000": "t0000", "/x/S6/trials/t0001": "t0001",
             "/x/S7/trials/t0001": "t0001-3", "/x/S7/trials/t0000": "t0000-4"}  # fmt: skip
    (h6, t6), (h7, t7) = _selection_sections([sel("S6", "/x/S6"), sel("S7", "/x/S7")], shown)
    assert "Selection S6" in h6 and "Selection S7" in h7 and "largest connected component of labels [1]" in h7
    assert "t0001-3" in t7 and "t0000-4" in t7 and "t0001-3" not in t6


def test_a_sweep_folder_or_a_trial_run_given_to_report_gets_a_fix_that_works(tmp_path: Path) -> None:
    """A sweep folder was told to "train it first"; a trial's MLflow run (no cv/ artifacts) to pass the store's
    --tracking-uri, which was right already."""
    from mlflow.tracking import MlflowClient

    from automed import api
    from automed.errors import ArtifactError

    sweep = tmp_path / "S1"
    sweep.mkdir()
    (sweep / "sweep.json").write_text("{}")
    with pytest.raises(ArtifactError, match="S1/selection"):
        api.report([sweep], tmp_path / "R1", log_to_mlflow=False)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("e"), tags={"trial": "t0001"}).info.run_id
    with pytest.raises(ArtifactError, match="a sweep trial's run without cv/"):
        api.report([f"runs:/{run}"], tmp_path / "R2", tracking_uri=uri, log_to_mlflow=False)


def test_an_output_named_like_a_page_is_refused_before_any_work(tmp_path: Path) -> None:
    """``-o rep.html`` became a folder named like a page with report.html inside it: refused, naming a folder."""
    from automed import api
    from automed.errors import ConfigError

    with pytest.raises(ConfigError, match=r"is a folder.*-o .*rep\b") as err:
        api.report([tmp_path / "nowhere"], tmp_path / "rep.html")
    assert "rep.html" in str(err.value) and not (tmp_path / "rep.html").exists()


def test_metrics_outputs_with_and_without_label_names_make_one_page(tmp_path: Path) -> None:
    """`automed metrics` without --labels names label 1 by its value, with --labels by its name: the report read
    the names as a mix of numbers and strings and stopped with "'<' not supported between instances of 'str' and
    'int'"; they are text now, and a case ID 007 stays 007."""
    import SimpleITK as sitk

    for d in ("pred", "ref"):
        (tmp_path / d).mkdir()
    for i in range(3):
        a = np.zeros((6, 12, 12), np.uint8)
        a[1:5, 2:8, 2:8] = 1
        sitk.WriteImage(sitk.GetImageFromArray(a), str(tmp_path / "ref" / f"00{i}.nii.gz"))
        a[1:5, 2:8, 7 - i : 8] = 0
        sitk.WriteImage(sitk.GetImageFromArray(a), str(tmp_path / "pred" / f"00{i}.nii.gz"))
    (tmp_path / "dataset.json").write_text('{"labels": {"background": 0, "outer": 1}}')
    api.metrics(tmp_path / "pred", tmp_path / "by_value", reference=tmp_path / "ref")
    api.metrics(
        tmp_path / "pred", tmp_path / "by_name", reference=tmp_path / "ref", labels=tmp_path / "dataset.json"
    )
    res = api.report([tmp_path / "by_value", tmp_path / "by_name"], tmp_path / "R", log_to_mlflow=False)
    page = res.page.read_text()
    # one structure under its name (it had been two, "1" and "outer", with no pair to test)
    assert "outer" in page and [t["name"] for t in res.tests] == ["outer"]
    cases = pd.read_csv(res.folder / "cases.csv", dtype=str)
    assert set(cases["case"]) == {"000", "001", "002"} and set(cases["name"]) == {"outer"}


def test_a_mistyped_run_is_named_as_missing_not_as_another_problem(tmp_path: Path) -> None:
    """A missing run was "no segmentation run", and beside a classification run "runs of one problem; found
    ['None', 'classification']": each is now named for what it is, before any output is written."""
    from automed.errors import ArtifactError

    run = tmp_path / "work_cls"
    (run / "cv").mkdir(parents=True)
    (run / "model.json").write_text('{"task": "classification"}')  # what tells the report an image-level run
    with pytest.raises(
        ArtifactError, match=r"nowhere.*every run given to a report must exist; found missing"
    ):
        api.report([tmp_path / "nowhere"], tmp_path / "R1", log_to_mlflow=False)
    with pytest.raises(ArtifactError, match=r"nowhere.*must exist"):
        api.report([run, tmp_path / "nowhere"], tmp_path / "R2", log_to_mlflow=False)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    with pytest.raises(ArtifactError, match=r"notes: a report compares runs: .* found no model.json") as err:
        api.report([run, tmp_path / "notes"], tmp_path / "R3", log_to_mlflow=False)
    assert "one problem" not in str(err.value)
    seg = tmp_path / "work_seg"
    (seg / "cv").mkdir(parents=True)
    (seg / "model.json").write_text('{"task": "segmentation"}')
    with pytest.raises(
        ArtifactError, match=r"runs of one problem; found \['classification', 'segmentation'\]"
    ):
        api.report([run, seg], tmp_path / "R4", log_to_mlflow=False)
    assert not any((tmp_path / r).exists() for r in ("R1", "R2", "R3", "R4"))


def test_an_automed_metrics_output_is_not_called_cross_validation(tmp_path: Path) -> None:
    """A test set scored by ``automed metrics`` was shown under "Cross-validation numbers per run"."""
    table = tmp_path / "scored.csv"
    pd.DataFrame({"SubjectID": ["a", "b", "c", "d"], "Target": ["x", "y", "x", "y"],
                  "Prediction": ["x", "y", "y", "y"]}).to_csv(table, index=False)  # fmt: skip
    api.metrics(table, tmp_path / "test_scores")
    res = api.report([tmp_path / "test_scores"], tmp_path / "R", log_to_mlflow=False)
    text = res.page.read_text()
    assert "Cross-validation numbers per run" not in text
    assert "Numbers per run (test_scores: the cases automed metrics scored)" in text
