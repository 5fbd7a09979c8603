"""The largest component is labelled inside the mask's bounding box: the same voxels as labelling the whole image,
equal sizes included (the first in scan order wins in both)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from automed.runtime.postprocess import apply, largest_component


def _whole_image(mask: np.ndarray) -> np.ndarray:
    cc = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), False)
    out: np.ndarray = sitk.GetArrayFromImage(sitk.RelabelComponent(cc, sortByObjectSize=True)) == 1
    return out


@pytest.mark.parametrize("seed", range(4))
def test_same_voxels_as_labelling_the_whole_image(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(60):
        shape = tuple(int(n) for n in rng.integers(1, 12, size=int(rng.integers(2, 4))))
        mask = rng.random(shape) < rng.uniform(0.05, 0.6)
        assert np.array_equal(largest_component(mask), _whole_image(mask)), shape


def test_equal_components_far_from_the_border() -> None:
    """Three single voxels and two equal blobs inside a large empty image: the same winner as the whole image."""
    mask = np.zeros((40, 50, 60), dtype=bool)
    mask[10:12, 20:22, 30:32] = True
    mask[10:12, 30:32, 40:42] = True
    mask[5, 5, 5] = mask[35, 45, 55] = mask[20, 25, 30] = True
    got = largest_component(mask)
    assert got.shape == mask.shape and got.sum() == 8
    assert np.array_equal(got, _whole_image(mask))
    labels = mask.astype(np.int16) * 3
    assert np.array_equal(apply(labels, [{"kind": "largest_component", "labels": [3]}]) == 3, got)
    assert not largest_component(np.zeros((4, 4), dtype=bool)).any()
