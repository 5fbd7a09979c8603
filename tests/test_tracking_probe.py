"""The probe of a tracking server, each way bounded: a DNS lookup that hangs, a server behind a proxy (asked by HTTP
through it: a TCP probe of the host said nothing there and was skipped), a host named in NO_PROXY (probed directly)."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from automed import tracking_uri
from automed.errors import ConfigError

PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    for v in PROXIES:
        monkeypatch.delenv(v, raising=False)
        monkeypatch.delenv(v.lower(), raising=False)
    monkeypatch.setattr(tracking_uri, "_down", {})
    monkeypatch.setattr(tracking_uri, "_answered", {})


def test_a_dns_lookup_that_hangs_is_cut_at_the_probes_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """socket.getaddrinfo has no timeout: a resolver that did not answer held the probe (and the command) for as
    long as it tried."""
    release = threading.Event()
    asked: ClassVar[list[str]] = []

    def hanging(host: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(host)
        release.wait(10)
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    monkeypatch.setattr(tracking_uri, "PROBE_TIMEOUT_S", 0.3)
    t0 = time.monotonic()
    try:
        with pytest.raises(
            ConfigError, match=r"the DNS lookup of mlflow\.hospital\.example took more than 0\.3 s"
        ):
            tracking_uri.still_answers("http://mlflow.hospital.example:5000")
        took = time.monotonic() - t0
    finally:
        release.set()
    assert asked == ["mlflow.hospital.example"] and took < 3
    down = tracking_uri.found_down("http://mlflow.hospital.example:5000")
    assert down is not None and down.silent  # (its next probes wait SILENT_RECHECK_S, not the whole timeout)


class _Proxy(http.server.BaseHTTPRequestHandler):
    """A forward proxy that answers every request itself with ``status`` and records what it was asked."""

    status = 200
    asked: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.asked.append(self.path)
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Proxy]]:
    handler = type("Proxy", (_Proxy,), {"asked": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.server_address[1]}")
    yield handler
    server.shutdown()
    server.server_close()


def test_behind_a_proxy_the_server_is_asked_through_it(proxy: type[_Proxy]) -> None:
    """With HTTP_PROXY set the probe was skipped: a server down behind the proxy met MLflow's minutes of retries,
    and a proxy that was down too. Now an HTTP request of /health goes through the proxy."""
    uri = "http://mlflow.hospital.example:5000"
    tracking_uri.check_tracking_uri(uri)  # the proxy reaches the server: it answers
    assert proxy.asked == [f"{uri}/health"]

    proxy.status = 503  # the proxy cannot reach the server
    with pytest.raises(ConfigError) as err:
        tracking_uri.still_answers(uri)
    problem = err.value.problems[0]
    assert "answered 503" in problem.value and "through the proxy http://127.0.0.1:" in problem.value
    assert "NO_PROXY" in problem.fix and "--resume" in problem.fix
    down = tracking_uri.found_down(uri)
    assert down is not None and not down.silent and len(proxy.asked) == 2

    proxy.status = 404  # something answers (a server under a path prefix): MLflow's own errors say more
    tracking_uri.still_answers(uri, recheck=True)
    assert tracking_uri.found_down(uri) is None


def test_a_proxy_that_is_down_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    held = socket.socket()
    held.bind(("127.0.0.1", 0))  # bound, not listening: connections to the proxy are refused
    monkeypatch.setenv("HTTPS_PROXY", f"http://user:secret@127.0.0.1:{held.getsockname()[1]}")
    with pytest.raises(ConfigError) as err:
        tracking_uri.check_tracking_uri("https://mlflow.hospital.example")
    held.close()
    value = err.value.problems[0].value
    assert "no connection to the proxy" in value and "through the proxy http://127.0.0.1:" in value
    assert "secret" not in str(err.value)  # (the proxy's credentials are not shown)


def test_a_host_named_in_no_proxy_is_probed_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's requests go straight to a host NO_PROXY names: so does the probe (it had been skipped whenever
    HTTP_PROXY was set)."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # (a proxy that is down: never asked)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    uri = f"http://127.0.0.1:{server.getsockname()[1]}"
    with pytest.raises(ConfigError, match="Connection refused"):  # not listening yet: found down, directly
        tracking_uri.still_answers(uri)
    server.listen()
    tracking_uri.still_answers(uri, recheck=True)
    server.close()
    assert tracking_uri.found_down(uri) is None


class _TunnelProxy(http.server.BaseHTTPRequestHandler):
    """A forward proxy that answers every tunnel request (CONNECT, how an https server is reached) with ``status``."""

    status = 503

    def do_CONNECT(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_an_https_server_the_proxy_does_not_reach_is_not_blamed_on_the_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The proxy answered the tunnel request 503 (it cannot reach the server): the error said "no connection to the
    proxy" with urllib3's whole text, though the proxy answered; a 407 (credentials) counted as no connection."""
    handler = type("Tunnel", (_TunnelProxy,), {"status": 503})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for name in ("NO_PROXY", "no_proxy", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{server.server_address[1]}")
        uri = "https://mlflow.hospital.example"
        with pytest.raises(ConfigError) as err:
            tracking_uri.check_tracking_uri(uri)
        value = err.value.problems[0].value
        assert "the proxy answered 503 to the tunnel: it does not reach the server" in value
        assert "no connection to the proxy" not in value and "HTTPSConnectionPool" not in value
        handler.status = 407  # the proxy answered (it wants credentials): MLflow's own requests say more
        tracking_uri.check_tracking_uri("https://mlflow2.hospital.example")
    finally:
        server.shutdown()
        server.server_close()
