"""Per-class MLflow metrics of a classification (``cv_sensitivity_<class>``, ``val_auc_<class>``) keep one key per
class: keys are the class names made safe for MLflow, and names in other scripts all became underscores (良性 and
悪性, benign and malignant, were both ``__``), so one class's numbers silently replaced the other's. Colliding keys
get the class's position; names that stay distinct keep their keys."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from automed.plan.schema import TargetPlan
from automed.tasks.base import metric_keys
from automed.tasks.registry import task_for


def _per_class(names: list[str]) -> dict[str, Any]:
    per = {
        n: {"sensitivity": 0.1 * (i + 1), "specificity": 0.5, "auc": 0.6 + 0.1 * i}
        for i, n in enumerate(names)
    }
    return {
        "auc_macro": 0.7,
        "accuracy": 0.5,
        "balanced_accuracy": 0.5,
        "f1_macro": 0.5,
        "ece": 0.1,
        "per_class": per,
    }


def test_classes_whose_safe_names_collide_keep_a_key_each() -> None:
    names = ["良性", "悪性"]
    assert metric_keys(names) == ["___0", "___1"]
    m = task_for("classification", "x").summary_metrics(_per_class(names))
    sens = {k: v for k, v in m.items() if k.startswith("cv_sensitivity_")}
    assert sorted(sens.values()) == [0.1, 0.2] and len(sens) == 2
    target = TargetPlan(kind="classification", class_values=[0.0, 1.0], class_names=names, class_counts=[3, 3],
                        loss="cross_entropy", reasons={})  # fmt: skip
    plan: Any = SimpleNamespace(target=target)
    assert task_for("classification", "x").epoch_names(plan) == ["___0", "___1"]


def test_distinct_names_keep_their_keys() -> None:
    assert metric_keys(["one", "two", "a b", "x/y"]) == ["one", "two", "a b", "x/y"]
    assert metric_keys(["Läsion", "Lxsion"]) == ["L_sion", "Lxsion"]
    m = task_for("classification", "x").summary_metrics(_per_class(["normal", "pneumonia"]))
    assert m["cv_sensitivity_normal"] == 0.1 and m["cv_auc_pneumonia"] == 0.7


def test_segmentation_labels_keep_a_key_each() -> None:
    entry = {"dice": 0.5, "hd95": 3.0, "n_both_empty": 0}
    summary = {
        "foreground_mean": {"dice": 0.6, "hd95": 2.0, "nsd": 0.9},
        "mean": {"1": entry, "2": {**entry, "dice": 0.7}},
        "label_names": {"1": "肝臓", "2": "腫瘍"},  # liver, tumour
    }
    m = task_for("segmentation", "x").summary_metrics(summary)
    assert m["cv_dice____0"] == 0.5 and m["cv_dice____1"] == 0.7
    plan: Any = SimpleNamespace(labels={"0": "background", "1": "肝臓", "2": "腫瘍"})
    assert task_for("segmentation", "x").epoch_names(plan) == ["___0", "___1"]
