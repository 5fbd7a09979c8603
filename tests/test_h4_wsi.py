"""Whole-slide defects found in a user-level audit: inputs that were silently skipped or mined into nonsense."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from automed.errors import AutomedError
from automed.testing.synthetic_wsi import default_scene, write_slide


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_slide(default_scene(1024, 768, mpp=0.5, seed=3), tmp_path_factory.mktemp("s") / "a.tif")


def test_a_folder_of_slides_and_pictures_is_refused_not_half_predicted(slide: Path, tmp_path: Path) -> None:
    """`automed predict` on a folder holding slides and plain images predicted the slides and skipped the images
    without a word; the user must split them (one run per kind)."""
    from automed.wsi.slide import slide_inputs

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "s.tif").write_bytes(slide.read_bytes())
    (folder / "notes.txt").write_text("not an image: ignored, as in a folder of images")
    assert [p.name for p in slide_inputs(folder) or []] == ["s.tif"]
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "patch.png")
    with pytest.raises(AutomedError, match=r"slides only") as err:
        slide_inputs(folder)
    assert "patch.png" in err.value.problems[0].value
