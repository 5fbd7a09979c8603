"""How a tracking server is asked whether it answers, each way bounded in time, and how long automed's own MLflow
requests may wait: :func:`reach` (a TCP connection, its DNS lookup bounded too), :func:`ask_health` (an HTTP request
through the proxy MLflow would use) and :func:`bounded_requests` (MLflow's HTTP retries and timeout).

Why each bound: ``socket.getaddrinfo`` has no timeout (a DNS server that does not answer held a probe, and the
command, for as long as the resolver tried); a TCP connection to a proxy says nothing of the server behind it; and
MLflow retries a failed request 7 times with backoff (about 4 minutes for a server that refuses connections, hours
for one that accepts them and never answers: a 120 s timeout per try)."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

# MLflow's environment for automed's requests (mlflow.environment_variables; read at every request): 2 retries, 0 s
# and 2 s apart, and 30 s for a connection or an answer (MLflow: 7 retries, backoff factor 2, 120 s)
REQUEST_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
# answers a gateway or proxy gives when the server behind it does not answer
GATEWAY_DOWN = (502, 503, 504)
HEALTH = "/health"  # MLflow's server answers it without credentials


def within(seconds: float, what: str, work: Callable[[], T]) -> T:
    """``work()``, or :class:`TimeoutError` naming ``what`` once ``seconds`` have passed. It runs in a daemon
    thread, left to end on its own after a timeout (a DNS lookup cannot be cancelled) and never holding the
    process's exit."""
    done = threading.Event()
    value: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            value.append(work())
        except BaseException as exc:  # (handed to the caller, whatever it is)
            error.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name=f"automed {what}", daemon=True).start()
    if not done.wait(seconds):
        raise TimeoutError(f"{what} took more than {seconds:g} s")
    if error:
        raise error[0]
    return value[0]


def reach(host: str, port: int, timeout_s: float) -> None:
    """A TCP connection to ``host:port`` within ``timeout_s`` seconds in all, its DNS lookup included (resolved in
    a worker thread: :func:`within`). Raises :class:`OSError` (:class:`TimeoutError` for a lookup or connection that
    took too long)."""
    deadline = time.monotonic() + timeout_s
    found = within(
        timeout_s, f"the DNS lookup of {host}", lambda: socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    )
    last: OSError = OSError(f"{host} has no address")
    for family, kind, proto, _, address in found:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no connection to {host}:{port} within {timeout_s:g} s")
        with socket.socket(family, kind, proto) as s:
            s.settimeout(left)
            try:
                s.connect(address)
                return
            except OSError as exc:
                last = exc
    raise last


def proxy_for(uri: str) -> str | None:
    """The proxy MLflow's requests go through to ``uri`` (``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``, unless
    ``NO_PROXY`` names the host: the rules of ``requests``, which MLflow uses), or None."""
    from requests.utils import get_environ_proxies, select_proxy

    proxy = select_proxy(uri, get_environ_proxies(uri))
    return str(proxy) if proxy else None


