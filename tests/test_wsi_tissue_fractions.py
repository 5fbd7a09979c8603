"""The patch miner's tissue fractions of every grid position at once (a summed-area table) equal the one-box
fraction at each position, at the slide's edges too: a 100,000-pixel slide at --overlap 0.9 (five million
positions) had taken 270 s of one Python call each before its first patch, with no progress shown."""

from __future__ import annotations

import numpy as np

from automed.wsi.tissue import TissueMask


def test_fractions_of_all_positions_equal_each_boxs_fraction() -> None:
    rng = np.random.default_rng(0)
    mask = TissueMask(rng.random((37, 53)) > 0.4, 7.3, 0.1, np.zeros((1, 1, 3), np.uint8))
    height, width = 37 * 7.3, 53 * 7.3
    positions = [(x, y) for y in range(0, int(height), 5) for x in range(0, int(width), 5)]
    positions += [(int(width) - 1, int(height) - 1), (int(width) + 40, 0), (0, 0)]  # edges, one past the mask
    for size in (3, 16, 50):
        each = [mask.fraction(x, y, size, size) for x, y in positions]
        assert np.array_equal(mask.fractions(positions, size, size), np.asarray(each))
    assert mask.fractions([], 16, 16).shape == (0,)
