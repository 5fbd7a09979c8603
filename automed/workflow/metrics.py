"""``automed metrics``: score predictions against references - a CSV (``SubjectID,Target,Prediction`` with paths or
values, optional ``Mask`` for synthesized images, optional ``probability_<class>`` columns as ``automed predict``
writes them), the ``predictions.csv`` of ``automed predict`` matched by ``SubjectID`` to a reference CSV
(``--reference``: the dataset CSV with ``ValueToPredict``, or ``Target``), or a folder of predictions
matched by case name to ``--reference``'s files (nnU-Net's evaluate-folder habit).

Writes ``OUT/metrics.csv`` (one row per case, and label or region for label maps) and ``OUT/summary.json``; every
missing prediction is listed in one error before any scoring, unless ``missing_value`` scores it (a number, or
``empty``: a missing label map scored as an empty one, BraTS' habit: Dice 0, the worst-case distances).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import pandas as pd

from automed.artifacts import atomic_directory, claim_output, mark_output, write_json_atomic
from automed.data.class_folders import image_stem, load_class_folders, looks_like_class_folders
from automed.data.csv_layout import read_rows
from automed.data.io import has_image_suffix
from automed.errors import ConfigError, DatasetError, Problem
from automed.evaluate.cells import PROBABILITY, probability_cells
from automed.evaluate.compare import KINDS, Kind, Pair, detect_kind
from automed.evaluate.problems import PROBLEMS, ScoreOptions
from automed.registry import check_choice
from automed.runtime.entry import as_class

CSV_COLUMNS = ("SubjectID", "Target", "Prediction")
REFERENCE_COLUMNS = ("ValueToPredict", "Target", "target")  # a reference CSV's target column, first found
PREDICT_COLUMN = "prediction"  # automed predict's predictions.csv
MASK = "Mask"  # synthesis: score inside this mask

log = logging.getLogger("automed")


@dataclass
class MetricsResult:
    folder: Path
    kind: Kind
    summary: dict[str, Any]


def _from_csv(path: Path) -> list[Pair]:
    """The CSV's rows as pairs; every row problem (a short row, an empty or non-finite target, a probability that is
    not a number, a SubjectID given twice) reported at once with its ``file:row``."""
    rows = read_rows(path)
    if not rows:
        raise DatasetError.single(path, "a metrics CSV has a header row", "an empty file", "write the header")
    columns = [c.strip() for c in rows[0]]
    unknown = [c for c in columns if c not in (*CSV_COLUMNS, MASK) and not c.startswith(PROBABILITY)]
    missing = [c for c in CSV_COLUMNS if c not in columns]
    if unknown or missing:
        raise DatasetError.single(
            path,
            f"a metrics CSV has the columns {', '.join(CSV_COLUMNS)} (and optional {MASK}, {PROBABILITY}<class>)",
            f"missing {missing}, unknown {unknown}",
            f"{path.name} is what automed metrics wrote (case, target): score the predictions it was made from"
            if {"case", "target"} <= set(columns)
            else f"score automed predict's {path.name} with --reference DIR, the class folders (DIR/<class>/<images>) "
            "its images were predicted from"
            if PREDICT_COLUMN in columns and "truth" in columns
            else f"score automed predict's {path.name} with --reference DATASET.csv (SubjectID, ValueToPredict)"
            if PREDICT_COLUMN in columns
            else "rename the columns",
        )
    base = path.parent

    def value(text: str) -> str:  # a relative image path is relative to the CSV
        p = Path(text)
        # a path has a file ending or a folder in it: a bare word is a value, even beside a folder of its name (a
        # class "normal" beside a class folder normal/ had become that folder's absolute path, or a DICOM error)
        looks = bool(p.suffix) or "/" in text or "\\" in text
        return str(base / p) if looks and not p.is_absolute() and (base / p).exists() else text

    pairs: list[Pair] = []
    problems: list[Problem] = []
    first_row: dict[str, int] = {}
    for n, cells in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in cells):
            continue  # a blank line
        where = f"{path}:{n}"
        if len(cells) != len(columns):
            problems.append(Problem(where, f"every row has the header's {len(columns)} cells",
                                    f"{len(cells)} cells", "fill in or remove the row's cells"))  # fmt: skip
            continue
        r = {c: cell.strip() for c, cell in zip(columns, cells, strict=True)}
        target, cid = r["Target"], r["SubjectID"]
        if not target or target.lower() in ("nan", "inf", "-inf", "+inf"):
            problems.append(Problem(where, "every row has a Target (a path, a class or a finite number)",
                                    repr(target), "fill in the reference, or drop the row"))  # fmt: skip
        if cid in first_row:
            problems.append(Problem(where, "every SubjectID is scored once", f"{cid!r}, also in row {first_row[cid]}",
                                    "remove the repeated row"))  # fmt: skip
        first_row.setdefault(cid, n)
        probs = probability_cells(r, where, problems)
        pred, mask = r["Prediction"], r.get(MASK, "")
        pairs.append(
            Pair(
                cid, value(target), value(pred) if pred else None, probs, value(mask) if mask else None, where
            )
        )
    if problems:
        raise DatasetError(problems, f"cannot score {path}")
    return pairs


def _table(path: Path, needed: tuple[str, ...], what: str) -> tuple[str, list[dict[str, str]]]:
    """A CSV's value column (the first of ``needed`` its header holds) and its rows as dicts."""
    rows = read_rows(path)
    columns = [c.strip() for c in rows[0]] if rows else []
    found = [c for c in needed if c in columns]
    if "SubjectID" not in columns or not found:
        raise DatasetError.single(
            path,
            f"{what} has a SubjectID column and one of {', '.join(needed)}",
            f"the columns {columns}" if columns else "an empty file",
            "pass automed predict's predictions.csv and, as --reference, the CSV of the cases (e.g. the dataset "
            "CSV the images came from, with ValueToPredict)",
        )
    table = [
        {c: cell.strip() for c, cell in zip(columns, cells, strict=False)}
        for cells in rows[1:]
        if any(c.strip() for c in cells)
    ]
    return found[0], table


