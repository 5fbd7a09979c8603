"""A reference holding a class the model does not predict (``effusion``, with no ``probability_effusion`` column in
``automed predict``'s ``predictions.csv``, never in its Prediction column) is scored, not refused: that class has
probability 0, and a warning names it. Before, metrics refused it with "add the missing probability columns", a fix
that makes no sense for a model's own predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from automed import api
from automed.errors import DatasetError


def test_a_reference_class_the_model_does_not_predict_is_scored_with_probability_0(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = np.array(["normal", "pneumonia", "effusion", "normal", "pneumonia", "effusion", "normal"])
    p_pneu = np.array([0.1, 0.8, 0.6, 0.3, 0.9, 0.2, 0.4])
    pred = np.where(p_pneu > 0.5, "pneumonia", "normal")
    csv = tmp_path / "scores.csv"
    pd.DataFrame(
        {"SubjectID": [f"c{i}" for i in range(7)], "Target": target, "Prediction": pred,
         "probability_normal": 1 - p_pneu, "probability_pneumonia": p_pneu}
    ).to_csv(csv, index=False)  # fmt: skip
    s = api.metrics(csv, tmp_path / "out").summary
    assert "never name class(es) effusion" in caplog.text and "2 case(s)" in caplog.text
    assert s["classes"] == ["effusion", "normal", "pneumonia"]
    assert s["accuracy"] == pytest.approx(accuracy_score(target, pred))
    proba = np.stack([np.zeros(7), 1 - p_pneu, p_pneu], axis=1)
    assert s["auc_macro"] == pytest.approx(
        roc_auc_score(target, proba, multi_class="ovr", average="macro", labels=s["classes"])
    )


def test_a_predicted_class_without_its_probability_column_is_still_refused(tmp_path: Path) -> None:
    csv = tmp_path / "scores.csv"
    pd.DataFrame(
        {"SubjectID": ["a", "b", "c"], "Target": ["x", "y", "z"], "Prediction": ["x", "y", "z"],
         "probability_x": [0.9, 0.1, 0.2], "probability_y": [0.1, 0.9, 0.8]}
    ).to_csv(csv, index=False)  # fmt: skip
    with pytest.raises(DatasetError, match=r"cover every predicted class.*no probability_z"):
        api.metrics(csv, tmp_path / "out")
