"""``automed predict --continue`` (nnU-Net's ``--continue_prediction``): a run into a folder that an earlier run
left unfinished (Ctrl-C, a killed job, an input that failed) predicts only the cases whose outputs are not there yet.

Every predict run of label maps records in ``OUT/.automed-predict.json`` what decides a case's outputs (the model,
its ``model.json`` and ``automed select`` choice, TTA, ``--folds``, ``--step-size``, probabilities, output format);
``--continue`` refuses a folder whose record differs, so label maps of two models or settings never mix. A case
counts as finished when all its files are there (each is written under a temporary name and renamed, so a file
there is whole)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from automed.errors import ArtifactError, ConfigError
from automed.runtime.output import same_settings

RECORD = ".automed-predict.json"
log = logging.getLogger("automed")


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else None


def run_settings(
    model: str | Path,
    folder: Path | None,
    tta: bool | None,
    save_probabilities: bool,
    output_format: str,
    *,
    folds: list[int] | None = None,
    step: float | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """What decides a case's outputs: the model (``folder``: the work dir or selection folder that holds it, with
    digests of its ``model.json`` and ``inference.json``, so a retraining or a new selection is another model; a
    selection that chose a pair: the content hash of its pair bundle, since it has neither file; a registry URI with
    the ``version`` its alias named) and the settings (``--folds``, ``--step-size`` only when given: a record
    written before they existed is of the model's own)."""
    where: dict[str, Any] = {"model": str(model), **({} if version is None else {"version": version})}
    if folder is not None:
        where = {
            "model": str(folder.expanduser().resolve()),
            "model_json": _digest(folder / "model.json"),
            "inference_json": _digest(folder / "inference.json"),
        }
        pair = folder / "model_bundle"
        if (pair / "ensemble.json").is_file() and not (folder / "model.json").is_file():
            from automed.artifacts import tree_hash

            where["pair_bundle"] = tree_hash(pair)[:16]
    return {
        **where,
        "tta": tta,
        "save_probabilities": save_probabilities,
        "output_format": output_format,
        **({} if folds is None else {"folds": folds}),
        **({} if step is None else {"step": step}),
        "schema_version": 1,
    }


def registered_version(model: str, tracking_uri: str | None) -> str:
    """The version a ``models:/NAME@ALIAS`` (or ``/VERSION``) URI names now: an alias moved to another version is
    another model."""
    from automed.tracking import bounded_client, model_version, resolve_uri, split_model_uri

    client = bounded_client(resolve_uri(tracking_uri))  # a server gone: the clear error in seconds
    return str(model_version(client, *split_model_uri(model)).version)


def refuse_unless_continuable(overwrite: bool, review: bool) -> None:
    """``--continue`` keeps earlier predictions: not with ``--overwrite`` (which replaces them) nor ``--review``
    (its index lists the cases of one run)."""
    clash = "--overwrite" if overwrite else "--review" if review else None
    if clash is not None:
        raise ConfigError.single(
            "--continue",
            f"--continue keeps the predictions an earlier run finished; {clash} "
            + ("replaces them" if overwrite else "writes the pages of the cases one run predicts"),
            f"--continue with {clash}",
            f"drop {clash}, or drop --continue to predict every case again",
        )


def input_stamps(cases: list[Any]) -> dict[str, str]:
    """Per case, a digest of its input files as they are now, recorded beside the settings (the bundle's rule)."""
    from automed.runtime.output import input_stamps as stamps

    return stamps([(c.case_id, list(c.images)) for c in cases])


def check_record(out: Path, now: dict[str, Any], earlier: bool, finished: list[str] | None = None) -> None:
    """An earlier run's predictions in ``out`` are continued only with the same model and settings, and its
    ``finished`` cases only from the same inputs (they had been kept whatever image now bore the case's name)."""
    if not earlier:
        return
    path = out / RECORD
    before = _earlier_record(path) if path.is_file() else None
    if before is not None and same_settings(before, now):
        from automed.runtime.output import changed_inputs

        changed = changed_inputs(before, now.get("inputs") or {}, finished or [])
        if not changed:  # (a record from before inputs were recorded: their inputs are not known)
            return
        raise ArtifactError.single(
            out, "--continue keeps a finished case only when its input is the one it was predicted from",
            f"{len(changed)} case(s) whose input changed since (another file, size or modification time): "
            f"{', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}",
            "predict into a new folder, or pass --overwrite instead of --continue to predict every case again",
        )  # fmt: skip
    differ = (
        sorted(k for k in {*now, *before} if k != "inputs" and now.get(k) != before.get(k))
        if before is not None
        else "no record of the model that wrote them"
    )
    raise ArtifactError.single(
        out,
        "--continue adds to predictions of the same model and settings",
        f"earlier predictions; differing: {differ}",
        "predict into a new folder, or pass --overwrite instead of --continue to replace them",
    )


def _earlier_record(path: Path) -> dict[str, Any]:
    """The record of the run that wrote the predictions being continued; a damaged one is refused naming the file,
    the rule, the value and the fix: which model wrote them is unknown (it had crashed with a bare JSONDecodeError
    or AttributeError)."""
    from automed.artifacts import read_json
    from automed.records import fits, shown

    fix = "predict into a new folder, or pass --overwrite instead of --continue to replace them"
    before = read_json(path, what=RECORD, damaged_fix=fix)
    if not fits(dict[str, Any], before):
        raise ArtifactError.single(path, f"{RECORD} must be a JSON object", shown(before), fix)
    result: dict[str, Any] = before
    return result


def write_record(out: Path, now: dict[str, Any]) -> Path:
    from automed.artifacts import write_json_atomic

    write_json_atomic(out / RECORD, now)
    return out / RECORD


def case_files(out: Path, case: Any, save_probabilities: bool, output_format: str) -> list[Path]:
    """Every file a run writes for ``case`` into ``out``."""
    files = [out / f"{case.case_id}{case.suffix}"]
    if save_probabilities:
        files.append(out / f"{case.case_id}.npz")
    if output_format == "dicom-seg":
        files.append(out / f"{case.case_id}.seg.dcm")
    return files


def remove_partial(out: Path) -> None:
    """What a killed run left half-written under automed's temporary names (``.tmp-CASE...``, a MetaImage's
    ``.tmp-*/`` folder, ``.CASE.partial...``): never a finished case's, so it goes before the run continues."""
    import shutil

    for p in out.glob(".*"):
        if p.is_dir() and not p.is_symlink() and p.name.startswith(".tmp-"):
            shutil.rmtree(p)
        elif p.is_file() and (p.name.startswith(".tmp-") or ".partial." in p.name):
            p.unlink()


def keep_finished(out: Path, cases: list[Any], probabilities: bool, output_format: str, review: bool) -> None:
    """A failed or stopped run into a folder it made: the cases it finished stay (each file was renamed into place
    whole) for ``--continue`` to take up, its half-written files go; nothing finished (or a ``--review`` run, whose
    index covers one run): the folder goes."""
    finished = [
        c for c in cases if all(f.is_file() for f in case_files(out, c, probabilities, output_format))
    ]
    if review or not finished:
        import shutil

        shutil.rmtree(out, ignore_errors=True)
        return
    remove_partial(out)
    log.warning(
        "%d of %d case(s) finished are kept in %s: the same command with --continue predicts the rest",
        len(finished), len(cases), out,
    )  # fmt: skip
