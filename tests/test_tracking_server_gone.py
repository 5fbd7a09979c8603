"""A tracking server that goes away in the middle of a command: every call of the Tracker fails in seconds with an
error that says how to continue, instead of MLflow's minutes of retries per request (hours over a training)."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from automed import tracking, tracking_uri
from automed.errors import ConfigError
from automed.privacy import no_redaction


class _Client:
    """Stands for MlflowClient: records the batches it is given."""

    def __init__(self) -> None:
        self.batches: list[Any] = []

    def log_batch(self, run_id: str, **kw: Any) -> None:
        self.batches.append((run_id, kw))


def _tracker(uri: str) -> tuple[tracking.Tracker, _Client]:
    t = object.__new__(tracking.Tracker)
    client = _Client()
    t.uri, t.redactor, t.client, t.experiment_id, t.experiment = uri, no_redaction(), client, "1", "x"
    return t, client


def _listen(port: int = 0) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


def test_a_server_gone_mid_command_fails_each_call_at_once_then_is_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for v in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(tracking_uri, "_down", {})
    monkeypatch.setattr(tracking_uri, "_answered", {})
    server = _listen()
    port = server.getsockname()[1]
    tracker, client = _tracker(f"http://127.0.0.1:{port}")
    tracker.log_metrics("run", {"loss": 1.0}, step=1)
    assert len(client.batches) == 1

    server.close()  # the server goes away
    monkeypatch.setattr(
        tracking_uri, "FRESH_S", 0.0
    )  # (its last answer is no longer fresh: the next call asks)
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as err:
        tracker.log_metrics("run", {"loss": 0.9}, step=2)
    assert "the tracking server answers" in str(err.value) and "--resume" in str(err.value)
    probes: list[str] = []
    monkeypatch.setattr(tracking_uri, "_probe_server", lambda uri, **kw: probes.append(uri))
    with pytest.raises(ConfigError):  # found down a moment ago: not even a connection is tried
        tracker.set_tags("run", {"a": "b"})
    assert time.monotonic() - t0 < 10 and probes == [] and len(client.batches) == 1

    monkeypatch.setattr(tracking_uri, "RECHECK_S", 0.0)  # later: it is asked again, and answers
    tracker.log_metrics("run", {"loss": 0.8}, step=3)
    assert probes == [f"http://127.0.0.1:{port}"] and len(client.batches) == 2


def test_a_local_store_is_never_probed(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setattr(tracking_uri, "_probe_server", lambda uri, **kw: pytest.fail(f"probed {uri}"))
    tracker, client = _tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracker.log_metrics("run", {"loss": 1.0}, step=1)
    assert len(client.batches) == 1


def test_the_server_gone_fix_fits_commands_without_resume(monkeypatch: pytest.MonkeyPatch) -> None:
    for v in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(tracking_uri, "_down", {})
    with pytest.raises(ConfigError) as err:
        tracking_uri.still_answers("http://127.0.0.1:9")
    fix = err.value.problems[0].fix
    assert "`automed train` or `automed sweep` with --resume" in fix and "any other command as it was" in fix


def test_a_burst_of_requests_probes_the_server_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fold's end sends its artifacts, metrics, tags and end of run back to back: one connection was opened to the
    server before each (40 probes for 76 requests in a 2-fold, 3-epoch training); an answer a moment ago is enough."""
    for v in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(tracking_uri, "_down", {})
    monkeypatch.setattr(tracking_uri, "_answered", {})
    monkeypatch.setattr(tracking_uri, "FRESH_S", 60.0)  # (a slow machine never ages the first answer here)
    server = _listen()
    uri = f"http://127.0.0.1:{server.getsockname()[1]}"
    probes: list[str] = []
    real = tracking_uri._probe_server
    monkeypatch.setattr(tracking_uri, "_probe_server", lambda u, **kw: (probes.append(u), real(u, **kw)))
    tracker, client = _tracker(uri)
    for step in range(5):
        tracker.log_metrics("run", {"loss": 1.0}, step=step)
        tracker.set_tags("run", {"a": "b"})
    assert probes == [uri] and len(client.batches) == 10
    tracker.check_store(recheck=True)  # a retry always asks
    assert len(probes) == 2
    server.close()
    monkeypatch.setattr(tracking_uri, "FRESH_S", 0.0)  # the answer aged: the server gone is found at once
    with pytest.raises(ConfigError, match="the tracking server answers"):
        tracker.set_tags("run", {"a": "c"})
    assert len(probes) == 3 and len(client.batches) == 10
    monkeypatch.setattr(tracking_uri, "FRESH_S", 60.0)  # and a server found down is never taken as fresh
    with pytest.raises(ConfigError, match="the tracking server answers"):
        tracker.set_tags("run", {"a": "d"})
    assert len(client.batches) == 10
