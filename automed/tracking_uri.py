"""Which MLflow store a tracking URI names, and whether it answers: checked before any work (a typo, a server that is
not running) and, for a tracking server, before the requests of a command (a server that went away; a server that
answered a moment ago is not asked again)."""

from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path
from typing import NamedTuple

DB_NAME = "mlflow.db"


def resolve_uri(uri: str | None = None, root: Path | None = None) -> str:
    """``uri``, else ``MLFLOW_TRACKING_URI``, else the embedded SQLite store under ``root`` (the current dir)."""
    if uri:
        return _absolute_sqlite(uri)
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return _absolute_sqlite(env)
    base = (root or Path.cwd()).resolve()
    return f"sqlite:///{base / DB_NAME}"


def registry_uri(tracking_uri: str, recorded: str | None = None) -> str:
    """The model registry's store: ``MLFLOW_REGISTRY_URI`` when the user set one (e.g. a registry shared by
    several tracking stores), else ``recorded`` (the registry a work dir's training registered in: a later
    ``automed select`` or ``--resume`` without the variable had registered into the tracking store's own), else
    the tracking store."""
    env = os.environ.get("MLFLOW_REGISTRY_URI")
    return _absolute_sqlite(env) if env else (recorded or tracking_uri)


def set_mlflow_uris(tracking: str, registry: str) -> None:
    """MLflow's own tracking and registry URIs (its fluent API: runs, logged models, downloads) without the copies
    MLflow makes of them in ``MLFLOW_TRACKING_URI`` / ``MLFLOW_REGISTRY_URI``: those say what the user chose, and
    automed reads them (:func:`resolve_uri`, :func:`registry_uri`). With the copies, every later store of the same
    process (a second training from Python, a test) went to the first one's tracking store and registry."""
    import mlflow

    saved = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _plugin_schemes() -> tuple[str, ...]:
    """The schemes installed MLflow plugins serve (``azureml``, SageMaker's ``arn``, ...)."""
    from importlib.metadata import entry_points

    return tuple(ep.name.lower() for ep in entry_points(group="mlflow.tracking_store"))


SERVER_FIX = (
    "start the server (e.g. `automed ui --tracking-uri sqlite:///PATH/mlflow.db`), check host and port, or use a "
    "local store (sqlite:///FILE.db)"
)
REGISTRY_FIX = (
    "start the registry's server, check host and port, or unset MLFLOW_REGISTRY_URI (the tracking store then holds "
    "the registry)"
)
# (one text for every command that tracks: train and sweep go on with --resume, the others have none)
GONE_FIX = (
    "start the server again (or restore the network), then run the command again: `automed train` or `automed "
    "sweep` with --resume (the work dir keeps finished folds and checkpoints), any other command as it was"
)
RECHECK_S = 30.0  # a server found down is not asked again for this long (each call fails at once meanwhile)
# a server that answered a probe this recently is not probed again (a burst of requests: one probe)
FRESH_S = 2.0
PROBE_TIMEOUT_S = 5.0  # how long a probe waits for a connection
# ... to a host found silent (dropping connections): a host that is back answers in one round trip
SILENT_RECHECK_S = 2.0
SILENT_S = 1.0  # a probe that took this long to fail (whatever the error) found the host silent


class Down(NamedTuple):
    """A tracking server found down: when (``time.monotonic()``), why, whether its host was silent (the
    connection timed out, or took :data:`SILENT_S` or more to fail: no prompt refusal), which makes every later
    probe wait seconds, not a round trip, and whether it was asked by HTTP (``http``: through a proxy, or after a
    request failed), which the next probes do too: a gateway answering 503 takes TCP connections."""

    since: float
    why: str
    silent: bool
    http: bool = False


_down: dict[str, Down] = {}  # tracking URI -> when and why it was found down
_answered: dict[str, float] = {}  # tracking URI -> when a probe last found it answering (time.monotonic())


def _probe_server(
    uri: str,
    timeout_s: float = PROBE_TIMEOUT_S,
    fix: str = SERVER_FIX,
    where: str = "--tracking-uri",
    http: bool = False,
) -> None:
    """A tracking server that does not answer is an error before any work (MLflow's own retries would stall a
    training for minutes per request), in ``timeout_s`` seconds at most, its DNS lookup included (a resolver that
    does not answer had held the probe without a bound).

    Directly, a TCP connection to its host (a round trip). Where MLflow's requests go through a proxy
    (``HTTP_PROXY``/``HTTPS_PROXY``, the host not in ``NO_PROXY``), or with ``http``, an HTTP request of its
    ``/health`` (:func:`~automed.tracking_probe.ask_health`): a TCP connection to a proxy or a gateway says nothing
    of the server behind it (the probe had been skipped behind a proxy, so a server down there met MLflow's minutes
    of retries), and a gateway answering 502, 503 or 504 counts as the server down."""
    from urllib.parse import urlsplit

    from automed.errors import ConfigError
    from automed.tracking_probe import ask_health, proxy_for, reach

    proxy = None
    try:
        proxy = proxy_for(uri)
        if proxy or http:
            ask_health(uri, timeout_s)
        else:
            parts = urlsplit(uri)
            reach(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80), timeout_s)
    except (OSError, ValueError) as exc:
        via = f" (through the proxy {_no_credentials(proxy)})" if proxy else ""
        raise ConfigError.single(
            where, "the registry's server answers" if where == "MLFLOW_REGISTRY_URI" else "the tracking server answers",
            f"{_no_credentials(uri)}: {getattr(exc, 'strerror', None) or exc}{via}",
            fix if not proxy else f"{fix}; behind a proxy, check that it reaches the server (or name the host in NO_PROXY)",
        ) from exc  # fmt: skip


