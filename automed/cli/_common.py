"""Shared pieces of the ``automed`` command line: consoles, global flags, common arguments and options."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from automed.runtime import stop

if TYPE_CHECKING:
    from rich.table import Table

# paths are text, never rich markup (`out[t1].csv` had been printed as `out.csv`), and a line is never cut at 80
# columns in a log or a pipe (paths split in the middle); the few styled lines ask for markup
out = Console(markup=False, soft_wrap=True)
err = Console(stderr=True)
# set by the top-level callback (--debug, --quiet) for the command that runs next; terminated: by handle_sigterm
state = {"debug": False, "quiet": False, "terminated": False}

SIGTERM_EXIT = 128 + signal.SIGTERM  # 143: the status a shell reports for a process SIGTERM ended


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the CLI's main thread: everything that cleans up after Ctrl-C (``finally`` blocks, MLflow
    runs ended as KILLED, temporary folders removed by ``atexit``) cleans up after it too."""


def handle_sigterm() -> None:
    """Make SIGTERM (sent by SLURM, ``timeout``, ``docker stop``, ``kill``) end this command as Ctrl-C does, with
    exit status 143 instead of 130 (:data:`SIGTERM_EXIT`); without this Python dies at once, skipping every
    ``finally`` and ``atexit``.

    Only this process: a process forked from it (a DataLoader worker) dies at once as it did, and a second SIGTERM
    during the clean-up ends the command at once. Spawned pools and Ray workers do not run this (Ray's ``init``
    puts its own handler in place: ``sys.exit(15)``, which :func:`automed.cli.main` reads as SIGTERM)."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread (a caller embedding main() elsewhere)
    owner = os.getpid()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner or state["terminated"]:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        state["terminated"] = True
        stop.ask()  # for when Python drops the exception (raised inside a fork hook): loops check it
        raise Terminated

    state["terminated"] = False
    stop.clear()
    signal.signal(signal.SIGTERM, on_sigterm)


def print_table(table: Table) -> None:
    """``table`` on stdout. In a terminal at the terminal's width; elsewhere (a log file, CI, a SLURM job's output,
    where rich assumes 80 columns and cut a sweep's 13 columns to ``tr…``, ``st…``) as wide as its cells need."""
    if out.is_terminal:
        out.print(table)
        return
    needed = out.measure(table, options=out.options.update_width(10_000)).maximum
    Console(file=out.file, width=max(out.width, needed)).print(
        table
    )  # print(width=) is capped at the console's


def progress() -> bool:
    """Whether commands show progress bars (not with --quiet)."""
    return not state["quiet"]


class _WarningHandler(logging.Handler):
    """automed's warnings (``logging.getLogger("automed")``, e.g. verify's) as yellow lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        err.print(self.format(record), style="yellow", markup=False, highlight=False, soft_wrap=True)


def show_warnings() -> None:
    """Print automed's warnings on stderr (once per process)."""
    log = logging.getLogger("automed")
    if not any(isinstance(h, _WarningHandler) for h in log.handlers):
        log.addHandler(_WarningHandler(logging.WARNING))


def print_error(message: str) -> None:
    """One red line on stderr, printed verbatim (no rich markup or highlighting) and wrapped by the terminal."""
    err.print(message, style="red", markup=False, highlight=False, soft_wrap=True)


# config.MAX_BUDGET_DAYS, written out: importing config (pydantic) here cost every command 0.1 s of start-up
BUDGET_HELP = "a bare number is seconds; at most 30 days (720h)"


def checked_budget(value: str | None) -> str | None:
    """Every ``--budget`` (train, sweep, demo), checked before any work: a duration automed reads (45m, 2h, 1h30m,
    90s, seconds) of at most :data:`automed.config.MAX_BUDGET_DAYS` days. Returned as typed (the command parses it again)."""
    from automed.config import parse_duration

    parse_duration(value)
    return value


DatasetArg = Annotated[
    Path,
    typer.Argument(
        help="Dataset folder with dataset.json (MSD or nnU-Net v2), a CSV (SubjectID, Channel_0.., Label or "
        "ValueToPredict), or a folder with one sub-folder of images per class."
    ),
]
TrainDatasetArg = Annotated[
    Path | None,
    typer.Argument(
        help="Dataset (folder with dataset.json, a CSV, or a folder of one sub-folder per class)."
    ),
]
ModelArg = Annotated[
    str,
    typer.Argument(
        help="Training work dir, `automed select` folder, or models:/NAME@ALIAS (MLflow registry)."
    ),
]


def expand_user(value: Path | None) -> Path | None:
    """``~`` expanded where the shell did not (``--output=~/w``: a folder named ``~`` had been made here)."""
    return value.expanduser() if value is not None else None


WorkdirOpt = Annotated[
    Path, typer.Option("--output", "-o", help="Work directory for the artifacts.", callback=expand_user)
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        "-w",
        min=0,
        help="Worker processes, 0 for none (default: AUTOMED_WORKERS, else one per core, at most 8).",
    ),
]
DeviceOpt = Annotated[str | None, typer.Option(help="cuda, cpu or auto.")]
PresetOpt = Annotated[str | None, typer.Option(help="Planner preset (default: by device).")]
FoldsOpt = Annotated[int, typer.Option(min=2, help="Cross-validation folds.")]
SplitFoldsOpt = Annotated[int, typer.Option(min=2, help="Cross-validation folds for splits.json.")]
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        help="Replace earlier outputs: predictions of an earlier run, or a folder automed wrote as another "
        "output (a folder automed did not write is never replaced)."
    ),
]
ReplaceOutputOpt = Annotated[  # commands that write one output folder (no earlier predictions to replace)
    bool,
    typer.Option(
        help="Replace an output folder automed wrote as another output (never one it did not write)."
    ),
]
MaxVoxelsOpt = Annotated[
    int,
    typer.Option(
        min=1,
        help="Largest image (voxels, all components), checked from headers before reading; the default "
        "500,000,000 fits preprocessing on a 24 GB machine.",
    ),
]
TrainMaxVoxelsOpt = Annotated[  # None: verify's default; a resume keeps what its planning took
    int | None,
    typer.Option(
        min=1,
        help="Largest image verify lets through (voxels, all components; default 500,000,000, sized for a 24 GB "
        "machine): raise it on a machine with the memory for larger images.",
    ),
]
KeepCaseIdsOpt = Annotated[
    bool,
    typer.Option(
        "--keep-case-ids",
        help="Send case IDs as they are (MLflow, model card, export). Default: keyed pseudonyms (README 'Patient data').",
    ),
]
TrackingUriOpt = Annotated[str | None, typer.Option(help="MLflow store (default: ./mlflow.db).")]
RegistryUriOpt = Annotated[str | None, typer.Option(help="MLflow store for models:/ URIs.")]
