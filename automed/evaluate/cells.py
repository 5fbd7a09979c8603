"""What ``automed metrics`` accepts as a prediction's numbers before it scores them: probability cells (finite, in
[0, 1]; on every scored row or on none) and image voxels (finite; a label map's whole numbers). Each had been scored
as given: a NaN probability ended in scikit-learn's bare ValueError, a probability of -4 gave an ECE of 1.6, a row
without probabilities turned every row's AUC into a hard-label AUC without a word, a NaN voxel in a label map ended
in "cannot convert float NaN to integer", fractional values (a probability map saved as the prediction) were cut
to background and scored Dice 0, and a synthesized image with a NaN voxel dropped out of the means."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from automed.errors import DatasetError, Problem

PROBABILITY = "probability_"
SLACK = 1e-6  # a probability written as 1.0000001 by float rounding is 1


def probability_cells(row: dict[str, str], where: str, problems: list[Problem]) -> dict[str, float]:
    """A row's ``probability_<class>`` cells by class (empty cells left out); a cell that is no number, not finite
    or outside [0, 1] is a problem."""
    probs: dict[str, float] = {}
    for c, cell in row.items():
        if not (c.startswith(PROBABILITY) and cell):
            continue
        try:
            v = float(cell)
        except ValueError:
            v = math.nan
        if not (math.isfinite(v) and -SLACK <= v <= 1 + SLACK):
            problems.append(Problem(where, f"{c} is a number between 0 and 1", repr(cell),
                                    "write the probability, or leave the cell empty"))  # fmt: skip
            continue
        probs[c[len(PROBABILITY) :]] = min(max(v, 0.0), 1.0)
    return probs


def refuse_partial_probabilities(rows: Sequence[Any]) -> None:
    """Probabilities on some scored rows (``probabilities`` not empty) and not on others: AUC and calibration come
    from probabilities on every row or from hard labels on every row, so the rows without them are listed. A
    prediction ``--missing-value`` filled in (``filled``) has none of the model's and is not counted."""
    own = [r for r in rows if not r.filled]
    bare = [r for r in own if not r.probabilities]
    if not bare or len(bare) == len(own):
        return
    raise DatasetError(
        [
            Problem(
                r.where or r.case,
                "probability columns are filled in on every row or on none (AUC and "
                "calibration from probabilities, or from hard labels)",
                f"no probabilities for {r.case}",
                "fill in the row's probabilities, or leave the probability columns out of every row",
            )
            for r in bare
        ],
        f"{len(bare)} of {len(own)} predictions without probabilities",
    )


def check_voxels(
    values: np.ndarray, path: str, what: str, *, labels: bool, inside: np.ndarray | None = None
) -> None:
    """Refuse an image with non-finite voxels (``inside`` a mask, when given), or, for a label map (``labels``),
    with values that are no whole numbers (a probability map, or a map resampled with linear interpolation)."""
    if values.dtype.kind not in "fc":
        return
    if inside is not None:
        values = values[inside]
    bad = ~np.isfinite(values)
    if bad.any():
        raise DatasetError.single(
            path, f"a {what} holds finite values", f"{int(bad.sum())} NaN/infinite voxel(s)",
            "fix the image (e.g. set those voxels to the background value)"
            + ("" if labels else ", or leave them out of the Mask column's mask"),
        )  # fmt: skip
    if labels:
        off = values != np.round(values)
        if off.any():
            raise DatasetError.single(
                path, f"a {what} (label map) holds whole numbers, its label values",
                f"{int(off.sum())} voxel(s) such as {float(values[off].flat[0]):.4g}",
                "save the label map (the argmax, resampled nearest-neighbour), not probabilities; intensity images "
                "are scored with --problem synthesis",
            )  # fmt: skip
