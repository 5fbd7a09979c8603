"""``automed metrics`` refuses predictions whose labels show that they do not belong to the reference's classes.
Before, a regression model's ``predictions.csv`` (180.2, 175.4, ...) against a classification dataset CSV (one, two,
three) was scored "accuracy 0.0000 ... macro AUC 0.5000 (hard labels)" without a word, as was a table of class indices
against class names. A model that predicts a class the test set has no case of is still scored, and said."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from automed import api
from automed.errors import DatasetError

IDS = [f"c{i}" for i in range(12)]
NAMES = ["one", "two", "three"] * 4


def _dataset(tmp_path: Path, targets: list[object]) -> Path:
    cases = tmp_path / "dataset.csv"
    pd.DataFrame(
        {"SubjectID": IDS, "Channel_0": [f"img/{i}.png" for i in IDS], "ValueToPredict": targets}
    ).to_csv(cases, index=False)
    return cases


def _predictions(tmp_path: Path, **columns: list[object]) -> Path:
    table = tmp_path / "pred" / "predictions.csv"
    table.parent.mkdir(exist_ok=True)
    pd.DataFrame({"SubjectID": IDS, **columns}).to_csv(table, index=False)
    return table


def test_a_regression_models_values_against_classes_are_refused(tmp_path: Path) -> None:
    cases = _dataset(tmp_path, NAMES)
    table = _predictions(tmp_path, prediction=[180.2 + i for i in range(12)])
    with pytest.raises(DatasetError) as err:
        api.metrics(table, tmp_path / "scores", reference=cases)
    (p,) = err.value.problems
    assert p.file == str(cases) and "the predictions' labels must be classes of this reference" in p.rule
    assert "regression model's value" in p.rule and "180.2" in p.value and "12 of 12 case(s)" in p.value
    assert "one, three, two" in p.value and "reference of numbers" in p.fix
    assert not (tmp_path / "scores").exists()
    # integer classes (grades 0-2) against values some of which happen to be whole numbers: still values
    grades = _dataset(tmp_path, [0, 1, 2] * 4)
    _predictions(tmp_path, prediction=[0.0, 1.4, 2.0, 0.3, 1.0, 1.8] * 2)
    with pytest.raises(DatasetError, match=r"regression model's value.*1\.4"):
        api.metrics(table, tmp_path / "scores", reference=grades)


def test_labels_sharing_no_class_with_the_reference_are_refused(tmp_path: Path) -> None:
    """Class indices against class names, in automed predict's table or in one metrics CSV."""
    cases = _dataset(tmp_path, NAMES)
    table = _predictions(tmp_path, prediction=[0, 1, 2] * 4)
    with pytest.raises(DatasetError) as err:
        api.metrics(table, tmp_path / "scores", reference=cases)
    (p,) = err.value.problems
    assert "regression" not in p.rule and "0, 1, 2 in 12 of 12" in p.value
    assert "not its index" in p.fix and "probability_<class>" in p.fix
    csv = tmp_path / "scored.csv"
    pd.DataFrame({"SubjectID": IDS, "Target": NAMES, "Prediction": ["cat", "dog"] * 6}).to_csv(
        csv, index=False
    )
    with pytest.raises(
        DatasetError,
        match=r"scored\.csv: the predictions' labels must be classes of this reference.*cat, dog",
    ):
        api.metrics(csv, tmp_path / "scores")


def test_a_class_the_test_set_lacks_is_scored_as_wrong_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A three-class model on a test set of two classes: its "three" predictions are wrong, not a refusal; nor is a
    model that predicted none of the reference's classes while its probability columns name them."""
    two = ["one", "two"] * 6
    cases = _dataset(tmp_path, two)
    pred = [*two[:10], "three", "three"]
    table = _predictions(tmp_path, prediction=pred)
    with caplog.at_level("WARNING", logger="automed"):
        s = api.metrics(table, tmp_path / "scores", reference=cases).summary
    assert s["accuracy"] == pytest.approx(10 / 12)
    assert "name class(es) three that the reference never holds (2 of 12 case(s))" in caplog.text
    _predictions(tmp_path, prediction=["three"] * 12, probability_one=[0.3] * 12, probability_two=[0.3] * 12,
                 probability_three=[0.4] * 12)  # fmt: skip
    assert api.metrics(table, tmp_path / "scores2", reference=cases).summary["accuracy"] == 0.0


def test_a_missing_value_is_not_taken_for_a_predicted_class(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cases = _dataset(tmp_path, NAMES)
    table = tmp_path / "pred" / "predictions.csv"
    _predictions(tmp_path, prediction=NAMES)
    pd.read_csv(table).iloc[1:].to_csv(table, index=False)  # c0 not predicted
    with caplog.at_level("WARNING", logger="automed"):
        s = api.metrics(table, tmp_path / "scores", reference=cases, missing_value=0).summary
    assert s["accuracy"] == pytest.approx(11 / 12) and "never holds" not in caplog.text


def test_integer_values_and_a_test_set_of_one_class(tmp_path: Path) -> None:
    """Review: integer regression targets read as classes got a fix that did not work ("a reference of numbers"); a
    test set of one class that a hard-label model got wrong throughout was refused instead of scored 0."""
    cases = _dataset(tmp_path, [3, 5, 7, 9] * 3)
    table = _predictions(tmp_path, prediction=[3.2, 5.1, 6.8, 9.4] * 3)
    with pytest.raises(DatasetError, match="score them as values with --problem regression"):
        api.metrics(table, tmp_path / "m", reference=cases)
    assert api.metrics(table, tmp_path / "r", reference=cases, problem="regression").summary[
        "mae"
    ] == pytest.approx(0.225)
    (tmp_path / "one").mkdir()
    one = _dataset(tmp_path / "one", ["benign"] * 12)
    wrong = _predictions(tmp_path / "one", prediction=["malignant"] * 12)
    assert api.metrics(wrong, tmp_path / "w", reference=one).summary["accuracy"] == 0.0
