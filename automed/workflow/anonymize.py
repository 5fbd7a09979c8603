"""``automed anonymize``: de-identify a folder of DICOM (and NIfTI) files into a new folder, and check one.

Every input file is read and judged before the run can succeed: a non-DICOM file, a truncated file, an object
without pixel data or pixels that may show burned-in text stop the run with one list of problems, and nothing is left
in the output (it is built in a hidden sibling folder and renamed into place only when complete). The output never
lies inside the input, the key file (the only place the pseudonym mapping is written) never inside the output nor
any folder automed wrote as an output (its next run replaces that folder whole).

Output layout, with no identifying text in any name: ``OUT/<pseudonym>/study-<h>/series-<number>-<h>/<instance>.dcm``
(``<h>``: a digest of the new UID), ``OUT/nifti/<pseudonym>.nii.gz``, and ``OUT/deidentification.json`` saying per
attribute what was done and in how many files (never a value)."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from automed.artifacts import (
    atomic_directory,
    claim_output,
    inside,
    mark_output,
    output_kind,
    write_json_atomic,
)
from automed.errors import ConfigError, DatasetError, Problem
from automed.parallel import progress_bar
from automed.tools.deid import SAFE_PRIVATE, Deidentifier, burned_in, load_safe_private
from automed.tools.deid_check import Finding, check_folder
from automed.tools.deid_keys import load_key
from automed.tools.dicom_files import (
    DEID_REPORT,
    input_files,
    is_nifti,
    linked_folders,
    read_image,
    relative,
    skipped_files,
)
from automed.tools.nifti_deid import scrub_nifti

log = logging.getLogger("automed")
REPORT = DEID_REPORT


@dataclass
class AnonymizeResult:
    folder: Path
    files: int
    patients: int
    report: Path
    warnings: list[str] = field(default_factory=list)


def _digest(uid: str) -> str:
    return hashlib.sha256(uid.encode()).hexdigest()[:8]


def _out_name(ds: Dataset, pseudonym: str) -> Path:
    series = str(ds.get("SeriesNumber", "") or "")
    number = f"{int(series):03d}-" if series.lstrip("-").isdigit() else ""
    folder = Path(pseudonym) / f"study-{_digest(str(ds.get('StudyInstanceUID', '')))}"
    folder /= f"series-{number}{_digest(str(ds.get('SeriesInstanceUID', '')))}"
    inst = str(ds.get("InstanceNumber", "") or "")
    stem = f"{int(inst):05d}" if inst.lstrip("-").isdigit() else _digest(str(ds.get("SOPInstanceUID", "")))
    return folder / f"{stem}.dcm"


def _nifti(
    path: Path, shown: str, tmp: Path, deid: Deidentifier, counts: dict[str, int], problems: list[Problem]
) -> None:
    """Scrub one NIfTI file into ``tmp/nifti/``, named from its path inside the input (two ``T1.nii.gz`` of two
    folders get two names); an unreadable one is a problem."""
    import nibabel as nib

    try:  # judged even after other problems: every broken file in one list
        nib.load(path).header  # noqa: B018
    except Exception as exc:  # nibabel raises several types for a broken file
        problems.append(Problem(shown, "a .nii/.nii.gz file must be a readable NIfTI image",
                                f"unreadable ({type(exc).__name__})", "copy it again or move it out"))  # fmt: skip
        return
    if problems:
        return  # nothing more is written
    name = shown[: -len(".nii.gz")] if shown.lower().endswith(".nii.gz") else shown[: -len(".nii")]
    (tmp / "nifti").mkdir(exist_ok=True)
    dst, k = tmp / "nifti" / f"{deid.key.file_name(name)}.nii.gz", 2
    while dst.exists():  # T1.nii beside T1.nii.gz: both kept
        dst, k = tmp / "nifti" / f"{deid.key.file_name(name)}-{k}.nii.gz", k + 1
    try:
        changed = scrub_nifti(path, dst)
    except Exception as exc:  # nibabel raises several types for a broken file
        problems.append(Problem(shown, "a .nii/.nii.gz file must be a readable NIfTI image",
                                f"unreadable ({type(exc).__name__})", "copy it again or move it out"))  # fmt: skip
        return
    for f in [*changed, "files"]:
        counts[f] = counts.get(f, 0) + 1


def _check_paths(src: Path, out: Path, key: Path | None) -> None:
    if not src.exists():
        raise ConfigError.single(
            src, "the input must exist", "missing", "pass a folder of DICOM or NIfTI files"
        )
    if src.is_dir() and inside(out, src):
        raise ConfigError.single(
            out,
            "the output must not lie inside the input (the next run would read its own output as patient data)",
            f"inside {src.name}",
            "choose an output folder outside the input folder",
        )
    if key is not None:
        k = key.expanduser().resolve()
        if inside(k, out) or (src.is_dir() and inside(k, src)):
            raise ConfigError.single(
                key,
                "the key file (secret and pseudonym mapping) must stay outside the input and the output",
                "inside " + ("the output" if inside(k, out) else "the input"),
                "keep the key file in a separate, access-controlled place",
            )
        earlier = next((f for f in k.parents if output_kind(f) is not None), None)
        if earlier is not None:  # that folder is replaced whole by its next run: the mapping would go with it
            raise ConfigError.single(
                key,
                "the key file (secret and pseudonym mapping) must stay outside automed output folders, which a "
                "later run replaces whole",
                f"inside {earlier} (automed's {output_kind(earlier)} output)",
                f"move it to a separate, access-controlled place (e.g. mv {key} keys/) and pass its new path: a new "
                "key would give the same patients other pseudonyms",
            )
        writable = k.parent.is_dir() and os.access(
            k.parent, os.W_OK
        )  # saved as a temporary file, then renamed
        if not writable:  # checked before work: the key is saved with the output
            raise ConfigError.single(key, "the key file must be writable (its folder must exist)",
                                     "not writable" if k.exists() else "its folder is missing or read-only",
                                     "pass --key in a folder you can write to")  # fmt: skip


def anonymize(
    input_path: str | Path,
    output: str | Path,
    *,
    options: list[str] | None = None,
    key: str | Path | None = None,
    allow_burned_in: bool = False,
    safe_private: str | Path | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
) -> AnonymizeResult:
    """De-identify every DICOM and NIfTI file of ``input_path`` into ``output`` (see the module docstring)."""
    src = Path(input_path).expanduser().resolve()
    key_path = Path(key) if key is not None else None
    _check_paths(src, Path(output).expanduser().resolve(), key_path)
    out = claim_output(Path(output), "anonymize", protected=[src], overwrite=overwrite)
    if (safe_private is None) != (SAFE_PRIVATE not in (options or [])):
        raise ConfigError.single(
            safe_private or "--option",
            f"--option {SAFE_PRIVATE} and --safe-private FILE go together",
            "one without the other",
            "give both (the list of private attributes your scanners' statements call safe) or neither",
        )
    safe = load_safe_private(Path(safe_private)) if safe_private is not None else None
    deid = Deidentifier(load_key(key_path), options, safe)
    files = input_files(src)
    if not files:
        raise DatasetError.single(src, "there are files to de-identify", "an empty folder", "check the path")
    problems: list[Problem] = []
    burned: list[str] = []
    nifti: dict[str, int] = {}
    with atomic_directory(out) as tmp, progress_bar(disable=not show_progress) as bar:
        task = bar.add_task("anonymize", total=len(files))
        for path in files:
            bar.advance(task)
            shown = relative(path, src)
            if is_nifti(path):
                _nifti(path, shown, tmp, deid, nifti, problems)
                continue
            ds, problem = read_image(path, shown)
            if ds is None:
                problems.append(problem)  # type: ignore[arg-type]
                continue
            reason = burned_in(ds)
            if reason is not None:
                if not allow_burned_in:
                    problems.append(
                        Problem(
                            shown,
                            "pixels that may show burned-in identifying text are not de-identified by cleaning the "
                            "header",
                            reason,
                            "clean or check the pixels first, then pass --allow-burned-in",
                        )
                    )
                    continue
                burned.append(shown)
            if problems:
                continue  # keep judging the rest; nothing more is written
            dst = tmp / _out_name(ds, deid.clean(ds))
            k, stem = 2, dst.stem
            while dst.exists():  # two files of one instance number (or the same instance twice): keep both
                dst, k = dst.with_name(f"{stem}-{k}.dcm"), k + 1
            dst.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(dst)
        if problems:
            raise DatasetError(problems, headline=f"nothing was written to {out}")
        warnings = []
        if burned:
            warnings.append(
                f"{len(burned)} file(s) may show burned-in text in their pixels (allowed by --allow-burned-in): "
                f"the header was cleaned, the pixels were not: {', '.join(burned[:10])}"
                + (f" and {len(burned) - 10} more" if len(burned) > 10 else "")
            )
        if skipped := skipped_files(src):
            warnings.append(
                f"{len(skipped)} hidden or DICOMDIR-like file(s) not copied (not images): {', '.join(skipped[:5])}"
                + (" ..." if len(skipped) > 5 else "")
            )
        if links := linked_folders(src):
            warnings.append(f"{len(links)} linked folder(s) not read (links are not followed): {', '.join(links[:5])}"
                            + (" ..." if len(links) > 5 else "") + "; copy them in, or anonymize each as an input "
                            "of its own")  # fmt: skip
        report: dict[str, Any] = {"schema_version": 1, "dicom": deid.report(), "nifti": nifti}
        report["patients"] = len(deid.patients)
        report["burned_in_allowed"] = len(burned)
        write_json_atomic(tmp / REPORT, report)
        mark_output(tmp, "anonymize")
        deid.key.save()  # before the output appears: no output whose pseudonyms a lost key cannot reproduce
    for w in warnings:
        log.warning(w)
    return AnonymizeResult(
        out, deid.files + nifti.get("files", 0), report["patients"], out / REPORT, warnings
    )


def check_anonymized(folder: str | Path, original: str | Path | None = None) -> list[Finding]:
    """What identifying content remains in ``folder`` (see :mod:`automed.tools.deid_check`)."""
    root = Path(folder).expanduser().resolve()
    if not root.exists():
        raise ConfigError.single(
            root, "the folder to check must exist", "missing", "pass the anonymized folder"
        )
    orig = Path(original).expanduser().resolve() if original is not None else None
    if orig is not None and not orig.exists():  # a mistyped --original would check against nothing
        raise ConfigError.single(
            orig, "the originals to compare with must exist", "missing", "pass the folder that was anonymized"
        )
    return check_folder(root, orig)
