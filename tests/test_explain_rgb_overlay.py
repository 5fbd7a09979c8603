"""explain's PNG shows a colour picture in colour: it drew the red channel in grey, so a green-stain fluorescence
picture saved as RGB (red empty) showed a uniform grey square under the map, and any RGB picture (dermoscopy,
histology) lost its colours. Volumes and one-channel pictures stay grey."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from automed.interpret.figure import overlay_image, write_overlay


def test_an_rgb_picture_is_drawn_in_colour(tmp_path: Path, drawn: list[tuple[Any, dict[str, Any]]]) -> None:
    rgb = np.zeros((3, 1, 12, 10), np.float32)
    rgb[1, 0, 3:9, 2:8] = 200.0  # the stain: green only
    values = np.zeros((1, 12, 10), np.float32)
    values[0, 4:6, 4:6] = 1.0
    write_overlay(overlay_image(rgb), values, (1.0, 1.0, 1.0), "c", tmp_path / "c.png")
    picture = drawn[0][0]
    assert picture.shape == (12, 10, 3)
    assert picture[5, 5, 1] == pytest.approx(1.0) and picture[5, 5, 0] == 0.0 and picture[0, 0].max() == 0.0


def test_volumes_and_one_channel_pictures_stay_grey(tmp_path: Path) -> None:
    gray = np.arange(120, dtype=np.float32).reshape(1, 1, 12, 10)
    assert overlay_image(gray).shape == (1, 12, 10)
    two = np.zeros((2, 4, 6, 6), np.float32)  # two MR channels: the first, in grey
    assert overlay_image(two).shape == (4, 6, 6)
    three_volumes = np.zeros((3, 4, 6, 6), np.float32)  # three channels of a volume are no colours
    assert overlay_image(three_volumes).shape == (4, 6, 6)
