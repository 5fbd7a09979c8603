"""predict --review's picture of a classification or regression input shows it as a viewer does: the middle axial
slice in radiological convention (anterior up, the patient's right on the left) at its spacing's aspect, whatever the
image's direction, and an RGB picture in its colours. It showed the middle slice in voxel order (an image stored
rotated appeared rotated; label-map reviews were fixed in d30056c) and an RGB picture's red channel in grey."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

from automed.evaluate.review import image_figure
from automed.evaluate.viewing import shown_image


def test_a_rotated_volume_is_shown_as_a_viewer_does(drawn: list[tuple[Any, dict[str, Any]]]) -> None:
    arr = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)
    image = sitk.GetImageFromArray(arr)
    image.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, -1))  # x runs posterior, y right, z down
    image.SetSpacing((0.5, 0.8, 3.0))
    image_figure(arr, "c", {"prediction": 12.5}, image.GetDirection(), (3.0, 0.8, 0.5))
    lps = sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS"))
    picture, aspect = drawn[0][0], drawn[0][1].get("aspect")
    assert np.array_equal(picture, lps[lps.shape[0] // 2])
    spacing = sitk.DICOMOrient(image, "LPS").GetSpacing()  # x, y, z
    assert aspect == pytest.approx(spacing[1] / spacing[0])


def test_an_rgb_picture_is_shown_in_colour(drawn: list[tuple[Any, dict[str, Any]]]) -> None:
    channels = np.zeros((3, 1, 8, 9), np.float32)
    channels[1, 0, 2:6, 2:6] = 180.0  # green only
    image_figure(
        shown_image(channels), "c", {"prediction": "a", "probability_a": 0.9}, (1, 0, 0, 1), (1.0, 1.0, 1.0)
    )
    picture = drawn[0][0]
    assert picture.shape == (8, 9, 3) and picture[3, 3, 1] == pytest.approx(1.0) and picture[3, 3, 0] == 0.0
    assert shown_image(channels[:1]).shape == (1, 8, 9)


def test_a_single_slice_stored_coronal_is_shown_whole(
    drawn: list[tuple[Any, dict[str, Any]]], tmp_path: Any
) -> None:
    """A picture stored as a one-slice NIfTI with a coronal direction (a chest X-ray from dcm2niix): the axial view
    of one slice is one row of voxels, and both pictures showed that row (explain's PNG, predict --review's)."""
    from automed.interpret.figure import write_overlay

    arr = np.random.default_rng(1).normal(size=(1, 12, 10)).astype(np.float32)
    coronal = (1, 0, 0, 0, 0, 1, 0, -1, 0)
    image_figure(arr, "c", {"prediction": 1.5}, coronal, (1.0, 0.5, 0.5))
    write_overlay(arr, np.abs(arr), (1.0, 0.5, 0.5), "c", tmp_path / "c.png", coronal)
    assert np.array_equal(drawn[0][0], arr[0]) and np.array_equal(drawn[1][0], arr[0])
