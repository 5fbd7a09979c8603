"""automed's MLflow calls outside a Tracker (a report's ``runs:/``, ``--log-review``'s registered version, predict's
``--continue`` record, export's attach to the registry, a registered model's download and its registration) are
bounded as the Tracker's are. With a bare ``MlflowClient`` each waited on MLflow's retries when the tracking server
was gone: every one was still waiting after 60 s against a closed port (reproduced), about 4 minutes per request,
and hours for a server that takes connections and never answers. Now a probe first, then bounded retries: the clear
"the tracking server answers" error in seconds."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from automed import tracking, tracking_probe, tracking_uri
from automed.errors import ConfigError
from automed.privacy import no_redaction


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No proxy, no bound the user set, no earlier probe's verdict; MLflow's own URIs restored afterwards."""
    import mlflow

    for v in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(v, raising=False)
    for v in (*tracking_probe.REQUEST_BOUNDS, "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(tracking_uri, "_down", {})
    monkeypatch.setattr(tracking_uri, "_answered", {})
    before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    yield
    tracking_uri.set_mlflow_uris(*before)


def _closed_port() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def _within(seconds: float, work: Callable[[], Any]) -> BaseException:
    """The exception ``work()`` ended with, failing the test if it still runs after ``seconds`` (in a daemon
    thread: a path that waits on MLflow's retries does not hold the test for minutes)."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            failed.append(exc)

    t0 = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still waiting on the tracking server after {time.monotonic() - t0:.0f} s"
    assert len(failed) == 1, "it ended without an error against a tracking server that is gone"
    return failed[0]


def _report_run(uri: str, tmp: Path) -> None:
    from automed.workflow.report_inputs import _materialize

    _materialize("0123abcd", tmp / "run", uri)


def _review_run(uri: str, tmp: Path) -> None:
    from automed.workflow.review_log import training_run

    training_run("models:/m@champion", uri)


def _continue_version(uri: str, tmp: Path) -> None:
    from automed.workflow.predict_continue import registered_version

    registered_version("models:/m@champion", uri)


def _attach(uri: str, tmp: Path) -> None:
    from automed.export.mlflow_attach import attach_export

    attach_export(tmp, {}, "card", "models:/m/1", uri)


def _download(uri: str, tmp: Path) -> None:
    from automed.model_store import download_model

    download_model("models:/m@champion", tmp / "model", uri)


@pytest.mark.parametrize(
    "path", [_report_run, _review_run, _continue_version, _attach, _download], ids=lambda f: f.__name__[1:]
)
def test_each_mlflow_path_outside_a_tracker_fails_in_seconds_on_a_server_gone(
    clean: None, tmp_path: Path, path: Callable[[str, Path], None]
) -> None:
    uri = _closed_port()
    err = _within(20, lambda: path(uri, tmp_path))
    assert isinstance(err, ConfigError), repr(err)
    assert "the tracking server answers" in str(err) and uri in str(err) and "Connection refused" in str(err)
    assert not any(v in os.environ for v in tracking_probe.REQUEST_BOUNDS)  # (no bound left behind)


def test_a_server_that_takes_connections_and_never_answers_fails_at_the_probe(
    clean: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TCP probe reaches such a host; the HTTP probe of /health does not get an answer: the clear error after the
    probe's timeout, not three request timeouts (or MLflow's 8 of 120 s)."""
    monkeypatch.setattr(tracking_uri, "PROBE_TIMEOUT_S", 1.0)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
    try:
        t0 = time.monotonic()
        err = _within(20, lambda: _continue_version(uri, Path()))
        assert time.monotonic() - t0 < 10
    finally:
        silent.close()
    assert isinstance(err, ConfigError) and "the tracking server answers" in str(err), repr(err)
    assert re.search(r"(took more than|no answer within) 1 s", str(err)), str(err)  # (the probe's own bound)


def test_a_registration_whose_server_died_after_a_good_probe_costs_seconds(
    clean: None, tmp_path: Path
) -> None:
    """MLflow's fluent calls of a registration (``start_run``, ``log_model``, ``register_model``) are bounded too:
    the server died right after a probe found it answering (no probe for FRESH_S), and the upload met MLflow's
    retries (still waiting after 60 s when reproduced)."""
    from mlflow.tracking import MlflowClient

    from automed.model_store import register_ensemble

    uri = _closed_port()
    t = object.__new__(tracking.Tracker)
    t.uri, t.registry, t.redactor, t.experiment_id, t.experiment = uri, uri, no_redaction(), "1", "x"
    t.client = tracking.Bounded(MlflowClient(tracking_uri=uri), uri)
    tracking_uri.set_mlflow_uris(uri, uri)
    tracking_uri._answered[uri] = (
        time.monotonic() + 60
    )  # a good probe a moment ago (fresh for the whole test)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.json").write_text("{}")
    err = _within(20, lambda: register_ensemble(t, "0123abcd", bundle, "m", 0.5, 1, [1.0, 1.0, 1.0]))
    assert isinstance(err, ConfigError) and "the tracking server answers" in str(err), repr(err)
    assert not any(v in os.environ for v in tracking_probe.REQUEST_BOUNDS)


def test_overlapping_bounded_windows_of_two_threads_lift_the_bounds_after_the_last(
    clean: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bounds are process environment (MLflow reads nothing else: its stores pass no retries or timeout to
    ``http_request``), set while any of automed's requests is in flight: a thread whose window ends first leaves
    them to the other's request, and the user's own value is never touched."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "300")
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, dict[str, str | None]] = {}

    def look() -> dict[str, str | None]:
        return {v: os.environ.get(v) for v in tracking_probe.REQUEST_BOUNDS}

    def first() -> None:
        with tracking_probe.bounded_requests():
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second() -> None:
        first_in.wait(10)
        with tracking_probe.bounded_requests():
            second_in.set()
            first_out.wait(10)
            seen["after the first left"] = look()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(20)
    assert seen["after the first left"] == {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "300",
    }
    assert look() == {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": None,
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": None,
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "300",
    }
