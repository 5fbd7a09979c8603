"""automed ui: SIGTERM stops the whole MLflow server (uvicorn had stayed on the port with MLflow's job workers, under
init), and a port another server holds is refused before anything starts (the UI printed that server's URL and
exited 0 when its own server failed to bind)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import wait_for_ui


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_taken_port_is_refused_before_the_server_starts(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "automed.cli", "ui", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
             "--port", str(port)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    said = " ".join((r.stdout + r.stderr).split())
    assert f"the UI's port must be free on 127.0.0.1; found {port}" in said and "MLflow UI for" not in said


def test_a_port_left_in_time_wait_is_not_refused() -> None:
    """An earlier UI's connections that its server closed stay in TIME_WAIT for a minute; the server binds over
    them, so the check before it must too (restarting `automed ui` on its port was refused)."""
    from automed.cli.tools import _refuse_taken_port

    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = server.accept()
        conn.close()  # the server closes first: its side of the connection is left in TIME_WAIT
        time.sleep(0.1)
        client.close()
    with socket.socket() as plain, pytest.raises(OSError):  # what the test stands on: a plain bind is refused
        plain.bind(("127.0.0.1", port))
    _refuse_taken_port(port)


@pytest.mark.slow
def test_sigterm_stops_the_whole_server(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "automed.cli", "ui", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
         "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_ui(port, proc)
        proc.send_signal(signal.SIGTERM)  # automed alone, as `timeout` or a job scheduler sends it
        proc.wait(timeout=60)
        end = time.time() + 20
        while True:  # the port is free again: nothing of the server listens on it
            with socket.socket() as probe:
                # as a server binds: the /health connections the server closed may stay in TIME_WAIT for a minute
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", port))
                    break
                except OSError:
                    assert time.time() < end, "the MLflow server still holds the port after automed ui ended"
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
