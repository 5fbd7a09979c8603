"""The command line: every verb has --help with an example, runs, and fails with one clear message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from automed.cli import _debug_first, app
from automed.testing.synthetic import make_dataset

runner = CliRunner()
# every registered verb, read from the app itself: the verb groups (automed/cli/*.py) are merged into the top level
COMMANDS = dict(getattr(typer.main.get_command(app), "commands", {}))
VERBS = list(COMMANDS)


def test_verbs_are_top_level() -> None:
    some = {"verify", "construct-csv", "train", "demo", "sweep", "grid", "select", "export", "package", "ui"}
    assert some <= set(VERBS)
    assert not [v for v, cmd in COMMANDS.items() if hasattr(cmd, "commands")]  # no `automed GROUP VERB`


@pytest.mark.parametrize("verb", VERBS)
def test_help_has_an_example(verb: str) -> None:
    r = runner.invoke(app, [verb, "--help"])
    assert r.exit_code == 0, r.output
    assert "Example" in r.output and f"automed {verb}" in r.output


def test_version_is_printed_alone() -> None:
    from automed._version import __version__

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"automed {__version__}"


def test_verify_fingerprint_plan_preprocess(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", n_cases=3, shape=(10, 12, 12))
    wd = tmp_path / "W"
    r = runner.invoke(app, ["-q", "verify", str(root)])
    assert r.exit_code == 0 and "OK: 3 cases" in r.output
    r = runner.invoke(app, ["-q", "fingerprint", str(root), "-o", str(wd)])
    assert r.exit_code == 0 and (wd / "fingerprint.json").is_file()
    r = runner.invoke(
        app,
        ["-q", "plan", str(root), "-o", str(wd), "--no-preprocess", "--device", "cpu", "--memory-gb", "4"],
    )
    assert r.exit_code == 0, r.output
    plan = json.loads((wd / "plan.json").read_text())
    assert plan["configurations"]["3d_fullres"]["memory"]["device"] == "cpu"
    assert not (wd / "preprocessed").exists()
    r = runner.invoke(app, ["-q", "preprocess", str(root), "-o", str(wd), "-c", "3d_fullres"])
    assert r.exit_code == 0 and "preprocessed/3d_fullres: written" in r.output
    assert (wd / "splits.json").is_file()


@pytest.mark.slow  # a fresh interpreter runs two verbs (11 s): make test-fast stays under 3 minutes
def test_dataset_verbs_do_not_import_torch(tmp_path: Path) -> None:
    """verify, plan and preprocess need no torch: a mistyped path is answered in a second, not after torch loads.
    Both verbs run as the console script runs them, one after the other in one interpreter (one start-up instead of
    two): torch absent from its modules after both means neither imported it."""
    root = make_dataset(tmp_path / "d", n_cases=3, shape=(10, 12, 12))
    code = (
        "import json, runpy, sys\n"
        "for args in json.loads(sys.argv[1]):\n"
        "    sys.argv = ['automed', '-q', *args]\n"
        "    try:\n"
        "        runpy.run_module('automed.cli', run_name='__main__')\n"
        "    except SystemExit as exc:\n"
        "        print('exit', args[0], exc.code)\n"
        "    else:\n"
        "        print('exit', args[0], 0)\n"
        "print('torch imported:', 'torch' in sys.modules)"
    )
    verbs = [["verify", str(root)], ["plan", str(root), "-o", str(tmp_path / "W"), "--device", "cpu"]]
    r = subprocess.run(
        [sys.executable, "-c", code, json.dumps(verbs)], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr
    assert "exit verify 0" in r.stdout and "exit plan 0" in r.stdout, r.stdout + r.stderr
    assert "torch imported: False" in r.stdout
    assert (tmp_path / "W" / "preprocessed" / "3d_fullres").is_dir()


def test_info_runs() -> None:
    r = runner.invoke(app, ["info"])
    assert r.exit_code == 0 and "torch" in r.output and "cuda available" in r.output


def test_console_script_errors_exit_1(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "automed.cli", "plan", str(tmp_path / "nope"), "-o", str(tmp_path / "W")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr and "must exist" in r.stderr
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "automed.cli",
            "plan",
            "--preset",
            "defualt",
            str(tmp_path),
            "-o",
            str(tmp_path / "W"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 1


@pytest.mark.parametrize("where", ["before the verb", "after the verb"])
def test_debug_shows_traceback(tmp_path: Path, where: str) -> None:
    args = ["verify", str(tmp_path / "nope")]
    args = ["--debug", *args] if where == "before the verb" else [*args, "--debug"]
    r = subprocess.run(
        [sys.executable, "-m", "automed.cli", *args], capture_output=True, text=True, check=False
    )
    assert r.returncode != 0 and "Traceback" in r.stderr and "must exist" in r.stderr


def test_debug_is_moved_to_the_front_but_not_after_double_dash() -> None:
    assert _debug_first(["train", "d", "-o", "w", "--debug"]) == ["--debug", "train", "d", "-o", "w"]
    assert _debug_first(["--debug", "verify", "d"]) == ["--debug", "verify", "d"]
    assert _debug_first(["verify", "d"]) == ["verify", "d"]
    assert _debug_first(["verify", "--", "--debug"]) == ["verify", "--", "--debug"]
    assert _debug_first(["verify", "--debug", "--", "--debug"]) == ["--debug", "verify", "--", "--debug"]


def test_usage_error_is_clicks_message(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "automed.cli", "train", str(tmp_path), "--bogus"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 2 and "No such option: --bogus" in r.stderr
    assert "unexpected error" not in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("verb", ["train", "plan", "sweep", "patch-miner"])
def test_negative_workers_is_refused_before_any_work(tmp_path: Path, verb: str) -> None:
    """--workers -1 planned and preprocessed, then failed in torch's DataLoader with an unexpected ValueError."""
    data = make_dataset(tmp_path / "d", n_cases=2, shape=(8, 8, 8))
    r = runner.invoke(app, ["-q", verb, str(data), "-o", str(tmp_path / "W"), "--workers", "-1"])
    said = " ".join(r.output.replace("│", " ").split())  # click's box, wrapped at the terminal's width
    assert r.exit_code == 2 and "'--workers'" in said and "greater than or equal to 0" in said
    assert not (tmp_path / "W").exists()


