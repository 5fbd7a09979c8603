"""A Channel path naming a folder without a DICOM series gets automed's error alone: ITK's own warning ("No Series
were found", printed to the console by the C++ library) had come before it (review)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from automed.data.dataset import load_dataset
from automed.errors import DatasetError
from automed.workflow.prepare import verify


def test_a_folder_of_pngs_as_an_image_is_one_clear_error(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pngs").mkdir()
    rows = ["SubjectID,Channel_0,ValueToPredict", "s0,pngs,1"]
    for i in range(4):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / "pngs" / f"i{i}.png")
        rows.append(f"s{i + 1},pngs/i{i}.png,{i % 2}")
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DatasetError, match="an image folder must hold one DICOM series"):
        verify(load_dataset(tmp_path / "d.csv"), show_progress=False, workers=0)
    err = capfd.readouterr().err
    assert "GDCMSeriesFileNames" not in err and "No Series were found" not in err
