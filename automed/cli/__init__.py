"""``automed`` command line: a thin typer layer over :mod:`automed.api`. Heavy imports happen inside commands.

Each module holds one group of verbs in its own typer app; they are merged here without a name, so every verb
stays top level (``automed train ...``, not ``automed training train ...``).
"""

from __future__ import annotations

import errno
import signal
import sys
from typing import Annotated, NoReturn

import typer

from automed.cli import data, deploy, dicom, search, tools, train, wsi
from automed.cli._common import SIGTERM_EXIT, err, handle_sigterm, print_error, show_warnings, state

__all__ = ["app", "main"]

app = typer.Typer(
    name="automed",
    help="AutoML for medical imaging: segmentation, classification and regression from one dataset to a registered, "
    "exported model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for _group in (data.app, train.app, search.app, deploy.app, tools.app, dicom.app, wsi.app):
    app.add_typer(_group)


def _print_version(given: bool) -> None:
    """``automed --version``: the version alone, then exit (``automed info`` gives the libraries and devices)."""
    if given:
        from automed._version import __version__

        typer.echo(f"automed {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print automed's version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    state["debug"] = debug
    state["quiet"] = quiet
    show_warnings()


def _debug_first(args: list[str]) -> list[str]:
    """Move --debug and --quiet/-q (automed's own flags) to the front so that `automed VERB ... --debug -q` works as
    `automed --debug -q VERB ...`.

    Arguments after a literal `--` are left alone.
    """
    end = args.index("--") if "--" in args else len(args)
    flags = [f for f in ("--debug", "--quiet", "-q") if f in args[:end]]
    head = [a for a in args[:end] if a not in flags]
    return args if len(head) == end else [*flags, *head, *args[end:]]


def _folds_as_nnunet_writes_them(args: list[str]) -> list[str]:
    """``automed predict ... --folds 0 1 2`` (nnU-Net's ``-f 0 1 2``) read as ``--folds 0,1,2``: an option takes one
    value, so the other numbers were "unexpected extra arguments"."""
    if "predict" not in args:
        return args
    end = args.index("--") if "--" in args else len(args)
    out, i = list(args[: args.index("predict") + 1]), args.index("predict") + 1
    while i < end:
        out.append(args[i])
        if args[i] == "--folds":
            taken = []
            while i + 1 < end and args[i + 1].isdigit():
                taken.append(args[i + 1])
                i += 1
            if taken:
                out.append(",".join(taken))
        i += 1
    return out + args[end:]


def _name_the_value(exc: Exception) -> None:
    """typer checks an option's type, ``min`` and ``max`` with pydantic, whose message leaves out what was typed
    ("Invalid value for '--workers' / '-w': Input should be greater than or equal to 0"): add it."""
    errors = getattr(exc.__cause__, "errors", None)
    message = getattr(exc, "message", None)
    if not callable(errors) or not isinstance(message, str):
        return
    typed = [e["input"] for e in errors() if isinstance(e, dict) and "input" in e]
    if typed and typed[0] is not None:
        exc.message = f"{message}; found {typed[0]!r}"  # type: ignore[attr-defined]


_OS_FIX = {
    errno.ENOSPC: "free space there or choose another --output",
    errno.EDQUOT: "free space there or choose another --output",
    errno.EACCES: "choose a folder you may write (or read) there, or ask for its permissions",
    errno.EPERM: "choose a folder you may write (or read) there, or ask for its permissions",
    errno.EROFS: "choose an output folder on a writable disk",
    errno.ENOTDIR: "a part of the path is a file, not a folder: correct the path",
}


def _os_refusal(exc: Exception) -> str | None:
    """An error of the operating system about a path (a part of -o that is a file, no permission, a read-only or
    full disk) in automed's form: the path, what the system said and a fix (it was an 'unexpected error')."""
    if not isinstance(exc, OSError) or exc.filename is None or exc.errno is None:
        return None
    fix = _OS_FIX.get(exc.errno, "check the path, that its folders exist and that you may write there")
    return f"error: {exc.filename}: the system refused it; found {exc.strerror or exc}. Fix: {fix}"


def _interrupted() -> NoReturn:
    """Ctrl-C (exit 130) or SIGTERM (exit 143), after everything below cleaned up as for Ctrl-C."""
    if state["terminated"]:
        err.print("terminated (SIGTERM)")
        sys.exit(SIGTERM_EXIT)
    err.print("interrupted")
    sys.exit(130)


def main() -> None:
    """Console entry point: errors print one clear message (traceback only with --debug) and exit 1; Ctrl-C and
    SIGTERM stop cleanly, everything cleaned up (exit 130 and 143)."""
    handle_sigterm()
    try:
        _run()
    except SystemExit as exc:
        # Ray's driver handler (ray.init replaces automed's) exits with 15; a SIGTERM that reached the DataLoader
        # workers too may end the clean-up in their error: either way the command was terminated
        if exc.code != SIGTERM_EXIT and (state["terminated"] or exc.code == signal.SIGTERM):
            state["terminated"] = True
            _interrupted()
        raise


def _run() -> None:
    from automed.errors import AutomedError

    try:
        rc = app(args=_folds_as_nnunet_writes_them(_debug_first(sys.argv[1:])), standalone_mode=False)
    except AutomedError as exc:
        if state["debug"]:
            raise
        if state["terminated"]:
            _interrupted()
        print_error(f"error: {exc}")
        sys.exit(1)
    except KeyboardInterrupt:
        _interrupted()
    except typer.Abort as exc:  # click turns an EOFError anywhere below into a silent Abort
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, KeyboardInterrupt):
            _interrupted()
        if cause is not None:
            if state["debug"]:
                raise cause from None
            print_error(
                f"unexpected error: {type(cause).__name__}: {cause or 'end of file'} "
                "(re-run with --debug for the traceback)"
            )
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(getattr(exc, "exit_code", 1))
    except Exception as exc:  # usage errors and anything unexpected
        if state["terminated"] and not state["debug"]:
            # SIGTERM reached the DataLoader workers too (`timeout`, SLURM and `docker stop` signal the whole
            # group): their death surfaces here as a RuntimeError, which is not an error of the command
            _interrupted()
        # click's usage errors (typer >= 0.29: those of its own copy of click) show themselves
        show, code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            _name_the_value(exc)
            show()
            sys.exit(code)
        if state["debug"]:
            raise
        print_error(_os_refusal(exc) or f"unexpected error: {type(exc).__name__}: {exc} (re-run with --debug for "
                    "the traceback)")  # fmt: skip
        sys.exit(1)
    if isinstance(rc, int) and rc:  # typer >= 0.29 returns Exit codes (Ctrl-C: 130) instead of raising
        if rc == 130:
            _interrupted()
        sys.exit(rc)