@pytest.mark.parametrize("value", ["abc", "-2", "2.5"])
def test_a_bad_automed_workers_names_the_variable(
    tmp_path: Path, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """AUTOMED_WORKERS=abc ended in an unexpected ValueError (invalid literal for int()) naming no variable. The
    console entry point runs in this process (the variable is read when the verb runs, not at start-up)."""
    from automed import cli

    data = make_dataset(tmp_path / "d", n_cases=2, shape=(8, 8, 8))
    monkeypatch.setenv("AUTOMED_WORKERS", value)
    monkeypatch.setattr(cli, "handle_sigterm", lambda: None)  # leave pytest's own SIGTERM handling alone
    monkeypatch.setattr(sys, "argv", ["automed", "-q", "plan", str(data), "-o", str(tmp_path / "W")])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    said = " ".join(capsys.readouterr().err.split())
    assert exit_.value.code == 1 and "unexpected error" not in said, said
    assert f"AUTOMED_WORKERS: a worker count is a whole number of at least 0; found {value!r}" in said
    assert "Fix: " in said and not (tmp_path / "W").exists()


def test_export_repeats_is_at_least_one(tmp_path: Path) -> None:
    """--repeats -1 exported and reported a timing of no timed prediction."""
    r = runner.invoke(app, ["-q", "export", str(tmp_path / "M"), "--repeats", "0"])
    said = " ".join(r.output.replace("│", " ").split())
    assert r.exit_code == 2 and "'--repeats'" in said and "greater than or equal to 1" in said


def test_resume_refuses_another_output(tmp_path: Path) -> None:
    """``--resume W -o W2`` would train W while the user expects W2: refused before anything runs."""
    r = runner.invoke(app, ["-q", "train", "--resume", str(tmp_path / "W"), "-o", str(tmp_path / "W2")])
    assert r.exit_code != 0 and "--resume continues its own work dir" in str(r.exception)
    assert not (tmp_path / "W").exists() and not (tmp_path / "W2").exists()


@pytest.fixture
def budget_on_this_process_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's budget counted on this process's CPU time, one torch thread: what the budget buys (the probes'
    step times, folds, width, epochs, hence the held-out Dice) no longer depends on what else the machine runs.
    On wall time, a machine loaded by other jobs (load 20 on 2 cores) gave the probes 6 s per step, the 75 s went
    to preparation and probes, and the training got 0 iterations (no width chosen, no Dice). One thread: torch's
    threads spin at each step's barriers while another process holds the other core, which CPU time counts.
    Unloaded, a CPU second of one thread is a wall second, as the budget means it. The sequential folds train in
    this process, where the budget's clock (``time.perf_counter``) is read."""
    import time

    import torch

    torch.set_num_threads(1)  # restored after the test (conftest)
    monkeypatch.setattr(time, "perf_counter", time.process_time)


@pytest.mark.slow
def test_demo_trains_registers_and_predicts(
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    recwarn: pytest.WarningsRecorder,
    budget_on_this_process_cpu: None,
) -> None:
    from mlflow.tracking import MlflowClient

    from automed.testing.demo import run_demo

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = run_demo(tmp_path / "demo", budget="75s", show_progress=False, tracking_uri=uri)
    console = capfd.readouterr()
    assert "Downloading artifacts" not in console.err + console.out  # MLflow's progress bars stay quiet
    assert not [
        w for w in recwarn if "type hint" in str(w.message)
    ]  # no pyfunc type-hint warning at registration
    (exp,) = [e for e in MlflowClient(tracking_uri=uri).search_experiments() if e.name != "Default"]
    assert (
        exp.tags["mlflow.experimentKind"] == "custom_model_development"
    )  # the UI opens on the training runs
    assert res["registered"]["champion"] == "1"
    assert res["report"].is_file() and "Training curves (every fold)" in res["report"].read_text()
    assert res["folds_reason"].startswith(
        "folds auto: 1 of 5"
    )  # a tiny budget trains one model, and says why
    assert "width auto: 16 base features" in res["folds_reason"]  # a narrower one, for more iterations
    assert set(res["dice"]) == {"case_000", "case_001"}
    model = json.loads((tmp_path / "demo" / "work" / "model.json").read_text())
    assert (
        model["inference"]["mirrors"] == "even"
    )  # the preset's mirror set, also what its CV was scored with
    for d in res["dice"].values():
        assert d["large"] >= 0.80
    plan = json.loads((tmp_path / "demo" / "work" / "plan.json").read_text())
    assert plan["n_channels"] == 2 and set(plan["labels"]) == {"0", "1", "2"}
    # anisotropic demo data (3 mm slices, 1 mm in-plane): in-plane-first topology
    assert plan["configurations"]["3d_fullres"]["network"]["kernel_sizes"][0] == [1, 3, 3]


def test_importing_the_registered_model_class_warns_nothing() -> None:
    r = subprocess.run(
        [sys.executable, "-W", "default", "-c", "import automed.registry_model"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and "Warning" not in r.stderr, r.stderr[-2000:]


def test_an_end_of_file_deep_in_a_command_is_a_message_not_a_silent_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """click turns an EOFError (np.load of a truncated file) into Abort: the command exited 1 printing nothing,
    even with --debug. A damaged validation file is also a clear error of its own in select."""
    from automed import api
    from automed.cli import main
    from automed.errors import ArtifactError
    from automed.select.selection import _probabilities

    def truncated(*args: object, **kwargs: object) -> None:
        raise EOFError("No data left in file")

    monkeypatch.setattr(api, "verify", truncated, raising=False)
    monkeypatch.setattr(sys, "argv", ["automed", "verify", str(tmp_path)])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 1 and "unexpected error: EOFError: No data left in file" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["automed", "--debug", "verify", str(tmp_path)])
    with pytest.raises(EOFError):
        main()
    (tmp_path / "case.npz").write_bytes(b"")
    with pytest.raises(ArtifactError, match="automed train --resume"):
        _probabilities(tmp_path / "case.npz")


def test_sweep_table_is_whole_in_a_log_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A README audit: `automed sweep ... > sweep.log` (CI, a SLURM job) printed the trials table at the 80 columns
    rich assumes off a terminal, each of its 13 columns cut to `tr…`, `st…`, `p.…`: nothing of it readable. Off a
    terminal the table is now as wide as its cells need."""
    from types import SimpleNamespace

    import pandas as pd

    from automed import api

    table = pd.DataFrame(
        [["749cc6c4", False, "timed out", "", 0, 0, float("nan"), float("nan"), 0.0, "sgd", 0.0105, 0.8996, 1.057]],
        columns=["trial", "default", "status", "duplicate_of", "folds_done", "epochs", "fold0_score", "cv_score",
                 "compute_s", "p.optimizer", "p.lr_sgd", "p.batch_size_scale", "p.augmentation_strength"],
    )  # fmt: skip
    res = SimpleNamespace(
        table=table, failures=[], verdict="verdict", best=None, workdir=tmp_path, outcomes=[]
    )
    monkeypatch.setattr(api, "sweep", lambda *a, **k: res)
    r = runner.invoke(app, ["-q", "sweep", str(tmp_path), "-o", str(tmp_path / "S")], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    for said in ("trial", "749cc6c4", "timed out", "p.augmentation_strength", "p.batch_size_scale", "0.8996"):
        assert said in r.output, said
    assert "…" not in r.output


def test_select_says_what_it_times_before_the_silent_minutes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A README audit: `automed select work -o sel` on a segmentation training printed nothing for 12 minutes (a
    loaded 2-core machine) while it timed TTA/step/fold settings, then everything at once. It now says first what it
    is about to time and how to skip it; with --no-inference it does not."""
    from automed import api

    said: list[str] = []

    def select(*a: object, **k: object) -> dict[str, object]:
        said.append(f"select ran, showing its stages: {k['show_progress']}")
        return {"candidates": [], "decisions": [], "chosen": {"candidate": "w"}}

    monkeypatch.setattr(api, "select", select)
    r = runner.invoke(app, ["select", str(tmp_path), "-o", str(tmp_path / "S")], env={"COLUMNS": "400"})
    assert r.exit_code == 0 and said, r.output
    text = " ".join(r.output.split())
    assert (
        text.startswith("comparing 1 training(s) on cross-validation") and "--no-inference skips it" in text
    )
    r = runner.invoke(app, ["select", str(tmp_path), "-o", str(tmp_path / "S"), "--no-inference"])
    assert r.exit_code == 0 and "comparing" not in r.output
    r = runner.invoke(app, ["-q", "select", str(tmp_path), "-o", str(tmp_path / "S")])  # no progress with -q
    assert r.exit_code == 0 and said == [
        f"select ran, showing its stages: {shown}" for shown in (True, True, False)
    ]


def test_quiet_is_moved_to_the_front_like_debug() -> None:
    """``automed predict W -i I -o O -q`` was "No such option: -q" (the flag is automed's, before the verb)."""
    assert _debug_first(["predict", "w", "-q"]) == ["-q", "predict", "w"]
    assert _debug_first(["train", "d", "--quiet", "--debug"]) == ["--debug", "--quiet", "train", "d"]
    assert _debug_first(["-q", "verify", "d"]) == ["-q", "verify", "d"]
    assert _debug_first(["verify", "--", "-q"]) == ["verify", "--", "-q"]


def test_python_dash_m_automed_is_the_command() -> None:
    """``python -m automed`` failed with "No module named automed.__main__" (only ``python -m automed.cli`` ran)."""
    done = subprocess.run(
        [sys.executable, "-m", "automed", "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0 and "python -m automed" in done.stdout and "train" in done.stdout
