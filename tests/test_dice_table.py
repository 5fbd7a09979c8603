"""Selection's per-case Dice counts a label map's values in a few passes: the same numbers as comparing value by
value, for every integer type, absent labels and values the maps hold but nobody asked for; other maps (negative
values, floats) are compared value by value (the way every map was scored before, kept as the reference here)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from automed.select.selection import _dice_by_value as _value_by_value
from automed.select.selection import dice_table


def _same(a: dict[int, float], b: dict[int, float]) -> bool:
    return a.keys() == b.keys() and all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.int64, np.uint16, np.uint64])
def test_counted_equals_value_by_value(dtype: type) -> None:
    rng = np.random.default_rng(3)
    for _ in range(40):
        shape = tuple(int(n) for n in rng.integers(1, 9, size=3))
        pred = rng.choice([0, 1, 2, 5, 7], size=shape).astype(dtype)
        ref = rng.choice([0, 1, 2, 5, 9], size=shape).astype(dtype)
        values = [0, 1, 2, 3, 5, 11]  # 3 and 11 in neither map (NaN), 7 and 9 in a map but not asked for
        assert _same(dice_table(pred, ref, values), _value_by_value(pred, ref, values))


def test_maps_that_are_no_label_maps_are_compared_value_by_value() -> None:
    pred = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.int16)
    ref = np.array([[-1, 1, 2], [2, 2, 0]], dtype=np.int16)  # a value that is no class
    assert _same(dice_table(pred, ref, [0, 1, 2]), _value_by_value(pred, ref, [0, 1, 2]))
    floats = ref.astype(np.float32)
    assert _same(dice_table(pred, floats, [0, 1, 2]), _value_by_value(pred, floats, [0, 1, 2]))
    assert dice_table(pred, ref, [0, 1, 2]) == {1: 2 * 1 / 3, 2: 2 * 2 / 5}
    empty = np.zeros((0, 3), dtype=np.int16)
    assert _same(dice_table(empty, empty, [0, 1]), {1: math.nan})
