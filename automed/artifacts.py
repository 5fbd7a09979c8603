"""Versioned JSON/YAML artifacts: canonical hashing and atomic writes (nothing half-written is ever left)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from automed.errors import ArtifactError
from automed.runtime.folders import file_suffix, folder_fix, symbolic_links
from automed.runtime.output import RECORD as BUNDLE_RECORD
from automed.runtime.output import is_export


def canonical_json(obj: Any) -> str:
    """Deterministic JSON text: sorted keys, no whitespace variance."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def content_hash(obj: Any) -> str:
    """SHA-256 (first 16 hex digits) of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:16]


def tree_hash(folder: Path) -> str:
    """SHA-256 of a folder's files: each relative path and the hash of its bytes, in sorted order (the same files
    give the same hash wherever the folder lies)."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def finite_json(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN: an undefined metric, e.g. a label absent from reference and
    prediction) replaced by ``None`` (JSON null), in dicts, lists and tuples, numpy scalars included."""
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as pretty JSON to ``path`` atomically (:func:`write_bytes_atomic`). Undefined (NaN or infinite)
    numbers are written as null (see :func:`finite_json`): JSON has no NaN, and artifacts are read by other tools."""
    text = json.dumps(finite_json(obj), indent=1, sort_keys=False, allow_nan=False) + "\n"
    write_bytes_atomic(path, text.encode())


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename (a crash leaves one or the other)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # the mode a plain write gives (0644 under the usual umask): mkstemp's 0600 had made records, plans and
        # review pages' JSON unreadable to the colleagues who see the label maps beside them (keys are written apart)
        with contextlib.suppress(OSError):  # (a mount that refuses modes: written as before)
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())  # on disk before it replaces the earlier file
        Path(tmp).replace(path)
        fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (the folder's entry list is flushed to disk)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# the command that writes each work-dir artifact a later stage reads (the fix had been "run the stage that writes it")
_WRITTEN_BY = {
    "fingerprint.json": "run `automed fingerprint DATASET -o WORKDIR` first (or `automed plan`, which writes it too)",
    "plan.json": "run `automed plan DATASET -o WORKDIR` first (`automed train` plans by itself)",
    "splits.json": "run `automed preprocess DATASET -o WORKDIR` (or `automed plan`) first",
    "preprocess.json": "run `automed preprocess DATASET -o WORKDIR` (or `automed plan`) first",
}


def read_json(path: Path, *, what: str, damaged_fix: str = "delete it and re-run the stage") -> Any:
    """Read a JSON artifact, turning a missing or broken file into an :class:`ArtifactError` (``damaged_fix``: what
    to do about one that is not JSON)."""
    if not path.is_file():
        found = "a folder" if path.is_dir() else "no such file"
        fix = _WRITTEN_BY.get(str(what), f"run the stage that writes {what}")
        raise ArtifactError.single(path, f"{what} must exist", found, fix)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError.single(
            path,
            f"{what} must be valid JSON",
            f"{exc.msg} at line {exc.lineno}",
            damaged_fix,
        ) from exc
    except UnicodeDecodeError as exc:  # not text at all (a file overwritten with binary data)
        raise ArtifactError.single(
            path, f"{what} must be valid JSON", f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at {exc.start})",
            damaged_fix,
        ) from exc  # fmt: skip


def check_schema_version(
    path: Path, data: dict[str, Any], expected: int, *, what: str, missing: int | None = None
) -> None:
    """Refuse ``data`` (read from ``path``) unless its ``schema_version`` is ``expected``. ``missing``: the version
    of an artifact without the key (written before it carried one); None: the key is required. A higher version is
    a newer automed's: the error says so (regenerating it here would drop what that version wrote)."""
    found = data.get("schema_version", missing)
    if type(found) is int and found == expected:
        return
    newer = type(found) is int and found > expected
    raise ArtifactError.single(
        path,
        f"{what} schema_version must be {expected}",
        repr(data.get("schema_version")) + (" (written by a newer automed)" if newer else ""),
        "use the automed version that wrote it (or a newer one), or re-run the stage with this automed version "
        "to regenerate it"
        if newer
        else "re-run the stage with this automed version to regenerate it",
    )


OUTPUT_MARKER = (
    ".automed-output.json"  # in every folder automed writes as a whole: its kind (export, cube, ...)
)


