"""``automed report`` on a training whose tracking server is down: the page is written and the copy in MLflow is
skipped with a warning (the server check's ConfigError had ended the command with an error whose fix named
``--resume``, an option report does not have)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from automed import tracking_uri
from automed.workflow.report import _log_to_mlflow


def test_a_report_whose_tracking_server_is_down_warns_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for v in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(tracking_uri, "_down", {})  # (no other test's finding)
    wd = tmp_path / "W"
    wd.mkdir()
    track = {"schema_version": 1, "uri": "http://127.0.0.1:9", "experiment": "x", "parent_run_id": "r"}
    (wd / "tracking.json").write_text(json.dumps(track))  # nothing listens on the discard port
    rendered: list[Path] = []
    with caplog.at_level(logging.WARNING, logger="automed"):
        assert _log_to_mlflow(wd, lambda folder, pseudonym: rendered.append(folder)) is False
    assert "report not logged to MLflow for W" in caplog.text and "127.0.0.1:9" in caplog.text
    assert "start its tracking server, then run the report again" in caplog.text
    assert "--resume" not in caplog.text and rendered == []
