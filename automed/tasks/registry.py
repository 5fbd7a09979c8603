"""The tasks automed can train, by the plan's task type."""

from __future__ import annotations

from pathlib import Path

from automed.errors import DatasetError, Problem
from automed.registry import Registry
from automed.tasks.base import Task
from automed.tasks.classification import Classification
from automed.tasks.regression import Regression
from automed.tasks.segmentation import Segmentation

TASKS: Registry[Task] = Registry("task")
TASKS.add("segmentation", Segmentation())
TASKS.add("classification", Classification())
TASKS.add("regression", Regression())


def task_for(task_type: str, source: str | Path) -> Task:
    """The task for a fingerprint's or plan's task type; a clear error before any training when there is none."""
    if task_type not in TASKS:
        raise DatasetError(
            [
                Problem(
                    str(source),
                    f"automed trains {', '.join(TASKS.names())} models",
                    f"a {task_type} dataset",
                    "give label maps (segmentation) or a ValueToPredict column (classification, regression)",
                )
            ],
            "this dataset cannot be trained",
        )
    return TASKS.get(task_type)
