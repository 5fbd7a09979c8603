"""The ``truth`` column of a classification model's ``predictions.csv`` for a folder-per-class input
(``IN/<class>/<images>``): the rule is the bundle's too (:mod:`automed.runtime.truth`); here a folder that is not one
of the model's classes is logged as a warning."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from automed.runtime.truth import folder_truth as truth_of

log = logging.getLogger("automed")


def folder_truth(input_path: str | Path, cases: list[Any], target: Any) -> dict[str, str] | None:
    """Case ID -> its class folder's name (``""`` for a folder that is not one of the model's classes) when
    ``input_path`` is a folder-per-class test set of a classification model (``target``: its plan's target);
    ``None`` otherwise (no ``truth`` column)."""
    truth, warning = truth_of(
        Path(input_path).expanduser().resolve(),
        [(c.case_id, c.images[0]) for c in cases],
        getattr(target, "kind", None),
        list(getattr(target, "class_names", None) or []),
    )
    if warning:
        log.warning("%s", warning)
    return truth
