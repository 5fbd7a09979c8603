"""``automed metrics`` on a CSV whose Target and Prediction spell one class two ways (``1`` and ``1.0``, as a
spreadsheet or pandas writes an integer column with gaps): one class, scored as scikit-learn scores the integers.
Before, ``1`` and ``1.0`` were two classes and every correct ``1.0`` prediction counted as wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

from automed import api


def test_integer_valued_class_names_are_one_class(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 30)
    pred = np.where(rng.random(30) < 0.8, y, 1 - y)
    p1 = np.clip(pred * 0.7 + rng.random(30) * 0.3, 0, 1)
    csv = tmp_path / "scores.csv"
    pd.DataFrame(
        {"SubjectID": [f"c{i}" for i in range(30)], "Target": [str(v) for v in y],
         "Prediction": [f"{v}.0" for v in pred], "probability_0.0": 1 - p1, "probability_1": p1}
    ).to_csv(csv, index=False)  # fmt: skip
    res = api.metrics(csv, tmp_path / "out")
    s = res.summary
    assert s["classes"] == ["0", "1"]
    assert s["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert s["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert s["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert s["auc_macro"] == pytest.approx(roc_auc_score(y, p1))
    rows = pd.read_csv(res.folder / "metrics.csv")
    assert rows["correct"].sum() == int((pred == y).sum())


def test_long_integer_codes_keep_every_digit() -> None:
    """Class codes as long integers were rewritten through a float (12345678901234567890 became
    12345678901234567168); an integer's spelling is read exactly, and names stay names."""
    from automed.runtime.entry import as_class

    assert as_class("12345678901234567890") == "12345678901234567890"
    assert as_class("12345678901234567890.0") == "12345678901234567890"
    assert [as_class(t) for t in ("1", "1.0", " 1 ", "-2.00", "1.5", "abc")] == [
        "1",
        "1",
        "1",
        "-2",
        "1.5",
        "abc",
    ]


def test_a_table_with_class_probabilities_is_scored_as_classes_however_many(tmp_path: Path) -> None:
    """22 integer classes with probability columns were scored as a regression (MAE 2.57) where scikit-learn's
    accuracy and macro AUC were what the table asked for."""
    rng = np.random.default_rng(2)
    y = np.arange(44) % 22
    pred = np.where(rng.random(44) < 0.7, y, (y + 1) % 22)
    probs = rng.dirichlet(np.ones(22), 44)
    probs[np.arange(44), pred] += 1.0
    probs /= probs.sum(1, keepdims=True)
    table = {"SubjectID": [f"c{i}" for i in range(44)], "Target": y, "Prediction": pred}
    table |= {f"probability_{k}": probs[:, k] for k in range(22)}
    pd.DataFrame(table).to_csv(tmp_path / "scores.csv", index=False)
    s = api.metrics(tmp_path / "scores.csv", tmp_path / "out").summary
    assert "mae" not in s and s["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert s["auc_macro"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="macro"))


def test_class_names_beside_folders_of_their_names_stay_classes(tmp_path: Path) -> None:
    """A class `normal` beside a class folder normal/ became that folder's absolute path (metrics.csv and
    summary.json named it), or was read as a DICOM series ("an image folder must hold one DICOM series")."""
    (tmp_path / "normal").mkdir()
    (tmp_path / "normal" / "x.png").write_bytes(b"")
    (tmp_path / "scores.csv").write_text(
        "SubjectID,Target,Prediction\na,normal,normal\nb,normal,pneumonia\nc,pneumonia,pneumonia\nd,pneumonia,pneumonia\n"
    )
    s = api.metrics(tmp_path / "scores.csv", tmp_path / "out").summary
    assert s["classes"] == ["normal", "pneumonia"] and s["accuracy"] == 0.75
    assert str(tmp_path) not in (tmp_path / "out" / "metrics.csv").read_text()


def test_class_names_in_either_unicode_spelling_are_one_class(tmp_path: Path) -> None:
    """A class folder named on macOS (decomposed: O + combining diaeresis) was "not a class" of a model whose class
    `Ödem` came composed from a CSV, and metrics scored its correct predictions as wrong (macro AUC 0.75, 3 classes)."""
    import unicodedata

    from automed.runtime.entry import as_class
    from automed.runtime.truth import folder_truth

    composed, decomposed = "\u00d6dem", unicodedata.normalize("NFD", "\u00d6dem")
    assert composed != decomposed and as_class(decomposed) == as_class(composed) == composed
    (tmp_path / decomposed).mkdir()
    (tmp_path / "normal").mkdir()
    cases = [("a", tmp_path / decomposed / "a.png"), ("b", tmp_path / "normal" / "b.png")]
    truth, warning = folder_truth(tmp_path, cases, "classification", [composed, "normal"])
    assert truth == {"a": composed, "b": "normal"} and warning is None
    table = {"SubjectID": ["a", "b", "c", "d"], "Target": [decomposed, "normal", composed, "normal"],
             "Prediction": [composed, "normal", decomposed, "normal"]}  # fmt: skip
    pd.DataFrame(table).to_csv(tmp_path / "scores.csv", index=False)
    s = api.metrics(tmp_path / "scores.csv", tmp_path / "out").summary
    assert s["classes"] == ["normal", composed] and s["accuracy"] == 1.0
