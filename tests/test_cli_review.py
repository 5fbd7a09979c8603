"""CLI review findings: `--output=~/w` (no shell expansion) made a folder named `~`; a path with brackets was
printed as rich markup (`out[t1].csv` shown as `out.csv`); lines in a pipe were cut at 80 columns mid-path;
construct-csv with one ending given twice added a false "no subject folder"; an -o the system refuses (a part
of it a file) was an "unexpected error"."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from automed import cli
from automed.cli import app
from automed.testing.synthetic import make_dataset


def test_a_tilde_in_a_work_dir_is_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    ds = make_dataset(tmp_path / "d", n_cases=3, shape=(8, 12, 12), seed=0)
    r = CliRunner().invoke(app, ["-q", "fingerprint", str(ds), "--output=~/w"])
    assert r.exit_code == 0, r.output
    assert (home / "w" / "fingerprint.json").is_file() and not (tmp_path / "~").exists()


def _subjects(root: Path) -> Path:
    for s in ("a", "b"):
        (root / s).mkdir(parents=True)
        (root / s / f"{s}_t1.nii.gz").write_bytes(b"x")
    return root


def test_paths_are_printed_as_they_are_whole_lines(tmp_path: Path) -> None:
    root = _subjects(tmp_path / "subjects")
    long = tmp_path / ("a_folder_name_long_enough_to_pass_eighty_columns_" * 2) / "out[t1].csv"
    r = CliRunner().invoke(app, ["construct-csv", str(root), "--channels", "_t1.nii.gz", "-o", str(long)])
    assert r.exit_code == 0, r.output
    assert long.is_file() and str(long) in r.output  # brackets kept, one line


def test_an_ending_given_twice_is_one_clear_error(tmp_path: Path) -> None:
    from automed.data.csv_construct import construct_csv
    from automed.errors import DatasetError

    root = _subjects(tmp_path / "subjects")
    with pytest.raises(DatasetError) as err:
        construct_csv(root, ["_t1.nii.gz", "_t1.nii.gz"], None, tmp_path / "o.csv")
    text = str(err.value)
    assert "each ending names one channel or the label; found ['_t1.nii.gz'] given twice" in text
    assert "needs at least one subject folder" not in text


def test_an_output_path_the_system_refuses_is_named_with_a_fix(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "d", n_cases=3, shape=(8, 8, 8))
    (tmp_path / "afile").write_text("x")
    r = subprocess.run(
        [sys.executable, "-m", "automed.cli", "-q", "fingerprint", str(ds), "-o", str(tmp_path / "afile" / "w")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "unexpected error" not in said, said
    assert f"{tmp_path / 'afile' / 'w'}: the system refused it; found Not a directory" in said
    assert "a part of the path is a file" in said
    full = cli._os_refusal(OSError(errno.ENOSPC, "No space left on device", "/data/w/plan.json"))
    assert full == (
        "error: /data/w/plan.json: the system refused it; found No space left on device. "
        "Fix: free space there or choose another --output"
    )
    assert cli._os_refusal(ValueError("x")) is None and cli._os_refusal(OSError("no path")) is None