def ask_health(uri: str, timeout_s: float) -> None:
    """An HTTP request of the server's ``/health`` within ``timeout_s`` seconds in all (DNS lookups included),
    through the proxy MLflow would use. The server answers unless the request fails or the answer is a gateway's
    "the server behind me does not answer" (502, 503, 504): any other status (404 from a server under a path prefix,
    401 or 407 for credentials) reached something that MLflow's own requests will reach, and their errors say
    more. No credentials are sent and the certificate is not checked (only the answer's status is read: a
    certificate MLflow refuses is its own clear error). Raises :class:`OSError` (:class:`TimeoutError` for one that
    took too long)."""
    import warnings
    from urllib.parse import urlsplit, urlunsplit

    import requests

    parts = urlsplit(uri)
    netloc = parts.netloc.rsplit("@", 1)[-1]  # (user:password@ in the URI: not sent)
    url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + HEALTH, "", ""))

    def get() -> requests.Response:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # (InsecureRequestWarning: the certificate is not checked on purpose)
            return requests.get(url, timeout=timeout_s, verify=False, allow_redirects=False)

    try:
        answer = within(timeout_s, f"a request of {HEALTH}", get)
    except requests.Timeout as exc:
        raise TimeoutError(f"no answer within {timeout_s:g} s") from exc
    except requests.exceptions.ProxyError as exc:
        tunnel = re.search(r"Tunnel connection failed: (\d{3})", str(exc))
        if tunnel is None:
            raise OSError(f"no connection to the proxy ({_reason(exc)})") from exc
        code = int(tunnel.group(1))  # an https server: the proxy answered the tunnel (CONNECT) itself
        if code in GATEWAY_DOWN:
            raise OSError(f"the proxy answered {code} to the tunnel: it does not reach the server") from exc
        return  # (407 and the like: the proxy answered; MLflow's own requests say more)
    except requests.RequestException as exc:
        raise OSError(_reason(exc)) from exc
    if answer.status_code in GATEWAY_DOWN:
        raise OSError(f"answered {answer.status_code} {answer.reason}")


def _reason(exc: BaseException) -> str:
    """The system's words for a failed request (``Connection refused``, ``Name or service not known``), found
    among the exceptions ``requests`` and ``urllib3`` wrap it in; else the request's own text."""
    seen: list[BaseException] = [exc]
    for e in seen:
        if isinstance(e, OSError) and e.strerror:
            return str(e.strerror)
        more = (e.__cause__, e.__context__, getattr(e, "reason", None), *e.args)
        seen.extend(m for m in more if isinstance(m, BaseException) and m not in seen)
    return str(exc)


_bounds_lock = threading.Lock()
_bounds_depth = 0
_bounds_set: list[str] = []  # the variables bounded_requests set (the user set none of them)


@contextlib.contextmanager
def bounded_requests() -> Iterator[None]:
    """MLflow's HTTP requests inside it retry and wait as :data:`REQUEST_BOUNDS` says, not for minutes: a request
    to a server that died after a probe found it answering (a probe is skipped for 2 s after a good one) fails in
    seconds, and the caller asks the server again for the clear error. A variable the user set keeps its value (a
    slow server, a rate-limited gateway). Every MLflow call automed makes runs inside it (a Tracker's client, and
    :func:`~automed.tracking.bounded_client` and :func:`~automed.tracking.bounded` outside one: a report's runs, a
    registered model's upload, download and export attach), so the bounds are automed's, whichever thread asks.

    Why the process environment, set only while a request is in flight: MLflow 3's stores send every request
    through ``rest_utils.call_endpoint``, which passes no retries or timeout to ``http_request``; that reads
    ``MLFLOW_HTTP_REQUEST_*`` from ``os.environ`` at each request, and no client, store or request takes them as
    arguments. So a request of another thread meanwhile gets the bounds too (all of automed's want them; a library
    user's own MLflow calls in another thread of the same process are bounded while automed's are in flight). The
    lock makes the window thread-safe: threads' windows nest (a count), the first sets the variables and the last
    one out lifts them, and a variable the user set is never set or lifted. A host that drops connections instead of
    refusing them costs the three tries' timeouts, about 90 s (measured 98 s with the probe after them): shorter
    timeouts would cut off a slow server's answer after an artifact upload."""
    global _bounds_depth
    with _bounds_lock:
        if _bounds_depth == 0:
            for name, value in REQUEST_BOUNDS.items():
                if name not in os.environ:
                    os.environ[name] = value
                    _bounds_set.append(name)
        _bounds_depth += 1
    try:
        yield
    finally:
        with _bounds_lock:
            _bounds_depth -= 1
            if _bounds_depth == 0:
                for name in _bounds_set:
                    os.environ.pop(name, None)
                _bounds_set.clear()
