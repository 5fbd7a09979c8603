"""The tasks automed can train, by the plan's task type, and the error for the others."""

from __future__ import annotations

from pathlib import Path

from automed.errors import DatasetError, Problem
from automed.registry import Registry
from automed.tasks.base import Task
from automed.tasks.segmentation import Segmentation

TASKS: Registry[Task] = Registry("task")
TASKS.add("segmentation", Segmentation())


def task_for(task_type: str, source: str | Path) -> Task:
    """The task for a fingerprint's or plan's task type; a clear error before any training when it has none yet."""
    if task_type not in TASKS:
        raise DatasetError(
            [
                Problem(
                    str(source),
                    f"automed trains {', '.join(TASKS.names())} models (classification and regression are planned)",
                    f"a {task_type} dataset (a ValueToPredict column and no label maps)",
                    "add label maps (Label column) for segmentation, or wait for classification/regression support",
                )
            ],
            "this dataset cannot be trained yet",
        )
    return TASKS.get(task_type)
