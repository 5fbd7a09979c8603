"""``automed select`` among classification and regression trainings compares them on the CV cases they share: a
shared case must have one target in every training (the same dataset), and classifications the same classes. Two
labelings of one image set were compared as if alike (a pair scored on the first training's targets, and chosen),
and trainings of other classes ended in ``KeyError: "['probability_three'] not in index"``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from automed.errors import ArtifactError
from automed.select.image_level import compare_image_level
from automed.tasks.registry import task_for


def _training(root: Path, name: str, table: dict[str, list[object]]) -> Path:
    wd = root / name
    (wd / "cv").mkdir(parents=True)
    pd.DataFrame(table).to_csv(wd / "cv" / "metrics.csv", index=False)
    return wd


def _cls(
    targets: list[str], p_one: list[float], classes: tuple[str, ...] = ("one", "two")
) -> dict[str, list[object]]:
    n = len(targets)
    table: dict[str, list[object]] = {
        "case": [f"case_{i}" for i in range(n)],
        "fold": [i % 2 for i in range(n)],
        "target": list(targets),
        "prediction": ["one" if p >= 0.5 else classes[1] for p in p_one],
        f"probability_{classes[0]}": list(p_one),
        f"probability_{classes[1]}": [1.0 - p for p in p_one],
    }
    return table


def test_trainings_of_one_dataset_compare(tmp_path: Path) -> None:
    targets = ["one", "two", "one", "two"]
    a = _training(tmp_path, "A", _cls(targets, [0.9, 0.2, 0.6, 0.4]))
    b = _training(tmp_path, "B", _cls(targets, [0.7, 0.4, 0.8, 0.1]))
    res = compare_image_level([a, b], task_for("classification", "x"))
    assert [c["candidate"] for c in res["candidates"]] == ["A", "B", "A + B"] and res["n_cases"] == 4


def test_other_targets_for_a_shared_case_are_refused(tmp_path: Path) -> None:
    a = _training(tmp_path, "A", _cls(["one", "two", "one", "two"], [0.9, 0.2, 0.6, 0.4]))
    relabeled = _training(tmp_path, "B", _cls(["one", "one", "two", "two"], [0.7, 0.4, 0.8, 0.1]))
    with pytest.raises(ArtifactError, match=r"one target in every training.*case_1: 'two' in A, 'one' in B"):
        compare_image_level([a, relabeled], task_for("classification", "x"))
    reg = {"case": ["x", "y"], "fold": [0, 1], "target": [3.0, 5.0], "prediction": [2.5, 4.0]}
    ra = _training(tmp_path, "RA", reg)
    rb = _training(tmp_path, "RB", {**reg, "target": [3.0, 6.5]})
    with pytest.raises(ArtifactError, match=r"y: 5 in RA, 6\.5 in RB"):
        compare_image_level([ra, rb], task_for("regression", "x"))


def test_other_classes_are_refused_naming_both(tmp_path: Path) -> None:
    a = _training(tmp_path, "A", _cls(["one", "two", "one", "two"], [0.9, 0.2, 0.6, 0.4]))
    b = _training(
        tmp_path, "B", _cls(["one", "three", "one", "three"], [0.9, 0.2, 0.6, 0.4], ("one", "three"))
    )
    with pytest.raises(ArtifactError, match=r"the same classes.*A: one, two; B: one, three"):
        compare_image_level([a, b], task_for("classification", "x"))
