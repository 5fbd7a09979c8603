"""The class-bias search tries each label's offsets from a ranking of the classes (O(voxels) per try, not O(labels x
voxels)): it must choose exactly what trying every offset vector through a full argmax chooses, ties included."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import automed.select.class_bias as cb


def _full_argmax_search(cases: list[cb._Case], k: int) -> tuple[np.ndarray, dict[str, Any]]:
    """The search as first written: every tried offset vector scored through a full argmax."""
    offsets = np.zeros(k, dtype=np.float32)
    base = cb._summary(cases, offsets)
    best = base
    for _ in range(cb.ROUNDS):
        for c in range(1, k):
            for x in cb.GRID:
                trial = offsets.copy()
                trial[c] = x
                s = cb._summary(cases, trial)
                if cb._allowed(s, base) and s["foreground_mean"] > best["foreground_mean"] + 1e-9:
                    best, offsets = s, trial
    return offsets, best


def _cases(k: int, seed: int, n: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    """Probabilities on a coarse grid (so that classes tie) from a model that draws label 1 too large and label 2
    too small; a reference that mostly follows the unbiased probabilities; some voxels of a value that is no class."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        true = rng.gamma(0.6, size=(k, 6, 7, 8)) + 1e-3
        ref = true.argmax(0)
        ref = np.where(rng.random(ref.shape) < 0.1, rng.integers(0, k, ref.shape), ref)
        ref[0, 0, :3] = 99  # a value that is no class
        raw = true.copy()
        raw[1] *= 2.5
        raw[2] *= 0.5
        probs = np.round(raw / raw.sum(0) * 16) / 16 + 1e-4  # ties on a grid of sixteenths
        out.append(((probs / probs.sum(0)).astype(np.float32), ref))
    return out


@pytest.mark.parametrize(("k", "seed"), [(3, 0), (5, 1), (12, 2), (12, 3)])
def test_ranked_search_chooses_what_a_full_argmax_chooses(k: int, seed: int) -> None:
    raw = _cases(k, seed)
    values = list(range(k))
    reduced = [cb._reduce(p, np.where(r < k, r, -1)) for p, r in raw]
    want_offsets, want = _full_argmax_search(reduced, k)
    got = cb.decide_class_bias(raw, values, {}, n_cases=len(raw))
    assert got["kept"]  # the biased labels are found (label 1 down, label 2 up)
    assert got["offsets"] == [float(x) for x in want_offsets]
    assert got["offsets"][1] < 0 < got["offsets"][2]
    assert [got["after"]["dice"][str(v)] for v in values[1:]] == want["dice"]
    assert got["after"]["foreground_mean"] == want["foreground_mean"] > got["before"]["foreground_mean"]


def test_each_try_counts_what_the_full_argmax_counts() -> None:
    """One case, every label and offset, from offsets that are not all zero: the counts of a try equal those of
    the argmax of the offset log-probabilities."""
    k = 9
    probs, ref = _cases(k, 7, n=1)[0]
    case = cb._reduce(probs, np.where(ref < k, ref, -1))
    offsets = np.asarray([0.0, 0.5, -1.0, 0.25, 0.0, -0.5, 1.0, 0.0, -2.0], dtype=np.float32)
    ranked = cb._rank(case, offsets)
    for c in range(k):
        contest = cb._contest(case, ranked, c, k)
        for x in np.asarray(cb.GRID, dtype=np.float32):
            trial = offsets.copy()
            trial[c] = x
            full = case.fixed + cb._counts((case.log_probs + trial[:, None]).argmax(0), case.ref, k)
            assert np.array_equal(cb._tried(contest, c, x, k), full)


def test_a_probability_that_is_no_number_counts_as_zero() -> None:
    """A NaN among a voxel's probabilities: the same decision as with 0 there (the Dice without offsets and every
    try read it alike: before, a try read it as a loss where the argmax without offsets had chosen it, a gain
    that did not exist)."""
    k = 4
    raw = _cases(k, 5)
    probs, ref = raw[0]
    holed = probs.copy()
    holed[1, 2, 3, :4] = np.nan
    zeroed = probs.copy()
    zeroed[1, 2, 3, :4] = 0.0
    got = cb.decide_class_bias([(holed, ref), *raw[1:]], list(range(k)), {}, n_cases=len(raw))
    want = cb.decide_class_bias([(zeroed, ref), *raw[1:]], list(range(k)), {}, n_cases=len(raw))
    assert got == want
