"""DICOM tool verbs: anonymize (PS3.15 Basic Profile de-identification, and its check) and convert (every series to
NIfTI)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from automed.cli._common import ReplaceOutputOpt, expand_user, out, print_error, progress

app = typer.Typer()


@app.command()
def anonymize(
    input_path: Annotated[
        Path,
        typer.Argument(
            help="A folder of DICOM files (any depth, NIfTI files too) or one file; with --check, the folder to check."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            callback=expand_user,
            help="New folder for the de-identified files (outside the input).",
        ),
    ] = None,
    profile: Annotated[
        str, typer.Option(help="The confidentiality profile: basic (PS3.15 Annex E).")
    ] = "basic",
    option: Annotated[
        list[str] | None,
        typer.Option(
            help="A profile option (repeatable): retain-longitudinal-modified-dates (dates shifted by one offset per "
            "patient instead of removed), retain-patient-characteristics (sex, age, size, weight, ...), "
            "retain-safe-private (with --safe-private)."
        ),
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(
            help="Key file (created if missing): the secret that makes UIDs, pseudonyms and date shifts reproducible, "
            "and the only place the pseudonym -> patient ID mapping is written. Keep it outside input and output."
        ),
    ] = None,
    allow_burned_in: Annotated[
        bool,
        typer.Option(
            help="De-identify headers even where pixels may show burned-in text (BurnedInAnnotation YES, or absent "
            "for US, SC, XC, ES, OT, GM), with a warning."
        ),
    ] = False,
    safe_private: Annotated[
        Path | None,
        typer.Option(
            help='With --option retain-safe-private: YAML/JSON {creator: ["GGGG,EE", ...]}, e.g. {"SIEMENS MR '
            'HEADER": ["0019,08"]}, the private attributes your scanners\' conformance statements call safe.'
        ),
    ] = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Check INPUT_PATH for identifying content instead; exit code 1 if any."),
    ] = False,
    original: Annotated[
        Path | None,
        typer.Option(help="With --check: the originals, whose identifying values are searched for."),
    ] = None,
    overwrite: ReplaceOutputOpt = False,
) -> None:
    """De-identify DICOM files (PS3.15 Basic Application Level Confidentiality Profile; dicom-anonymizer's action
    table applied at every depth, keyed UIDs, patient pseudonyms, private attributes removed) and scrub NIfTI header
    text; or, with --check, list what identifying content remains.

    Example: automed anonymize scans/ -o scans_anon --key ~/secure/study.key
    Example: automed anonymize scans_anon --check --original scans/
    """
    from automed import api
    from automed.registry import check_choice

    if check and (output is not None or option or key is not None or safe_private is not None):
        print_error("error: --check writes nothing: leave out --output, --option, --key and --safe-private")
        raise typer.Exit(2)
    if not check and original is not None:
        print_error("error: --original goes with --check (the originals to search the checked folder for)")
        raise typer.Exit(2)
    if check:
        findings = api.check_anonymized(input_path, original)
        for f in findings[:200]:
            out.print(str(f), markup=False, highlight=False)
        if findings:
            print_error(
                f"{len(findings)} finding(s) in {input_path}"
                + (" (first 200 shown)" if len(findings) > 200 else "")
            )
            raise typer.Exit(1)
        out.print(f"nothing identifying found in {input_path}")
        return
    check_choice(profile, ("basic",), what="the profile", where="--profile")
    if output is None:
        print_error("error: --output/-o is required (or pass --check)")
        raise typer.Exit(2)
    res = api.anonymize(
        input_path,
        output,
        options=option or [],
        key=key,
        allow_burned_in=allow_burned_in,
        safe_private=safe_private,
        overwrite=overwrite,
        show_progress=progress(),
    )
    out.print(f"{res.files} file(s) of {res.patients} patient(s) de-identified into {res.folder}")
    out.print(f"report (actions per attribute, no values): {res.report}")


@app.command()
def convert(
    input_path: Annotated[Path, typer.Argument(help="A folder of DICOM files (any depth, several series).")],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", callback=expand_user, help="New folder for the NIfTI files and series.json."
        ),
    ],
    overwrite: ReplaceOutputOpt = False,
) -> None:
    """Convert every DICOM series of a folder (multi-frame files included) to NIfTI with the scanner's geometry, named
    by a key without patient text, and index them in series.json (modality, description, size, spacing).

    Example: automed convert study_dicom/ -o study_nifti
    """
    from automed import api

    res = api.convert(input_path, output, overwrite=overwrite, show_progress=progress())
    for s in res.series:
        out.print(
            f"{s['key']}: {s['modality']} {s['description']!r} {'x'.join(map(str, s['size']))}", markup=False
        )
    out.print(f"{len(res.series)} series written to {res.folder}")
