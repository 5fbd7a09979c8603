"""Connecting this driver to an existing Ray cluster (``--ray-address``, ``RAY_ADDRESS``), for sweeps and trainings.

Ray 2.60's token authentication decides whether that works. ``ray start`` switches it on when ``RAY_AUTH_MODE=token``
is set or a token exists on the node (``~/.ray/auth_token``, ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``; every local
``ray.init`` writes one); such a cluster then refuses a driver that has not set ``RAY_AUTH_MODE=token`` (Ray logs
``InvalidAuthToken`` while it retries, then raises ``ConnectionError``). A driver given ``auto`` switches token
authentication on by itself where it finds a token; one given ``HOST:PORT`` never does. A cluster started without
token authentication lets in any driver, and anyone who reaches its ports."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from automed.errors import ConfigError, Problem

AUTH_MODE = "RAY_AUTH_MODE"


_WARNED: set[str] = (
    set()
)  # said in this process: a training connects more than once (node check, screening, folds)


def _warn_once(message: str) -> None:
    """``message`` (about a cluster, naming its address) once per process: each later connection said it again."""
    if message not in _WARNED:
        _WARNED.add(message)
        logging.getLogger("automed").warning(message)


def _token_mode() -> bool:
    return os.environ.get(AUTH_MODE, "").lower() == "token"


def _target(address: str | None) -> tuple[str, str]:
    """The address Ray will connect to (``RAY_ADDRESS`` overrides none and ``auto``, as in ``ray.init``) and where
    it was given."""
    env = os.environ.get("RAY_ADDRESS")
    if env and address in (None, "auto"):
        return env, "RAY_ADDRESS"
    return address or "auto", "--ray-address"


def refused(address: str | None, exc: BaseException) -> ConfigError:
    """The :class:`ConfigError` for a connection to the cluster at ``address`` that Ray refused or could not make."""
    where, source = _target(address)
    said = " ".join(str(exc).split())
    found = f"{where} ({type(exc).__name__}: {said[:200]}{'...' if len(said) > 200 else ''})"
    rule = (
        "the driver must reach a running Ray cluster at its head's HOST:PORT, and a Ray 2.60 cluster started with "
        "`ray start` (where a token exists or RAY_AUTH_MODE=token) accepts drivers with token authentication only"
    )
    if _token_mode():
        fix = (
            "give this driver the cluster's own token: RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH names, or else "
            "~/.ray/auth_token must hold what `ray get-auth-token` prints on the head node; or check the address "
            "(`ray status` on the head node)"
        )
    else:
        fix = (
            "set RAY_AUTH_MODE=token and the cluster's token in this shell: export RAY_AUTH_MODE=token and "
            "RAY_AUTH_TOKEN_PATH=<a copy of the head node's ~/.ray/auth_token> (or RAY_AUTH_TOKEN=<what "
            "`ray get-auth-token` prints there>; ~/.ray/auth_token is read when neither is set); or check the "
            "address (`ray status` on the head node); see README 'Run on a cluster'"
        )
    return ConfigError([Problem(source, rule, found, fix)], f"cannot connect to the Ray cluster at {where}")


def _head(where: str) -> tuple[str, int] | str:
    """The head's ``(host, port)`` that ``where`` names, or why it names none (``auto``: the cluster that
    ``ray start`` last started on this machine)."""
    if where == "auto":
        from ray._private.services import canonicalize_bootstrap_address

        try:
            found = canonicalize_bootstrap_address("auto")
        except (ConnectionError, ValueError) as exc:
            return " ".join(str(exc).split())[:200].rstrip(".")
        if found is None:
            return "no Ray cluster runs on this machine"
        where = found
    host, _, port = where.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return "not HOST:PORT"
    return host.strip("[]"), int(port)


def check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """Refuse, before any work, a cluster address (``--ray-address``, ``RAY_ADDRESS``) that nothing answers at:
    ``ray.init`` retried such an address for ever (a training had planned and preprocessed the dataset first)."""
    where, source = _target(address)
    if where == "local":  # Ray starts a cluster of its own here: nothing to reach
        return
    head = _head(where)
    if not isinstance(head, str):
        try:
            socket.create_connection(head, timeout=timeout_s).close()
            return
        except OSError as exc:
            head = f"nothing answers at {head[0]}:{head[1]} ({type(exc).__name__}: {exc})"
    raise ConfigError(
        [
            Problem(
                source,
                "the address of a running Ray cluster's head node, HOST:PORT (its GCS port, 6379 unless `ray start "
                "--head --port` said otherwise), or auto on a node of that cluster",
                f"{where}: {head}",
                "start the cluster (`ray start --head` on the head node) or correct the address: `ray status` on "
                "the head node prints it (a --resume uses the address the training saved unless --ray-address "
                "gives the cluster's new one); to run here, leave out --ray-address and RAY_ADDRESS (a --resume: pass "
                "--ray-address local)",
            )
        ],
        f"cannot connect to the Ray cluster at {where}",
    )


def connect(address: str | None, **kwargs: Any) -> None:
    """``ray.init`` on the existing cluster at ``address`` (None: ``RAY_ADDRESS``).

    An address nothing answers at (:func:`check_reachable`), or a refused or failed connection, is a
    :class:`ConfigError` naming the address, the rule and the fix (see :func:`refused`); a cluster that lets this driver in without a token is warned about, as it is open to anyone
    who reaches its ports."""
    import ray
    from ray.exceptions import AuthenticationError

    where, _ = _target(address)
    check_reachable(address)
    if not _token_mode() and where != "auto":
        _warn_once(
            f"connecting to the Ray cluster at {where} without {AUTH_MODE}=token: a cluster with token "
            "authentication refuses this driver (Ray logs InvalidAuthToken until it gives up)"
        )
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, AuthenticationError) as exc:
        raise refused(address, exc) from exc
    if not _token_mode():  # ray.init sets it where `auto` found a token
        _warn_once(
            f"the Ray cluster at {where} let this driver in without a token: it runs without token authentication, "
            "so anyone who reaches its ports can run code on its nodes and read the data (README 'Run on a cluster')"
        )