def _no_credentials(uri: str) -> str:
    return re.sub(r"//[^@/]*@", "//", uri)


def found_down(uri: str) -> Down | None:
    """How the tracking server at ``uri`` was found down by the last probe of this process (None: not found down,
    or answering since)."""
    return _down.get(uri)


def still_answers(uri: str, recheck: bool = False, http: bool = False) -> None:
    """Before each request to a tracking server: a quick probe (:func:`_probe_server`), so that a server gone
    mid-command is a clear error in seconds; MLflow's own retries (7, with backoff: about 4 minutes per request) had
    held every epoch of a training, so a training whose server went away stalled for hours. A server found down
    fails every call at once for :data:`RECHECK_S` seconds, then is asked again; ``recheck`` (a caller's retry)
    asks it now; ``http``: by an HTTP request, as after a request that failed (a gateway that takes connections
    may answer 503), and so are the probes of a server found down that way.

    A server that answered a probe less than :data:`FRESH_S` seconds ago is not probed again (a burst of requests,
    e.g. a fold's artifacts, tags and end, had opened one connection per request): a server that goes away inside
    that window is found by the first probe after it, and a request sent in it fails after MLflow's retries, bounded
    to seconds for automed's requests (:func:`~automed.tracking_probe.bounded_requests`), whereupon the Tracker asks
    the server again for this clear error. A host found silent (connections time out, or take :data:`SILENT_S` to
    fail) is probed with :data:`SILENT_RECHECK_S`, not the whole :data:`PROBE_TIMEOUT_S`."""
    from automed.errors import ConfigError

    if uri.split(":", 1)[0].lower() not in ("http", "https"):
        return
    now = time.monotonic()
    down = _down.get(uri)
    if down is not None and not recheck and now - down.since < RECHECK_S:
        raise ConfigError.single("--tracking-uri", "the tracking server answers", down.why, GONE_FIX)
    if down is None and not recheck and now - _answered.get(uri, -math.inf) < FRESH_S:
        return
    http = http or (down is not None and down.http)
    try:
        _probe_server(
            uri,
            timeout_s=SILENT_RECHECK_S if down and down.silent else PROBE_TIMEOUT_S,
            fix=GONE_FIX,
            http=http,
        )
    except ConfigError as exc:
        _answered.pop(uri, None)
        end = time.monotonic()
        silent = isinstance(exc.__cause__, TimeoutError) or end - now >= SILENT_S
        _down[uri] = Down(end, exc.problems[0].value, silent, http)
        raise
    _down.pop(uri, None)
    _answered[uri] = time.monotonic()