def _reference_table(reference: Path) -> tuple[str, list[dict[str, str]]]:
    """A reference CSV's target column and rows; or, for a folder-per-class test set (``DIR/<class>/<images>``),
    each image's case ID as training and ``automed predict`` give it (``<class>_<file stem>``) with its folder's class.
    """
    if reference.is_dir() and looks_like_class_folders(reference, least=1):
        ds = load_class_folders(reference, least=1)
        names = ds.labels or {}
        return "ValueToPredict", [
            {"SubjectID": c.case_id, "ValueToPredict": names[int(c.value or 0)]} for c in ds.cases
        ]
    return _table(reference, REFERENCE_COLUMNS, "a reference CSV")


def _from_tables(predictions: Path, reference: Path) -> list[Pair]:
    """``automed predict``'s ``predictions.csv`` (``SubjectID``, ``prediction``, ``probability_<class>``) matched by
    ``SubjectID`` to a reference CSV's target (``ValueToPredict``, as the dataset CSV holds it, or ``Target``), or
    to a folder-per-class test set's classes;
    every reference case is scored (missing predictions as for folders), predictions of other cases are ignored with
    a warning, a SubjectID twice in either file is an error."""
    pred_col, pred_rows = _table(predictions, (PREDICT_COLUMN, "Prediction"), "a predictions CSV")
    ref_col, ref_rows = _reference_table(reference)
    problems: list[Problem] = []
    by_id: dict[str, dict[str, str]] = {}
    for source, rows in ((predictions, pred_rows), (reference, ref_rows)):
        seen: set[str] = set()
        for r in rows:
            cid = r.get("SubjectID", "")
            if cid in seen:
                problems.append(Problem(str(source), "every SubjectID appears once", repr(cid),
                                        "remove the repeated row"))  # fmt: skip
            seen.add(cid)
            if source == predictions:
                by_id[cid] = r
    pairs: list[Pair] = []
    for n, r in enumerate(ref_rows, start=2):
        cid, target = r.get("SubjectID", ""), r.get(ref_col, "")
        where = f"{reference}:{n}"
        if not target or target.lower() in ("nan", "inf", "-inf", "+inf"):
            problems.append(Problem(where, f"every reference row has its {ref_col}", repr(target),
                                    "fill in the reference, or drop the row"))  # fmt: skip
        pred = by_id.get(cid)
        probs = probability_cells(pred, f"{predictions} ({cid})", problems) if pred else {}
        value = pred.get(pred_col) if pred else None
        # a class written 1.0 by a spreadsheet or pandas is class 1 (as the probability_1 column names it)
        probs = {as_class(k): v for k, v in probs.items()}
        pairs.append(Pair(cid, as_class(target), as_class(value) if value else None, probs, None, where))
    if problems:
        raise DatasetError(problems, f"cannot score {predictions} against {reference}")
    _refuse_no_common_case(
        predictions, [p.case for p in pairs], list(by_id),
        f"predict the reference itself (`automed predict MODEL -i {reference.name}`: the predictions take its "
        "SubjectIDs), or write each image's name without its suffix as its SubjectID",
    )  # fmt: skip
    extra = sorted(set(by_id) - {p.case for p in pairs})
    if extra:
        log.warning(
            "%d prediction(s) of cases %s does not list are not scored (e.g. %s)",
            len(extra),
            reference.name,
            extra[0],
        )
    return pairs


