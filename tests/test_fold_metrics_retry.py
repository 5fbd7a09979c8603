"""A fold's per-epoch metrics when the tracking server restarts: the retries ask the server again (the "found down"
memory of the Tracker had failed them at once for 30 s, so a restart of a second or two lost that epoch's metrics
and every epoch's until then), and a server gone for good costs a warning per epoch, not the fold."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest

from automed import tracking, tracking_uri
from automed.privacy import no_redaction
from automed.train.state import EpochLog
from automed.workflow import fold


class _Client:
    def __init__(self) -> None:
        self.batches: list[Any] = []

    def log_batch(self, run_id: str, **kw: Any) -> None:
        self.batches.append(kw)


def _epochs(uri: str) -> tuple[fold.MlflowEpochs, _Client]:
    tracker = object.__new__(tracking.Tracker)
    client = _Client()
    tracker.uri, tracker.redactor, tracker.client, tracker.experiment_id = uri, no_redaction(), client, "1"
    epochs = object.__new__(fold.MlflowEpochs)
    epochs.tracker, epochs.run_id, epochs.names, epochs.metric = tracker, "run", [], "dice"
    return epochs, client


def _log(epoch: int) -> EpochLog:
    return EpochLog(epoch, 1.0, 1.0, [], 0.5, 0.5, 0.01, 1.0, 0.0, 10)


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for v in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(tracking_uri, "_down", {})
    monkeypatch.setattr(tracking_uri, "_answered", {})


@pytest.mark.usefixtures("no_proxy")
def test_an_epochs_retries_reach_a_server_back_after_a_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]  # bound, not listening yet: the server is restarting
    epochs, client = _epochs(f"http://127.0.0.1:{port}")
    waits: list[float] = []
    monkeypatch.setattr(fold.time, "sleep", lambda s: (waits.append(s), server.listen()))  # back after a wait
    epochs.on_epoch_end(0, _log(3))
    server.close()
    assert waits == [0.5] and len(client.batches) == 1 and client.batches[0]["metrics"][0].step == 3


@pytest.mark.usefixtures("no_proxy")
def test_a_server_gone_for_good_costs_each_epoch_a_warning_not_the_fold(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    epochs, client = _epochs("http://127.0.0.1:9")  # nothing listens on the discard port
    waits: list[float] = []
    monkeypatch.setattr(fold.time, "sleep", waits.append)
    with caplog.at_level(logging.WARNING, logger="automed"):
        epochs.on_epoch_end(0, _log(1))
    assert waits == [0.5, 1.0, 2.0] and client.batches == []
    assert "MLflow did not take the metrics of epoch 1" in caplog.text and "training goes on" in caplog.text
