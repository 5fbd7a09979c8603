"""A tracking server that goes away in the middle of a command: every call of the Tracker fails in seconds with an
error that says how to continue, instead of MLflow's minutes of retries per request (hours over a training)."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import pytest

from automed import tracking, tracking_probe, tracking_uri
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


def test_a_server_that_dies_right_after_a_good_probe_costs_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request sent within FRESH_S of a good probe is not probed: to a server that had just died it met MLflow's
    own retries (7, with backoff: minutes per request; still waiting after 25 s when reproduced). automed's requests
    now retry twice, 2 s apart, and the failure asks the server again for the clear error."""
    from mlflow.tracking import MlflowClient

    for v in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(v, raising=False)
    for v in tracking_probe.REQUEST_BOUNDS:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(tracking_uri, "_down", {})
    monkeypatch.setattr(tracking_uri, "_answered", {})
    server = _listen()
    uri = f"http://127.0.0.1:{server.getsockname()[1]}"
    tracker, _ = _tracker(uri)
    tracker.client = tracking.Bounded(MlflowClient(tracking_uri=uri), uri)
    tracking_uri.still_answers(uri)  # a good probe: the next requests are not probed for FRESH_S
    server.close()  # the server dies
    failed: list[BaseException] = []

    def send() -> None:
        try:
            tracker.log_metrics("run", {"loss": 1.0}, step=1)
        except BaseException as exc:
            failed.append(exc)

    t0 = time.monotonic()
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    sender.join(30)
    assert not sender.is_alive(), "a request to a server that died still waits on MLflow's retries after 30 s"
    assert time.monotonic() - t0 < 15 and len(failed) == 1 and isinstance(failed[0], ConfigError)
    assert "the tracking server answers" in str(failed[0]) and "--resume" in str(failed[0])
    down = tracking_uri.found_down(uri)
    assert down is not None and down.http  # (found down: the next calls fail at once)
    assert not any(
        v in os.environ for v in tracking_probe.REQUEST_BOUNDS
    )  # (bounds lifted after the request)


class _Failing:
    """Stands for MlflowClient: records MLflow's HTTP settings it was called under, then fails as MLflow does for a
    run that does not exist."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str | None]] = []

    def get_run(self, run_id: str) -> Any:
        self.seen.append({v: os.environ.get(v) for v in tracking_probe.REQUEST_BOUNDS})
        raise LookupError(f"Run '{run_id}' not found")


def test_a_bounded_client_keeps_mlflows_errors_and_the_users_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failure of a server that answers is MLflow's own error (not "the server answers"); a bound the user set
    (a slow server) keeps the user's value, the others apply only while a request is in flight."""
    import http.server

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    for v in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "300")
    monkeypatch.setattr(tracking_uri, "_down", {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    failing = _Failing()
    client = tracking.Bounded(failing, uri)
    try:
        with pytest.raises(LookupError, match="not found"):
            client.get_run("abc")
    finally:
        server.shutdown()
        server.server_close()
    assert failing.seen == [
        {
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "300",
        }
    ]
    assert tracking_uri.found_down(uri) is None and os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "300"
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
