"""Dataset-level rules of ``automed verify``: what the description (``dataset.json``, CSV or class folders) says,
before any file is opened: cases, labels and targets that agree, case IDs that are safe file names, label values
automed can store, finite targets and classes large enough for cross-validation; and, once every label map is
read, which labels occur (:func:`label_presence`).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict

import numpy as np

from automed.data.schema import Dataset
from automed.data.verify_rules import LABEL_MAX
from automed.errors import Problem

SAFE_ID = re.compile(r"[A-Za-z0-9._-]+")
DEFAULT_FOLDS = 5  # what `automed train` and `automed plan` split into unless told otherwise
MIN_CLASS_CASES = 2  # one case to train on, one to validate


NUMBER_WITH_UNIT = re.compile(r"\s*([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*[^\d\s.,;:]\S*\s*")


def decimal_comma_hint(names: list[str]) -> str:
    """When every class name of a CSV is a number written with a decimal comma (``1,5``: a German or French
    spreadsheet's export), the fix says so: those are text, so classes, never the numbers of a regression."""
    if not names or not all(DECIMAL_COMMA.fullmatch(n.strip()) for n in names):
        return ""
    return (f"; or, if ValueToPredict holds numbers written with a decimal comma ({names[0]!r}), write them with a "
            f"decimal point ({names[0].strip().replace(',', '.')}) for a regression")  # fmt: skip


DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+")


def _unit_hint(names: list[str], name: str) -> str:
    """When every class name of a CSV is a number followed by a unit (``250.5 ml``): those are text, so classes, and
    a regression of N cases reads as N classes; the fix names the plain number to write for class ``name``."""
    if comma := decimal_comma_hint(names):
        return comma
    number = NUMBER_WITH_UNIT.fullmatch(name)
    if number is None or not all(NUMBER_WITH_UNIT.fullmatch(n) for n in names):
        return ""
    return (
        f"; or, if ValueToPredict holds numbers with a unit ({name!r}), write the plain numbers ({number[1]}) "
        "for a regression: text is read as class names"
    )


def dataset_problems(ds: Dataset) -> list[Problem]:
    """Every problem of the description itself (no file opened)."""
    return (
        _description_problems(ds)
        + case_id_problems(ds)
        + declared_label_problems(ds)
        + target_problems(ds)[0]
    )


def no_target_problems(ds: Dataset) -> list[Problem]:
    """A dataset to train on needs targets (else it would plan a background-only segmentation and fail in training).
    ``automed verify`` and ``fingerprint`` may check images alone; training checks this first."""
    if not ds.cases or any(c.label is not None or c.value is not None for c in ds.cases):
        return []
    return [
        Problem(
            str(ds.source),
            "a training dataset needs a target for its cases: a label map or a ValueToPredict",
            "no case has a label map or a value",
            "add a Label column (label map paths: segmentation) or a ValueToPredict column (a class or a number per "
            "case), or labelsTr files",
        )
    ]


def dataset_warnings(ds: Dataset, folds: int = DEFAULT_FOLDS) -> list[Problem]:
    """What the description allows but makes training worse (reported, never fatal)."""
    from automed.data.csv_layout import MISSING_MARKERS

    marked = [
        Problem(
            str(ds.source),
            "a class name that often means 'no value' is trained as a class of its own",
            f"class {name!r} ({sum(c.value == k for c in ds.cases)} case(s))",
            "if it marks missing targets, drop those rows; if it is a real class, nothing to do",
        )
        for k, name in sorted((ds.labels or {}).items())
        if ds.task_type == "classification" and str(name).strip().casefold() in MISSING_MARKERS
    ]
    if ds.task_type == "classification":  # "Normal" and "normal " are two classes: almost always a typo
        by_folded: dict[str, list[str]] = {}
        for name in sorted(str(n) for n in (ds.labels or {}).values()):
            by_folded.setdefault(name.strip().casefold(), []).append(name)
        marked += [
            Problem(
                str(ds.source),
                "class names that differ only in letter case or spaces are trained as different classes",
                f"classes {names!r}",
                "write each class one way in ValueToPredict, or keep them if they really are different classes",
            )
            for names in by_folded.values()
            if len(names) > 1
        ]
    return target_problems(ds, folds)[1] + marked


def target_problems(ds: Dataset, folds: int = DEFAULT_FOLDS) -> tuple[list[Problem], list[Problem]]:
    """Errors and warnings about the targets (``ValueToPredict``, class folders).

    Errors: a target that is not a finite number (NaN, inf: a regression loss becomes NaN); regression targets that
    are all one value or too spread to standardize in float64; a classification dataset
    of one class; a class with fewer than :data:`MIN_CLASS_CASES` cases (it cannot be both learnt and validated). Warnings: a class with fewer cases than
    the folds it is to be trained with (``folds``, by default :data:`DEFAULT_FOLDS`): its cases go to different folds, so some validation folds
    hold no case of it and its per-fold scores are undefined; fewer folds (``--folds 2``) or more cases fix it."""
    src = str(ds.source)
    bad = [c.case_id for c in ds.cases if c.value is not None and not math.isfinite(c.value)]
    if bad:
        err = Problem(
            src,
            "ValueToPredict must be a finite number",
            f"NaN or infinite values for {bad[:10]}"
            + (f" and {len(bad) - 10} more" if len(bad) > 10 else ""),
            "write the measured value, or drop the rows that have none",
        )
        return [err], []
    if ds.task_type == "regression":
        return _regression_problems(ds), []
    if ds.task_type != "classification":
        return [], []
    counts = Counter(int(c.value) for c in ds.cases if c.value is not None)
    groups: dict[int, set[str]] = {}  # the patients (PatientID; else each case) of each class
    for c in ds.cases:
        if c.value is not None:
            groups.setdefault(int(c.value), set()).add(c.subject)
    names = ds.labels or {}
    errors: list[Problem] = []
    warnings: list[Problem] = []
    guessed = (
        ds.layout != "folders"
        and ds.extra.get("task") is None
        and all(str(n) == str(v) for v, n in names.items())
    )
    regression = (
        "; or, if ValueToPredict is a quantity (an age, a score), train it as a regression: automed train "
        "DATASET --task regression (at most 20 distinct integers are read as classes)"
        if guessed
        else ""
    )
    texts = list(names.values()) if ds.layout != "folders" else []
    if ds.extra.get("task") is None and (comma := decimal_comma_hint(texts)):  # trained as classes otherwise
        warnings.append(Problem(src, "numbers are written with a decimal point: text is read as class names",
                                f"{len(texts)} classes such as {texts[0]!r}", comma.removeprefix("; or, ")))  # fmt: skip
    if len(counts) < 2:
        errors.append(
            Problem(
                src,
                "a classification dataset needs at least two classes",
                f"one class only: {[names.get(v, str(v)) for v in counts]}",
                "add cases of the other classes (a model cannot learn to tell one class from nothing)",
            )
        )
    for value, n in sorted(counts.items()):
        found = f"class {names.get(value, str(value))!r} has {n} case(s)"
        if n < MIN_CLASS_CASES:
            errors.append(
                Problem(
                    src,
                    f"every class needs at least {MIN_CLASS_CASES} cases (one to learn from, one to validate on), "
                    f"better as many as there are folds ({folds})",
                    found,
                    f"add cases of this class, or merge it into another class{regression}"
                    + _unit_hint(texts, names.get(value, str(value))),
                )
            )
        elif len(groups[value]) < MIN_CLASS_CASES:  # one patient's cases share a fold: learnt or validated
            errors.append(
                Problem(
                    src,
                    f"every class needs cases of at least {MIN_CLASS_CASES} patients (PatientID): a patient's "
                    "cases share one fold, so a class of one patient is never learnt where it is validated",
                    f"{found}, all of PatientID {next(iter(groups[value]))!r}",
                    "add cases of other patients to this class, or merge it into another class",
                )
            )
        elif n < folds:
            warnings.append(
                Problem(
                    src,
                    f"every class needs at least as many cases as there are folds ({folds}); with fewer, "
                    "some validation folds hold no case of the class",
                    found,
                    f"add cases, merge the class, or train with fewer folds (--folds 2..){regression}",
                )
            )
    return errors, warnings


def _regression_problems(ds: Dataset) -> list[Problem]:
    """Finite targets training still cannot use: one value for every case (nothing to learn, R² undefined), or a
    spread whose standard deviation overflows float64 (the network predicts the standardized value)."""
    values = [(c.case_id, float(c.value)) for c in ds.cases if c.value is not None]
    if not values:
        return []
    arr = np.array([v for _, v in values], dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        std = float(arr.std())
    if not math.isfinite(std):
        largest = sorted(values, key=lambda cv: -abs(cv[1]))[:3]
        return [
            Problem(
                str(ds.source),
                "the standard deviation of the regression targets must be a finite float64 number (automed "
                "standardizes them)",
                "largest values " + ", ".join(f"{cid}: {v:g}" for cid, v in largest),
                "check those values for a typo, or write the target in other units (e.g. thousands)",
            )
        ]
    if std == 0.0 and len(values) > 1:
        return [
            Problem(
                str(ds.source),
                "a regression target must vary between cases (a model cannot learn one value)",
                f"every case has ValueToPredict {arr[0]:g}",
                "check the ValueToPredict column: it may have been filled with one value by mistake",
            )
        ]
    return []


def _description_problems(ds: Dataset) -> list[Problem]:
    src = str(ds.source)
    out: list[Problem] = []
    for file, why, fix in ds.extra.get("unexpected_files", []):
        rule = "every file in imagesTr/labelsTr must belong to a declared case and channel"
        if why.startswith("numTraining"):
            rule = "numTraining counts the training cases in imagesTr (nnU-Net checks it too)"
        out.append(Problem(file, rule, why, fix))
    if not ds.cases:
        out.append(
            Problem(
                src,
                "a dataset needs at least one training case",
                "0 cases",
                "list the cases in 'training' (MSD), put files in imagesTr (nnU-Net) or add CSV rows",
            )
        )
    dup = sorted(k for k, n in Counter(c.case_id for c in ds.cases).items() if n > 1)
    if dup:
        out.append(
            Problem(
                src,
                "subject/case IDs must be unique",
                f"duplicates {dup[:10]}",
                "give every case its own ID (use a PatientID column to group cases of one patient)",
            )
        )
    labeled = [c for c in ds.cases if c.label is not None]
    if labeled and len(labeled) != len(ds.cases):
        missing = [c.case_id for c in ds.cases if c.label is None][:10]
        out.append(
            Problem(
                src,
                "either every case has a label or none has",
                f"no label for {missing}",
                "add the missing labels or drop those cases",
            )
        )
    valued = [c for c in ds.cases if c.value is not None]
    if valued and len(valued) != len(ds.cases):
        missing = [c.case_id for c in ds.cases if c.value is None][:10]
        out.append(
            Problem(
                src,
                "either every case has a ValueToPredict or none has",
                f"missing for {missing}",
                "fill in the missing values",
            )
        )
    if ds.labels is not None and labeled and 0 not in ds.labels:
        out.append(
            Problem(
                src,
                "'labels' must declare the background value 0",
                str(sorted(ds.labels)),
                'add "0": "background"',
            )
        )
    if not ds.images_are_4d:
        files = 1 if ds.extra.get("one_rgb_file") else ds.n_channels  # nnU-Net's R, G, B in one picture
        bad = [c.case_id for c in ds.cases if len(c.images) != files]
        if bad:
            out.append(
                Problem(
                    src,
                    f"every case needs {ds.n_channels} channel image(s)",
                    f"cases {bad[:10]}",
                    "list one image per channel",
                )
            )
    return out


def case_id_problems(ds: Dataset) -> list[Problem]:
    """Case IDs name files (``preprocessed/<id>.npz``, predictions): letters, digits, ``.``, ``_`` and ``-`` only,
    no leading dot (hidden files, ``.``, ``..``), and unique also when letter case is ignored (``Case1`` and
    ``case1`` are one file on macOS and Windows)."""
    out: list[Problem] = []
    from_csv = ds.layout == "csv"
    for c in ds.cases:
        cid = c.case_id
        if SAFE_ID.fullmatch(cid) and not cid.startswith("."):
            continue
        out.append(
            Problem(
                str(ds.source) if from_csv or not c.images else str(c.images[0]),
                "case IDs must be safe file names: letters, digits, '.', '_' and '-' only, not starting with '.'",
                f"case ID {cid!r}" + ("" if from_csv else " (from the image file name)"),
                (
                    "rename the SubjectID (e.g. replace '/', spaces and other characters by '_'); the image paths "
                    "belong in the Channel_* columns"
                    if from_csv
                    else "rename the image (and label) file to letters, digits, '.', '_' and '-'"
                ),
            )
        )
    by_folded: defaultdict[str, set[str]] = defaultdict(set)
    for c in ds.cases:
        by_folded[c.case_id.casefold()].add(c.case_id)
    clashes = sorted(sorted(ids) for ids in by_folded.values() if len(ids) > 1)
    if clashes:
        out.append(
            Problem(
                str(ds.source),
                "case IDs must differ in more than letter case (they name files, and on case-insensitive file "
                "systems such as macOS and Windows those are one file)",
                f"IDs differing only in case: {clashes[:10]}",
                "rename one of each pair (e.g. Case1 and case1 to case1a and case1b)",
            )
        )
    return out


def declared_label_problems(ds: Dataset) -> list[Problem]:
    """Declared label values automed cannot store (see :data:`LABEL_MAX`); segmentation only (class indices are
    no label-map values)."""
    if ds.task_type != "segmentation":
        return []
    big = sorted(v for v in ds.labels or {} if v > LABEL_MAX)
    if not big:
        return []
    return [
        Problem(
            str(ds.source),
            f"label values must be <= {LABEL_MAX} (automed stores label maps as int16)",
            f"declared values {big[:10]}",
            f"renumber the labels to 0..{LABEL_MAX} (e.g. 0, 1, 2, ...) in 'labels' and in the label maps",
        )
    ]


def label_presence(ds: Dataset, seen: set[int]) -> tuple[list[Problem], list[Problem]]:
    """Errors and warnings about which labels occur at all: a segmentation dataset without any foreground cannot
    train; a declared label that no case holds cannot be learnt (the model will never predict it)."""
    if not any(c.label is not None for c in ds.cases):
        return [], []
    src = str(ds.source)
    if not seen - {0}:
        err = Problem(
            src,
            "a segmentation dataset needs foreground (a label value > 0) in at least one case",
            "every label map is empty",
            "check that the label files are the right ones (cases without foreground are fine, all of them are not)",
        )
        return [err], []
    warns = [
        Problem(
            src,
            "every declared label should occur in at least one training case",
            f"label {v} ({ds.labels[v]!r}) occurs in no case",
            f"remove {v} from 'labels' in dataset.json, or add cases that hold it: "
            "a model never predicts a structure it has not seen",
        )
        for v in sorted(set(ds.labels or {}) - seen - {0})
        if ds.labels is not None
    ]
    return [], warns
