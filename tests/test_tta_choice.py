"""An image-level training keeps mirror TTA only when it scores higher on its own CV than one plain prediction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import automed.tasks.image_level as il
from automed.infer.image_level import ImagePredictor
from automed.tasks.base import OwnChoice
from automed.tasks.classification import Classification
from automed.tasks.regression import Regression

_UNUSED: Any = None  # the plan and config: only the patched predictor would read them


def _rows(offsets: dict[int, float]) -> list[dict[str, Any]]:
    return [
        {"case": f"c{i:02d}", "fold": i % 2, "target": float(i), "prediction": float(i) + offsets[i % 2]}
        for i in range(10)
    ]


@pytest.fixture
def plain_predictions(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Predictions without TTA: each case off by 0.5 (with TTA the test chooses how far off)."""
    made: list[dict[str, Any]] = []

    def predict_rows(
        self: object, pred: Any, plan: Any, fold: int, ds: Any, ids: list[str]
    ) -> list[dict[str, Any]]:
        assert pred == ("predictor", fold, False)  # one fold's network, no TTA
        rows = [
            {"case": c, "fold": fold, "target": float(c[1:]), "prediction": float(c[1:]) + 0.5} for c in ids
        ]
        made.extend(rows)
        return rows

    def from_folds(wd: Path, plan: Any, config: Any, folds: list[int], **kw: Any) -> Any:
        return ("predictor", folds[0], kw["tta"])

    monkeypatch.setattr(il, "load_dataset", lambda source: None)
    monkeypatch.setattr(ImagePredictor, "from_folds", from_folds)
    monkeypatch.setattr(Regression, "_predict_rows", predict_rows)
    return made


def _choose(
    task: Regression | Classification, tmp: Path, rows: list[dict[str, Any]], tta: bool, folds: list[int]
) -> OwnChoice:
    """The task's own choice for CV ``rows`` of ``folds``, its artifacts under ``tmp/selection``."""
    return task.own_choice(tmp, _UNUSED, _UNUSED, folds, "data", tmp / "selection", rows=rows, tta=tta)


def test_tta_that_scores_lower_is_turned_off_and_its_cv_replaced(
    tmp_path: Path, plain_predictions: list[dict[str, Any]]
) -> None:
    rows = _rows({0: 2.0, 1: -2.0})  # with TTA: 2 off per case, worse than 0.5
    own = _choose(Regression(), tmp_path, rows, True, [0, 1])
    assert own.inference == {"tta": False}
    assert own.rows is not None and sorted(r["case"] for r in own.rows) == sorted(r["case"] for r in rows)
    assert all(r["prediction"] == r["target"] + 0.5 for r in own.rows)
    assert own.metrics["cv_r2_no_tta"] > own.metrics["cv_r2_tta"]  # type: ignore[operator]
    saved = json.loads((tmp_path / "selection" / "tta_choice.json").read_text())
    assert saved["choice"]["tta"] is False and saved["summary_without_tta"]["mae"] == pytest.approx(0.5)
    assert (
        "mirror TTA off" in own.tags["inference"]
        and own.artifact == tmp_path / "selection" / "tta_choice.json"
    )


def test_tta_that_scores_higher_is_kept_with_the_validation_rows(
    tmp_path: Path, plain_predictions: list[dict[str, Any]]
) -> None:
    rows = _rows({0: 0.1, 1: -0.1})
    own = _choose(Regression(), tmp_path, rows, True, [0, 1])
    assert own.inference == {"tta": True} and own.rows is None
    assert "mirror TTA kept" in own.tags["inference"]
    assert len(plain_predictions) == 10  # every validated case was predicted once without TTA


def test_validation_without_tta_decides_nothing(
    tmp_path: Path, plain_predictions: list[dict[str, Any]]
) -> None:
    own = _choose(Classification(), tmp_path, _rows({0: 0, 1: 0}), False, [0])
    assert own.inference is None and own.rows is None and plain_predictions == []
    assert not (tmp_path / "selection").exists()
