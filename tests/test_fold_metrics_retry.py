"""A fold's per-epoch metrics when the tracking server restarts: the retries ask the server again (the "found down"
memory of the Tracker had failed them at once for 30 s, so a restart of a second or two lost that epoch's metrics
and every epoch's until then), and a server gone for good costs a warning per epoch, not the fold."""

from __future__ import annotations

import logging
import socket
import threading
from types import SimpleNamespace
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
    return fold.MlflowEpochs(tracker, "run", SimpleNamespace(epoch_metric="dice"), []), client  # type: ignore[arg-type]


def _log(epoch: int) -> EpochLog:
    return EpochLog(epoch, 1.0, 1.0, [], 0.5, 0.5, 0.01, 1.0, 0.0, 10)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The epochs' clock (for the backoff after a failed epoch), moved by the test: ``clock[0] += s``."""
    now = [1000.0]
    monkeypatch.setattr(fold, "_now", lambda: now[0])
    return now


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
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, clock: list[float]
) -> None:
    epochs, client = _epochs("http://127.0.0.1:9")  # nothing listens on the discard port
    waits: list[float] = []
    monkeypatch.setattr(fold.time, "sleep", waits.append)
    probes: list[float] = []
    real = tracking_uri._probe_server
    monkeypatch.setattr(tracking_uri, "_probe_server", lambda u, **kw: (probes.append(1), real(u, **kw)))
    with caplog.at_level(logging.WARNING, logger="automed"):
        epochs.on_epoch_end(0, _log(1))
    assert waits == [0.5, 1.0, 2.0] and client.batches == [] and len(probes) == 4
    assert "MLflow did not take the metrics of epoch 1" in caplog.text and "training goes on" in caplog.text
    assert "it is asked again in 5 s" in caplog.text
    clock[0] += 1  # an epoch within the backoff: not asked (each had cost a probe)
    epochs.on_epoch_end(0, _log(2))
    assert waits == [0.5, 1.0, 2.0] and len(probes) == 4 and [e for e, _ in epochs.missed] == [1, 2]
    # found down before the next epoch past the backoff: asked once (it could be back), no retries (they had cost
    # 3.5 s per epoch)
    clock[0] += 5
    with caplog.at_level(logging.WARNING, logger="automed"):
        epochs.on_epoch_end(0, _log(3))
    assert waits == [0.5, 1.0, 2.0] and client.batches == [] and len(probes) == 5
    assert (
        "MLflow did not take the metrics of epoch 3" in caplog.text and "asked again in 10 s" in caplog.text
    )


@pytest.mark.usefixtures("no_proxy")
def test_the_epochs_a_server_missed_go_with_the_first_epoch_it_takes(
    monkeypatch: pytest.MonkeyPatch, clock: list[float]
) -> None:
    """Without a --resume (catch_up), the epochs logged while the server was down had left a gap in the run's
    curves for good."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    epochs, client = _epochs(f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setattr(fold.time, "sleep", lambda s: None)
    epochs.on_epoch_end(0, _log(1))
    epochs.on_epoch_end(0, _log(2))
    assert client.batches == [] and [e for e, _ in epochs.missed] == [1, 2]
    server.listen()  # the server is back
    clock[0] += 60  # (past the backoff)
    epochs.on_epoch_end(0, _log(3))
    server.close()
    assert [b["metrics"][0].step for b in client.batches] == [3, 1, 2] and epochs.missed == []


def _silent_host() -> tuple[socket.socket, list[socket.socket]]:
    """A server whose host drops new connections (no refusal: they time out), as a firewall or a host that went
    off the network does: a listening socket whose backlog is full."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    held: list[socket.socket] = []
    for _ in range(16):
        c = socket.socket()
        c.settimeout(0.2)
        try:
            c.connect(server.getsockname())
        except TimeoutError:
            c.close()
            return server, held
        held.append(c)
    pytest.skip("this kernel never dropped a connection to a full backlog")


@pytest.mark.usefixtures("no_proxy")
def test_a_silent_host_costs_each_epoch_one_short_probe(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, clock: list[float]
) -> None:
    """A host that drops packets made each probe wait its whole timeout: 4 probes and 3.5 s of waits (23.5 s) for
    the first epoch, 3 probes (18.5 s) for every later one."""
    server, held = _silent_host()
    monkeypatch.setattr(tracking_uri, "PROBE_TIMEOUT_S", 0.4)  # (5 s and 2 s: scaled down, same ratio)
    monkeypatch.setattr(tracking_uri, "SILENT_RECHECK_S", 0.16)
    timeouts: list[float] = []
    real = tracking_uri._probe_server
    monkeypatch.setattr(
        tracking_uri,
        "_probe_server",
        lambda u, **kw: (timeouts.append(kw.get("timeout_s", -1.0)), real(u, **kw)),
    )
    epochs, client = _epochs(f"http://127.0.0.1:{server.getsockname()[1]}")
    waits: list[float] = []
    monkeypatch.setattr(fold.time, "sleep", waits.append)
    with caplog.at_level(logging.WARNING, logger="automed"):
        for epoch in (1, 2, 3):
            epochs.on_epoch_end(0, _log(epoch))
            clock[0] += 60  # (each epoch past the backoff of the one before: asked)
    for c in (*held, server):
        c.close()
    assert timeouts == [0.4, 0.16, 0.16] and waits == [] and client.batches == []
    assert caplog.text.count("MLflow did not take the metrics of epoch") == 3 and "timed out" in caplog.text


