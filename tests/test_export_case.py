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
