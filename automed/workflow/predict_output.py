"""Where a prediction run's files land: the output folder claimed (as ``automed explain``'s too), a hidden staging
folder for whole-slide runs into an existing folder (moved in once finished), and the removal of what an earlier run
left when ``--overwrite`` replaced it; the datasets of the trainings a command reads (export, package, report: their
outputs never lie inside one)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from automed.artifacts import OUTPUT_MARKER, claim_output
from automed.errors import ArtifactError
from automed.records import read_train_config
from automed.workdir import WorkDir

STAGING = ".automed-new-predictions"  # slide outputs of a run into an existing folder, until it has finished


def claim_model_output(
    output: str | Path, kind: str, input_path: str | Path, model_folders: list[Path], overwrite: bool
) -> Path:
    """The output folder of a command that reads ``input_path`` with a model and writes into the folder in place
    (predict, explain): never the input, a file a CSV lists (its images may sit in any folder), nor ``model_folders``
    (a work dir, or a selection folder and its chosen work dir), nor inside the input (:func:`claim_output`)."""
    from automed.infer.inputs import listed_files

    protected = [Path(input_path), *listed_files(input_path), *model_folders]
    return claim_output(
        Path(output), kind, protected=protected, inputs=[Path(input_path)], overwrite=overwrite, in_place=True
    )


def training_datasets(folders: Sequence[Path]) -> list[Path]:
    """The datasets the trainings among ``folders`` were trained on (``train_config.json``'s ``dataset``: a dataset
    folder, or a CSV), each once, for ``claim_output(datasets=...)``: an output inside one would be read back as part
    of it (a folder-per-class dataset refuses a folder that is no class). Folders that are no training work dir (a
    selection folder, a pair's bundle, an ``automed metrics`` output) are passed over, as is a dataset no longer where
    it was recorded (moved: nothing there to protect) and a damaged record (the command reading it names it)."""
    found: list[Path] = []
    for folder in folders:
        record = WorkDir(folder).train_config
        if not record.is_file():
            continue
        try:
            dataset = read_train_config(record).get("dataset")
        except ArtifactError:
            continue
        if isinstance(dataset, str) and dataset and Path(dataset).exists() and Path(dataset) not in found:
            found.append(Path(dataset))
    return found


def block_store(out: Path, stem: str) -> Path:
    """The hidden folder where a slide's predicted blocks wait until its pyramids are written."""
    return out / f".{stem}.blocks"


def clear_killed_run(out: Path) -> None:
    """What a killed run left in ``out`` (a folder claimed as automed's predictions): the slide staging folder and
    the slides' block stores (they had counted as earlier predictions: the folder was refused without --overwrite,
    its fix naming --continue, which slides refuse; and each can be the size of a slide's predictions)."""
    if out.is_dir():
        for leftover in (out / STAGING, *out.glob(block_store(out, "*").name)):
            shutil.rmtree(leftover, ignore_errors=True)


def into_output(out: Path, run: Callable[[Path], list[Path]]) -> list[Path]:
    """``run`` writing many files per input (whole slides) into ``out``: a folder this run made goes if it fails; in
    a folder that was there (earlier predictions replaced with ``--overwrite``, or an empty one) it writes into a
    hidden folder inside ``out`` that takes its place only once it has finished, so a failed or killed run leaves
    the folder as it was."""
    from automed.artifacts import mark_output

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    mark_output(out, "predictions")
    staging = out / STAGING
    shutil.rmtree(staging, ignore_errors=True)  # a killed run's
    dest = out if created else staging
    dest.mkdir(exist_ok=True)
    try:
        written = run(dest)
    except BaseException:
        shutil.rmtree(dest if not created else out, ignore_errors=True)
        raise
    if created:
        return written
    remove_older(out, {staging}, replaced={p.name for p in staging.iterdir()})
    for p in staging.iterdir():
        p.rename(out / p.name)
    staging.rmdir()
    return [out / p.relative_to(staging) for p in written]


def remove_older(out: Path, produced: set[Path], replaced: set[str] | None = None) -> list[str]:
    """Remove what an earlier run left in ``out`` (top level and ``review/``): every entry this run did not write.
    Returns their names (relative to ``out``), which are also said in one warning line: ``--overwrite`` removes
    files the new run did not write, and the user learns which. ``replaced``: names in ``out`` removed to make room
    for this run's files of the same names (a staged slide run's), not said."""
    removed: list[str] = []
    for p in sorted(out.iterdir()):
        if p.name == OUTPUT_MARKER or p in produced:
            continue
        if p.is_dir() and not p.is_symlink():
            if any(q.parent == p for q in produced):  # this run's review/ folder: its stale files only
                removed += _remove_older_in(p, produced, out)
                continue
            shutil.rmtree(p)
            removed.append(f"{p.name}/")
        else:
            p.unlink()
            removed.append(p.name)
    new = (
        replaced or set()
    )  # records automed keeps are not the user's, nor are the files this run writes anew
    shown = [n for n in removed if not Path(n).name.startswith(".") and n.rstrip("/") not in new]
    if shown:
        more = f" (and {len(shown) - 5} more)" if len(shown) > 5 else ""
        logging.getLogger("automed").warning(
            "--overwrite: removed %d earlier prediction file(s) or folder(s) this run did not write from %s: %s%s",
            len(shown),
            out,
            ", ".join(shown[:5]),
            more,
        )
    return removed


def _remove_older_in(folder: Path, produced: set[Path], out: Path) -> list[str]:
    removed: list[str] = []
    for q in sorted(folder.iterdir()):
        if q in produced:
            continue
        tree = q.is_dir() and not q.is_symlink()
        removed.append(str(q.relative_to(out)) + ("/" if tree else ""))
        if tree:
            shutil.rmtree(q)
        else:
            q.unlink()
    return removed