def _some(ids: list[str]) -> str:
    return ", ".join(sorted(ids)[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")


def _refuse_no_common_case(predictions: Path, refs: list[str], preds: list[str], fix: str) -> None:
    """Predictions that match no reference at all are a naming mismatch, not missing predictions: listed as
    "predict it, or pass --missing-value", whose value would then have scored every case as missing."""
    if not refs or not preds or set(refs) & set(preds):
        return
    raise DatasetError.single(
        predictions, "predictions and references are matched by case ID; these share no case ID",
        f"references {_some(refs)}; predictions {_some(preds)}", fix,
    )  # fmt: skip


def _from_folders(predictions: Path, reference: Path) -> list[Pair]:
    """Image files matched by case name (``a.nii.gz`` to ``a.nii.gz``; other files, e.g. the ``.npz`` probabilities
    of ``automed predict --save-probabilities``, are not predictions); two images of one case in a folder are an
    error, not a silent choice."""
    problems: list[Problem] = []

    def images(folder: Path) -> dict[str, Path]:
        if not folder.is_dir():
            raise DatasetError.single(
                folder,
                "the reference folder must exist (predictions in a folder are matched to references in a folder)",
                "a file" if folder.exists() else "missing",
                "pass an existing folder (a CSV of Target and Prediction columns goes alone, without --reference)",
            )
        found: dict[str, Path] = {}
        for p in sorted(folder.iterdir()):
            if not (p.is_file() and has_image_suffix(p)) or p.name.startswith("."):
                continue
            stem = image_stem(p)
            if stem in found:
                problems.append(Problem(str(p), "one image per case in a folder", f"{found[stem].name} and {p.name}",
                                        "remove or move one of them"))  # fmt: skip
            found.setdefault(stem, p)
        return found

    refs, preds = images(reference), images(predictions)
    if problems:
        raise DatasetError(problems, "cannot match predictions to references")
    _refuse_no_common_case(predictions, list(refs), list(preds),
                           "name each prediction as its reference (CASE.nii.gz for the reference CASE.nii.gz)")  # fmt: skip
    # said, as a CSV's predictions of unlisted cases are (a misnamed case3_0000.nii.gz had been ignored silently)
    if extra := sorted(set(preds) - set(refs)):
        log.warning("%d prediction(s) match no reference in %s and are not scored: %s", len(extra), reference.name,
                    _some([preds[c].name for c in extra]))  # fmt: skip
    return [Pair(cid, str(ref), str(preds[cid]) if cid in preds else None) for cid, ref in refs.items()]


def _labels(dataset_json: Path | None) -> dict[int, str] | None:
    """Label names from a ``dataset.json`` (MSD ``{"1": "name"}`` or nnU-Net v2 ``{"name": 1}``)."""
    if dataset_json is None:
        return None
    try:
        raw = json.loads(dataset_json.read_text())["labels"]
        if not isinstance(raw, dict):
            raise TypeError(type(raw).__name__)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError.single(
            dataset_json, "--labels is a dataset.json with a 'labels' mapping", f"{type(exc).__name__}: {exc}",
            'pass the dataset.json of the training data (e.g. {"labels": {"0": "background", "1": "liver"}})',
        ) from exc  # fmt: skip
    out: dict[int, str] = {}
    for k, v in raw.items():
        if isinstance(v, int) or (isinstance(v, str) and v.isdigit() and not k.isdigit()):
            out[int(v)] = k
        elif str(k).isdigit():
            out[int(k)] = str(v)
        else:  # nnU-Net v2 regions ({"whole tumor": [1, 2, 3]}) or float values: not one label value per name
            raise ConfigError.single(
                dataset_json, "--labels names one integer label value per name", f"{k!r}: {v!r}",
                "score regions with --region NAME=1,2,3 and keep plain labels in --labels",
            )  # fmt: skip
    return {v: n for v, n in out.items() if v != 0}


def parse_regions(specs: list[str]) -> dict[str, list[int]]:
    """``NAME=1,2,4`` -> ``{"NAME": [1, 2, 4]}`` (a region is the union of its labels)."""
    out: dict[str, list[int]] = {}
    for spec in specs:
        if spec.partition("=")[0].strip() in out:
            raise ConfigError.single(
                "--region", "each region is named once", spec, "merge the two --region flags"
            )
        name, _, values = spec.partition("=")
        try:
            labels = [int(v) for v in values.split(",") if v.strip()]
        except ValueError:
            labels = []
        if not name.strip() or not labels or min(labels) < 1:  # background (0) is no structure to score
            raise ConfigError.single(
                "--region", "a region is NAME=LABEL[,LABEL...] of foreground labels (1 and up)", spec,
                "write e.g. --region whole_tumor=1,2,4",
            )  # fmt: skip
        out[name.strip()] = labels
    return out


def _missing_rule(missing_value: float | str | None) -> tuple[float | None, bool]:
    """``--missing-value``: a number (every metric of a missing label map or image, or a missing class or value's
    prediction), or ``empty`` (a missing label map scored as an empty one); as (value, empty)."""
    if missing_value is None or isinstance(missing_value, float | int):
        return (None if missing_value is None else float(missing_value)), False
    if missing_value.strip().lower() == "empty":
        return None, True
    try:
        return float(missing_value), False
    except ValueError:
        raise ConfigError.single("--missing-value", "a number, or empty (a missing label map scored as empty)",
                                 repr(missing_value), "pass e.g. --missing-value empty or --missing-value 0") from None  # fmt: skip


def _fill_missing(
    pairs: list[Pair], kind: Kind, missing_value: float | None, empty: bool, source: Path
) -> list[Pair]:
    missing = [p.case for p in pairs if p.prediction is None]
    if (
        empty and kind != "segmentation"
    ):  # refused even with nothing missing: the command means something else
        raise ConfigError.single("--missing-value", "empty scores a missing label map as an empty one",
                                 f"a {kind} problem", "pass the value a missing prediction takes, e.g. "
                                 "--missing-value 0")  # fmt: skip
    if not missing:
        return pairs
    if missing_value is None and not empty:
        raise DatasetError(
            [
                Problem(
                    str(source),
                    "every reference needs a prediction",
                    cid,
                    "predict it, or pass --missing-value (empty: scored as an empty label map)"
                    if kind == "segmentation"
                    else "predict it, or pass --missing-value",
                )
                for cid in missing
            ],
            f"{len(missing)} missing prediction(s)",
        )
    if kind == "segmentation" and not empty:
        log.warning(
            "%d missing prediction(s) scored %g for every metric, their distances too (HD95 %g mm); --missing-value "
            "empty scores them as empty label maps (Dice 0, worst-case distances)", len(missing), missing_value,
            missing_value,
        )  # fmt: skip
    if empty or PROBLEMS[kind].missing_per_metric:  # per metric, or as an empty label map (evaluate.compare)
        return pairs
    assert missing_value is not None
    text = str(int(missing_value)) if float(missing_value).is_integer() else str(missing_value)
    return [p if p.prediction is not None else replace(p, prediction=text, filled=True) for p in pairs]


def metrics(
    input_path: str | Path,
    output: str | Path,
    *,
    reference: str | Path | None = None,
    problem: str = "auto",
    labels: str | Path | None = None,
    regions: list[str] | None = None,
    tolerance: float = 1.0,
    missing_value: float | str | None = None,
    overwrite: bool = False,
    show_progress: bool = False,
) -> MetricsResult:
    """Score ``input_path`` (a CSV, or a folder of predictions with ``reference``) into ``output``; see the module
    docstring. ``problem``: ``auto`` (label maps, intensity images, classes or values, from the targets) or one of
    ``segmentation``, ``synthesis``, ``classification``, ``regression``."""
    src = Path(input_path)
    check_choice(problem, ("auto", *KINDS), what="the problem type", where="--problem")
    value, empty = _missing_rule(missing_value)
    if not src.exists():
        raise ConfigError.single(
            src, "the input must exist", "missing", "pass a CSV or a folder of predictions"
        )
    if src.is_dir():
        if reference is None:
            raise ConfigError.single(
                src,
                "a folder of predictions is scored against --reference",
                "no --reference",
                "add --reference REF_DIR",
            )
        pairs = _from_folders(src, Path(reference))
    elif src.suffix.lower() == ".csv" and reference is not None:
        ref = Path(reference)
        # a test set of one class too, as automed predict scores it (its truth column)
        class_folders = ref.is_dir() and looks_like_class_folders(ref, least=1)
        if not (ref.is_file() and ref.suffix.lower() == ".csv") and not class_folders:
            raise ConfigError.single(
                ref,
                "a predictions CSV is scored against a reference CSV (SubjectID and ValueToPredict or Target) or "
                "a folder-per-class test set (DIR/<class>/<images>)",
                "another folder" if ref.is_dir() else ("missing" if not ref.exists() else "not a .csv file"),
                "pass the CSV of the cases, or the class folders the images were predicted from, as --reference "
                "(a folder of label maps goes with a folder of predictions)",
            )
        pairs = _from_tables(src, ref)
    elif src.suffix.lower() == ".csv":
        pairs = _from_csv(src)
    else:
        raise ConfigError.single(
            src, "the input is a CSV or a folder of predictions", "neither", "pass a CSV or a folder"
        )
    if not pairs:
        raise DatasetError.single(src, "there is something to score", "no cases", "check the input")
    protected = [src] + ([Path(reference)] if reference else [])
    listed = [x for pair in pairs for x in (pair.target, pair.prediction, pair.mask) if x]
    protected += [
        Path(x) for x in listed if ("/" in x or "\\" in x) and Path(x).is_file()
    ]  # files a CSV lists
    out = claim_output(
        Path(output), "metrics", protected=protected, inputs=protected[:2], overwrite=overwrite
    )  # the predictions and references folders: never written into
    kind: Kind = detect_kind(pairs) if problem == "auto" else cast("Kind", problem)  # checked above
    if problem == "auto" and kind == "synthesis" and (regions or labels):  # named structures: label maps
        kind = "segmentation"  # (of more values than detect_kind takes for labels)
    for option, given in (("--region", regions), ("--labels", labels)):
        if given and kind != "segmentation":  # was ignored without a word
            raise ConfigError.single(option, f"{option} names structures of label maps (segmentation)",
                                     f"a {kind} problem", f"drop {option}")  # fmt: skip
    pairs = _fill_missing(pairs, kind, value, empty, src)
    options = ScoreOptions(
        _labels(Path(labels) if labels else None),
        parse_regions(regions or []),
        tolerance,
        value,
        empty,
        show_progress,
    )
    scored = PROBLEMS[kind].score(pairs, options)
    for said in scored.warnings:
        log.warning("%s", said)
    rows = scored.rows
    if not rows:  # (an empty metrics.csv saying "0 cases", which report then refused as damaged)
        raise DatasetError.single(src, f"{kind} metrics need a structure in some reference or prediction", f"none in "
                                  f"any of the {len(pairs)} case(s): every voxel 0", "check the files are label maps")  # fmt: skip
    summary = {"schema_version": 1, "problem": kind, **scored.summary}
    with atomic_directory(out) as tmp:
        pd.DataFrame(rows).to_csv(tmp / "metrics.csv", index=False, na_rep="")
        write_json_atomic(tmp / "summary.json", summary)
        mark_output(tmp, "metrics")
    return MetricsResult(out, kind, summary)


def headline(res: MetricsResult) -> str:
    """One line for the console."""
    return PROBLEMS[res.kind].headline(res.summary)
