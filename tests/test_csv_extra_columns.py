"""A hospital CSV with extra columns (age, site) is told how to keep them: as ``Info_*`` columns, which are ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from automed.data.dataset import load_dataset
from automed.errors import DatasetError


def test_an_extra_column_is_told_the_info_prefix(tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text("\ufeffSubjectID,Channel_0,ValueToPredict,Age\na,a.png,normal,41\n", encoding="utf-8")
    with pytest.raises(DatasetError) as exc:
        load_dataset(csv)
    (p,) = exc.value.problems
    assert p.value == "'Age'" and "Info_Age" in p.fix


def test_a_misspelt_column_is_told_its_likely_name(tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text("SubjectID,Channel_0,ValueToPredikt\na,a.png,normal\n")
    with pytest.raises(DatasetError) as exc:
        load_dataset(csv)
    (p,) = exc.value.problems
    assert "ValueToPredict" in p.fix and "Info_" not in p.fix
