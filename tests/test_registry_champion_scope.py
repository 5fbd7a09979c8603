"""The registry's champion rule compares CV scores measured on the same cases: a training whose folds were trained
one command at a time (``--fold 0``, then ``--fold 1`` into one work dir) registers versions whose scores cover 3
and then 6 cases; the later one, the model of both folds, is crowned even when its wider CV scores a little lower
(the one-fold model had stayed champion). Scores of different trainings on different numbers of cases are still
compared, with a warning saying so."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from automed import model_store
from automed.model_store import CV_CASES, Measured
from automed.select.register import cv_cases


def _version(client: MlflowClient, run: str, score: float, cases: int | None) -> Measured:
    mv = client.create_model_version("m", "file:///nowhere", run_id=run)
    client.set_model_version_tag("m", mv.version, "cv_score", f"{score:.6f}")
    if cases is not None:
        client.set_model_version_tag("m", mv.version, CV_CASES, str(cases))
    return Measured(str(mv.version), run, score, cases)


def test_a_wider_cv_of_the_same_training_is_crowned_and_other_scopes_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("e")
    a, b = (client.create_run(exp).info.run_id for _ in range(2))
    client.create_registered_model("m")
    caplog.set_level(logging.WARNING, logger="automed.model_store")

    def crown(new: Measured) -> str:
        return model_store._crown(client, "m", new)

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "automed.model_store"]

    assert crown(_version(client, a, 0.414, 3)) == "1"  # no champion yet
    assert crown(_version(client, a, 0.409, 6)) == "2"  # fold 0 then fold 1: both folds' model, on 6 cases
    assert not said()
    assert (
        crown(_version(client, b, 0.400, 6)) == "2"
    )  # another training on the same cases: the score decides
    assert not said()
    assert crown(_version(client, a, 0.300, 6)) == "2"  # the same training, same cases, lower: not crowned
    assert crown(_version(client, b, 0.500, 3)) == "5"  # higher on fewer cases: crowned, and said
    (warned,) = said()
    assert "(CV 0.5000 on 3 cases) replaces champion version 2 (CV 0.4090 on 6 cases)" in warned
    caplog.clear()
    assert crown(_version(client, a, 0.450, 6)) == "5"  # lower, on other cases, another run: kept, and said
    assert "is not champion version 5" in said()[0]
    assert str(client.get_model_version_by_alias("m", "champion").version) == "5"
    # a champion registered before cv_cases was recorded: its score alone decides, as before
    caplog.clear()
    client.delete_model_version_tag("m", "5", CV_CASES)
    assert crown(_version(client, b, 0.490, 9)) == "5" and not said()


def test_cv_cases_counts_the_cases_of_a_trainings_cv_table(tmp_path: Path) -> None:
    assert cv_cases(tmp_path) is None  # no CV table (an all-data model)
    table = tmp_path / "cv" / "metrics.csv"
    table.parent.mkdir()
    table.write_text("case,fold,label,dice\nc1,0,1,0.5\nc1,0,2,0.4\nc2,1,1,0.7\nc2,1,2,0.6\n007,1,1,0.1\n")
    assert cv_cases(tmp_path) == 3  # one per case, whatever its labels; IDs read as text
    table.write_text("")
    assert cv_cases(tmp_path) is None