def _absolute_sqlite(uri: str) -> str:
    """A relative SQLite store (``sqlite:///x.db``) made absolute: recorded in a work dir, it must name the same
    store when a resume runs from another folder."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/") and uri != prefix + ":memory:":
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


# the stores MLflow itself serves (a SQLAlchemy database may name its driver: postgresql+psycopg2)
STORE_SCHEMES = (
    "sqlite",
    "file",
    "http",
    "https",
    "postgresql",
    "mysql",
    "mssql",
    "databricks",
    "databricks-uc",
    "uc",
)


# the stores MLflow takes by a bare name, with no colon (a workspace from the environment or the CLI's profile)
BARE_STORES = ("databricks", "databricks-uc", "uc")


def check_tracking_uri(uri: str | None, *, resume: bool = False, registry: bool = True) -> None:
    """A clear error before any work for a tracking URI (``uri``, else ``MLFLOW_TRACKING_URI``) no MLflow store
    answers to: ``bogus://x``, a server that is not running, a SQLite URL without its three slashes, an in-memory
    store, a SQLite store in a read-only folder, a folder store that MLflow refuses (each had
    failed only after planning and preprocessing, most as an "unexpected error"). A path without a scheme is a folder
    store, except MLflow's bare names (:data:`BARE_STORES`: ``databricks`` is Databricks' usual setting).

    ``resume``: the command continues a work dir, which uses the store saved in it (checked as the Tracker opens it),
    not ``MLFLOW_TRACKING_URI``: a variable naming a server that is down had refused the resume of a local store.
    ``registry``: ``MLFLOW_REGISTRY_URI`` too, where set (a command that registers)."""
    where = "--tracking-uri"
    if not uri and not resume:
        uri, where = os.environ.get("MLFLOW_TRACKING_URI"), "MLFLOW_TRACKING_URI"
    # a registry of its own (MLFLOW_REGISTRY_URI, read on a resume too) is checked alike: a registry server that
    # was down had failed the command only at registration, after the whole training
    if registry and (registry_store := os.environ.get("MLFLOW_REGISTRY_URI")):
        _check_store(registry_store, "MLFLOW_REGISTRY_URI")
    if uri:  # else the default store, or the one a resumed work dir names: checked as the Tracker opens it
        _check_store(uri, where)


def _check_store(uri: str, where: str) -> None:
    from automed.errors import ConfigError
    from automed.privacy import strip_credentials
    from automed.registry import did_you_mean

    if uri in BARE_STORES:  # (as MLflow compares them: exactly)
        return  # MLflow reads the workspace and its credentials from the environment or the CLI's profile
    scheme = uri.split(":", 1)[0].lower().split("+", 1)[0] if ":" in uri.split("/")[0] else "file"
    if scheme in ("http", "https"):
        _probe_server(uri, where=where, fix=REGISTRY_FIX if where == "MLFLOW_REGISTRY_URI" else SERVER_FIX)
    elif scheme == "sqlite":
        _check_sqlite(uri, where)
    elif scheme == "file" or len(scheme) == 1:  # (one letter: a Windows drive)
        _check_folder_store(uri, where)
    known = (*STORE_SCHEMES, *_plugin_schemes())
    if len(scheme) > 1 and scheme not in known:
        raise ConfigError.single(
            where, f"a tracking URI names an MLflow store ({', '.join(STORE_SCHEMES)})",
            strip_credentials(uri), f"write e.g. sqlite:///FILE.db or http://HOST:5000.{did_you_mean(scheme, STORE_SCHEMES)}",
        )  # fmt: skip


def _check_sqlite(uri: str, where: str) -> None:
    from automed.errors import ConfigError

    path = uri.split(":", 1)[1].split("?", 1)[0]
    if not path.startswith("///") or path in ("///", "///:memory:"):
        rest = path.lstrip("/")
        if not rest or rest == ":memory:":
            raise ConfigError.single(
                where, "the store outlives the command (an in-memory SQLite store is gone when it ends)", uri,
                "name a file: sqlite:///mlflow.db",
            )  # fmt: skip
        raise ConfigError.single(
            where, "a SQLite store is sqlite:/// and a path (three slashes, four for an absolute path)", uri,
            f"write sqlite:///{rest} (from the current folder) or sqlite:////{rest} (absolute)",
        )  # fmt: skip
    check_writable(uri, where)


def check_writable(uri: str, where: str = "--tracking-uri") -> None:
    """A SQLite store (``uri``) that cannot be written is a clear error (SQLAlchemy's "unable to open database
    file" came as an "unexpected error" after MLflow's retries, or "attempt to write a readonly database")."""
    from automed.errors import ConfigError

    if not uri.startswith("sqlite:///") or ":memory:" in uri:
        return
    db = Path(uri[len("sqlite:///") :].split("?", 1)[0]).resolve()
    # (the store makes the folders that are missing)
    folder = next(p for p in (db.parent, *db.parent.parents) if p.exists())
    if not os.access(folder, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
        raise ConfigError.single(
            where, "a SQLite store and its folder can be written (SQLite writes its journal beside the database)",
            db if db.exists() else f"{folder} (read-only)",
            "set MLFLOW_REGISTRY_URI=sqlite:////WRITABLE/FOLDER/registry.db, or unset it"
            if where == "MLFLOW_REGISTRY_URI"
            else f"run from a folder you can write, or pass --tracking-uri sqlite:////WRITABLE/FOLDER/{DB_NAME}",
        )  # fmt: skip


def _check_folder_store(uri: str, where: str) -> None:
    import mlflow.environment_variables as mlflow_env

    from automed.errors import ConfigError

    if not hasattr(mlflow_env, "MLFLOW_ALLOW_FILE_STORE"):  # an MLflow that still takes folder stores
        return
    if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() not in ("true", "1"):
        raise ConfigError.single(
            where, "this MLflow takes a folder store (a path, file:) only with MLFLOW_ALLOW_FILE_STORE=true", uri,
            "use a SQLite store, e.g. sqlite:///mlflow.db (`mlflow migrate-filestore` moves an existing folder "
            "store into one), or set MLFLOW_ALLOW_FILE_STORE=true",
        )  # fmt: skip
