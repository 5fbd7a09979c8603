"""``automed explain --label``: a classification model explains one of its classes, named as the dataset names
it. A dataset of class names (CSV text, class folders) has no numbers of its own: ``--label 1`` explained the class
at position 1 of the sorted names ('three' among one, three, two), titled as if asked; it is refused, naming the
classes. Integer classes are named by their numbers (``--label 2`` or ``2.0``)."""

from __future__ import annotations

import pytest

from automed.errors import ConfigError
from automed.plan.schema import TargetPlan
from automed.workflow.explain import class_index


def _target(values: list[float], names: list[str]) -> TargetPlan:
    return TargetPlan(
        kind="classification",
        class_values=values,
        class_names=names,
        class_counts=[4] * len(values),
        loss="cross_entropy",
        reasons={},
    )


def test_named_classes_are_explained_by_name_only() -> None:
    named = _target([0.0, 1.0, 2.0], ["one", "three", "two"])
    assert class_index(named, "three") == 1 and class_index(named, "two") == 2
    for position in ("1", 1, 0.0):
        with pytest.raises(
            ConfigError, match=r"its classes \(one, three, two\); found .*Fix: pass a class name"
        ):
            class_index(named, position)
    folders = _target([0.0, 1.0], ["benign", "malignant"])  # folder per class: values are positions too
    with pytest.raises(ConfigError, match="pass a class name"):
        class_index(folders, "0")
    with pytest.raises(ConfigError, match="Did you mean 'malignant'"):
        class_index(folders, "malignent")


def test_integer_classes_are_explained_by_their_number() -> None:
    ints = _target([1.0, 2.0, 10.0], ["1", "2", "10"])
    assert class_index(ints, "2") == 1 and class_index(ints, 2) == 1 and class_index(ints, "10.0") == 2
    assert class_index(ints, 10) == 2
    with pytest.raises(ConfigError, match=r"its classes \(1, 2, 10\); found '0'"):
        class_index(ints, "0")