# the outputs a later run replaces whole (atomic_directory), or clears of what it did not write (predictions, with
# --overwrite): anything written inside one goes with it
REPLACED_WHOLE = (
    "anonymize",
    "convert",
    "cube",
    "export",
    "grid",
    "metrics",
    "patches",
    "predictions",
    "report",
)


def inside(a: Path, b: Path) -> bool:
    """Whether ``a`` is ``b`` or lies inside it."""
    return a == b or b in a.parents


def claim_output(
    out: Path,
    kind: str,
    *,
    protected: Sequence[Path] = (),
    inputs: Sequence[Path] = (),
    datasets: Sequence[Path] = (),
    overwrite: bool = False,
    earlier: bool = False,
    in_place: bool = False,
) -> Path:
    """Check, before any work, that ``out`` may receive a ``kind`` output; return it resolved.

    Never a ``protected`` folder (the model, the inputs; an input file protects its folder) or a folder holding one;
    never inside a folder of ``inputs`` (the folders read as inputs: a later run over that folder would read the
    outputs as inputs, or a folder-per-class dataset would gain a class), nor inside an automed output that a
    later run replaces whole (:data:`REPLACED_WHOLE`: an export, a cube, ...). ``datasets``, those the trainings read
    were trained on (export, package and report read their cases), count as both. An existing non-empty folder only
    when automed wrote it (:data:`OUTPUT_MARKER`): as the same kind, or as another kind with ``overwrite``. A non-empty
    folder automed did not write is never replaced, ``overwrite`` or not (it may hold anything of the user's).
    ``earlier``: the caller recognised ``out`` as an earlier ``kind`` output written before the marker existed
    (replaced like a marked one). ``in_place``: the caller writes into the existing folder (predict, explain), so
    the folder must hold no symbolic link (what is written there would land in the folder it points to); an output
    replaced whole (:func:`atomic_directory`: the earlier folder is renamed aside and removed, and removal deletes a
    link, never what it points to) may hold links (a cube's ``mlcube/workspace/data`` linked to a dataset)."""
    res = out.expanduser().resolve()
    for p in [*protected, *datasets]:
        pr = p.expanduser().resolve()
        folder = pr if pr.is_dir() else pr.parent
        if inside(folder, res):
            raise ArtifactError.single(
                out,
                f"an output ({kind}) must not be, or hold, the model or the inputs",
                f"{res} holds {pr}",
                "choose another output folder (e.g. a new folder beside it)",
            )
    read = [(src, "the input", "folders it reads") for src in inputs]
    read += [(src, "the dataset", "dataset of a training it reads") for src in datasets]
    for src, what, rule in read:
        folder = src.expanduser().resolve()
        if folder.is_dir() and inside(res, folder):
            raise ArtifactError.single(
                out,
                f"an output ({kind}) must lie outside the {rule} (a later run over it would read the output among "
                "its files; a folder-per-class dataset as another class)",
                f"{res} is inside {what} {folder}",
                f"choose an output folder outside {what} (e.g. a new folder beside it)",
            )
    for parent in res.parents:
        if (around := output_kind(parent) or unmarked_kind(parent)) in REPLACED_WHOLE:
            raise ArtifactError.single(
                out,
                f"an output ({kind}) must not lie inside another automed output: the next run of that one replaces "
                "its folder whole, and this output with it",
                f"inside {parent} (an automed {around} output)",
                f"choose a folder outside {parent} (e.g. beside it)",
            )
    if kind in REPLACED_WHOLE and res.is_dir():
        marks = (m for name in (OUTPUT_MARKER, BUNDLE_RECORD) for m in res.rglob(name))  # the bundle's too
        nested = next((m.parent for m in marks if m.parent != res), None)
        if nested is not None:  # (written inside it before automed refused that)
            raise ArtifactError.single(
                out,
                f"replacing an output ({kind}) must not remove another automed output inside it",
                f"{nested} (an automed {output_kind(nested) or unmarked_kind(nested) or 'output'})",
                f"move {nested} out of {res} first, or choose a new folder",
            )
    if res.is_file():
        raise ArtifactError.single(
            out, f"an output ({kind}) must be a folder", "an existing file", "choose a folder"
        )
    suffix = file_suffix(res)
    if suffix is not None and not res.is_dir():  # `-o preds.csv` became a folder named preds.csv
        raise ArtifactError.single(
            out, f"an output ({kind}) is a folder (automed writes its files inside it)", f"a {suffix} file name",
            folder_fix(out, suffix),
        )  # fmt: skip
    if res.is_dir() and any(res.iterdir()) and not earlier:
        found = output_kind(res) or unmarked_kind(res)
        if found is None:
            raise ArtifactError.single(
                out,
                "automed never replaces a folder it did not write (--overwrite replaces only its own outputs)",
                "a non-empty folder not written by automed",
                "choose a new or empty folder",
            )
        if found != kind and not overwrite:
            raise ArtifactError.single(
                out,
                f"automed replaces a folder it wrote as another output only with --overwrite ({kind} asked)",
                f"an automed output ({found})",
                "choose a new or empty folder, or pass --overwrite to replace it",
            )
    if in_place and res.is_dir():
        links = symbolic_links(res)
        if links:
            shown = ", ".join(f"{p.relative_to(res)} -> {p.readlink()}" for p in links[:3])
            raise ArtifactError.single(
                out,
                f"an output folder ({kind}) must not hold symbolic links: automed writes into it in place and "
                "would write through them into the folders they point to",
                shown + (f" (and {len(links) - 3} more)" if len(links) > 3 else ""),
                "remove the link(s) from the output folder, or choose a new folder",
            )
    return res