@pytest.mark.usefixtures("no_proxy")
def test_a_host_that_takes_seconds_to_fail_is_silent_too(
    monkeypatch: pytest.MonkeyPatch, clock: list[float]
) -> None:
    """A probe that fails slowly with an error other than a timeout (a host off the network: no route after the
    kernel's own waits) is as costly to repeat as a timeout; it was retried 3 times per epoch."""
    from automed.errors import ConfigError

    monkeypatch.setattr(tracking_uri, "SILENT_S", 0.05)
    timeouts: list[float] = []

    def unreachable(uri: str, **kw: Any) -> None:
        timeouts.append(kw["timeout_s"])
        threading.Event().wait(0.1)  # the probe takes its time (time.sleep is the test's: it records waits)
        try:
            raise OSError(113, "No route to host")
        except OSError as exc:
            raise ConfigError.single(
                "--tracking-uri", "the tracking server answers", f"{uri}: No route to host", "x"
            ) from exc

    monkeypatch.setattr(tracking_uri, "_probe_server", unreachable)
    epochs, client = _epochs("http://10.1.2.3:5000")
    waits: list[float] = []
    monkeypatch.setattr(fold.time, "sleep", waits.append)
    epochs.on_epoch_end(0, _log(1))
    clock[0] += 60  # (past the backoff)
    epochs.on_epoch_end(0, _log(2))
    assert timeouts == [tracking_uri.PROBE_TIMEOUT_S, tracking_uri.SILENT_RECHECK_S] and waits == []
    assert tracking_uri.found_down("http://10.1.2.3:5000").silent and client.batches == []  # type: ignore[union-attr]


class _Store:
    """Stands for a Tracker whose server answers its probes but not its requests (a server whose database is down,
    a gateway answering 503 that the probe does not see): each request fails until ``works``."""

    def __init__(self) -> None:
        self.works, self.tries, self.rechecks, self.logged = False, 0, 0, []

    def check_store(self, recheck: bool = False) -> None:
        self.rechecks += recheck

    def found_down(self) -> None:
        return None

    def log_metrics(self, run_id: str, metrics: dict[str, float | None], step: int | None = None) -> None:
        self.tries += 1
        if not self.works:
            raise ConnectionError("503 Service Unavailable")
        self.logged.append(step)


def test_a_store_that_fails_is_asked_again_after_a_growing_backoff(
    monkeypatch: pytest.MonkeyPatch, clock: list[float]
) -> None:
    """Every epoch had paid 4 tries and 3.5 s of waits (and each try MLflow's retries of the 503: 14 s an epoch,
    measured with a server answering /health and 503 to requests). Now the epoch after a failed one is asked once,
    and not before the backoff (5 s, then 10 s, ...) has passed; the epochs meanwhile go with the first one the
    store takes."""
    store = _Store()
    epochs = fold.MlflowEpochs(store, "run", SimpleNamespace(epoch_metric="dice"), [])  # type: ignore[arg-type]
    waits: list[float] = []
    monkeypatch.setattr(fold.time, "sleep", waits.append)
    epochs.on_epoch_end(0, _log(1))  # the first failure: retried (a server restarting)
    assert store.tries == 4 and waits == [0.5, 1.0, 2.0]
    for epoch, after, tries in ((2, 1, 4), (3, 5, 5), (4, 9, 5), (5, 2, 6)):
        clock[0] += after
        epochs.on_epoch_end(0, _log(epoch))
        assert store.tries == tries, f"epoch {epoch}"
    assert waits == [0.5, 1.0, 2.0] and epochs.backoff_s == 20 and store.logged == []
    store.works = True
    clock[0] += 10  # within the backoff of 20 s: not asked yet
    epochs.on_epoch_end(0, _log(6))
    assert store.logged == []
    clock[0] += 10
    epochs.on_epoch_end(0, _log(7))
    assert store.logged == [7, 1, 2, 3, 4, 5, 6] and epochs.missed == [] and epochs.backoff_s == 0


def test_the_epochs_missed_at_a_folds_end_are_sent_with_it(clock: list[float]) -> None:
    """The last epochs the store missed (the backoff, or a store back after the last epoch) had waited for a
    --resume that a finished fold never gets: the fold's end sends them before its artifacts."""
    store = _Store()
    epochs = fold.MlflowEpochs(store, "run", SimpleNamespace(epoch_metric="dice"), [])  # type: ignore[arg-type]
    epochs.ask_at, epochs.missed = clock[0] + 60, [(1, {"train_loss": 1.0}), (2, {"train_loss": 0.9})]
    epochs.flush()  # the store still fails: they are kept
    assert [e for e, _ in epochs.missed] == [1, 2]
    store.works = True
    epochs.flush()  # back: sent, whatever the backoff, the server asked again first (not its memory of it down)
    assert store.logged == [1, 2] and epochs.missed == [] and store.rechecks == 2
    epochs.flush()  # nothing missed: nothing asked
    assert store.rechecks == 2
