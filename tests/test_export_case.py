"""``automed export --case``: a mistyped parity case is named by its option before the model is loaded (it read
"the input must exist ... Fix: pass a folder, a DICOM folder or a CSV", predict's words for ``-i``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from automed import api
from automed.errors import ConfigError


def test_a_missing_parity_case_is_named_by_its_option(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"--case: the parity case must exist.*nope\.png.*leave --case out"
    ) as err:
        api.export(tmp_path / "work", tmp_path / "E", case=tmp_path / "nope.png")
    assert "a CSV" not in str(err.value) and not (tmp_path / "E").exists()


def test_a_parity_case_under_the_home_folder_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--case=~/c.nii.gz`` reaches automed unexpanded (the shell expands no ``~`` after ``=``): it was refused as
    missing though it exists; the model is what is missing here."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "c.nii.gz").write_bytes(b"")
    with pytest.raises(Exception) as err:
        api.export(tmp_path / "work", tmp_path / "E", case="~/c.nii.gz")
    assert "--case" not in str(err.value) and "work" in str(err.value)