def unmarked_kind(folder: Path) -> str | None:
    """The kind of an output automed wrote before it marked them (an export, a cube), or that the exported
    bundle's ``predict.py`` wrote (predictions: its record, :data:`automed.runtime.output.RECORD`); None: not one
    of those."""
    if is_export(folder):
        return "export"
    if (folder / BUNDLE_RECORD).is_file():  # automed's own predictions, written by the model's bundle
        return "predictions"
    return "cube" if (folder / "mlcube" / "mlcube.yaml").is_file() else None


def output_kind(folder: Path) -> str | None:
    """The kind of output automed recorded in ``folder`` (:func:`mark_output`); None: not written by automed (or a
    damaged marker, which is no proof that it was)."""
    marker = folder / OUTPUT_MARKER
    try:
        found = json.loads(marker.read_text()).get("kind") if marker.is_file() else None
    except (ValueError, AttributeError, OSError):
        return None
    return found if isinstance(found, str) else None


def mark_output(folder: Path, kind: str) -> None:
    """Record in ``folder`` that automed wrote it as a ``kind`` output (see :func:`claim_output`)."""
    (folder / OUTPUT_MARKER).write_text(json.dumps({"kind": kind, "schema_version": 1}) + "\n")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _pid_of(leftover: Path) -> int | None:
    try:
        return int(leftover.name.rsplit("-", 2)[-2 if ".tmp-" in leftover.name else -1])
    except (ValueError, IndexError):
        return None


def _recover(final: Path) -> None:
    """Clean up after a replacement killed part-way: a kill between its two renames left only ``.NAME.old-PID``
    (put back); a kill while building left ``.NAME.tmp-PID-*`` (removed once that process is gone)."""
    if not final.exists():
        old = sorted(final.parent.glob(f".{final.name}.old-*"), key=lambda p: p.stat().st_mtime)
        if old:
            old[-1].rename(final)
    for leftover in [*final.parent.glob(f".{final.name}.tmp-*"), *final.parent.glob(f".{final.name}.old-*")]:
        pid = _pid_of(leftover)
        if pid is not None and pid != os.getpid() and not _alive(pid):
            shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``final``, on error it is removed.

    The earlier content of ``final`` stays in place until the new one is complete; a kill between the two renames of
    the replacement leaves the earlier folder under a hidden name, put back by the next call. ``final`` given as a
    symbolic link (``-o LINK``) is replaced where it points, as :func:`claim_output` checked it: the link itself was
    replaced, left behind as ``.NAME.old-PID`` (rmtree never removes a link), and a second replacement in the same
    process failed on it after all the work."""
    if final.is_symlink():
        final = final.resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    _recover(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
    tmp.chmod(0o777 & ~_umask())  # a folder's usual mode: mkdtemp's 0700 had locked colleagues out
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)
