"""``automed report RUN [RUN ...] -o DIR``: one self-contained HTML page (figures inlined, no scripts, no network)
plus its PNGs and CSVs, comparing segmentation runs. A RUN is a training work dir (its ``cv/metrics.csv`` and every
fold's ``progress.json``), an ``automed metrics`` output folder or its ``metrics.csv``; a model trained on all data
(``train --folds all``) shows its curve, plan and inherited cross-validation (:mod:`automed.workflow.report_all_data`).

Each training work dir's MLflow run also gets the report under ``report/``, rendered with the case pseudonyms.

Contents: mean per run and structure; per-case table; boxplots per structure (Dice, HD95); training curves of all
folds on shared axes; paired Wilcoxon signed-rank tests per structure between every two runs with Holm's correction
and the better run; a run-vs-run scatter; outliers (worst cases, beyond 1.5 IQR); for training work dirs, max-slice
thumbnails per structure of the worst cases (image, reference and out-of-fold prediction contours). The copy logged
to MLflow has no thumbnails: pictures of patients leave the machine only when asked (``train --overlays``).

Runs are paired by case ID: work dirs of different datasets (their fingerprints hold other images under a case ID
they share) are refused (:mod:`automed.workflow.one_dataset`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from automed.artifacts import atomic_directory, claim_output, mark_output
from automed.errors import ArtifactError, ConfigError
from automed.evaluate.report import boxplots, curves, outliers, paired_tests, read_case_table, scatter
from automed.records import PROGRESS, read_progress, read_tracking
from automed.runtime.postprocess import describe
from automed.workdir import WorkDir
from automed.workflow.one_dataset import refuse_other_datasets
from automed.workflow.predict_output import training_datasets
from automed.workflow.report_all_data import all_data_run
from automed.workflow.report_page import not_compared, page, png, table

log = logging.getLogger("automed")

MAX_CASE_ROWS = 300  # per-case rows shown in the page (all are in cases.csv)
NO_CASES = ("run", "case", "label", "name", "dice")  # the columns of a report without per-case rows
MAX_THUMB_CASES = 24  # per run: the worst cases by mean Dice get thumbnails (the rest are in cases.csv)


@dataclass
class ReportResult:
    folder: Path
    page: Path
    tests: list[dict[str, Any]]
    logged: list[str] = field(default_factory=list)  # the work dirs whose MLflow run received the report


def _read_run(path: Path) -> tuple[pd.DataFrame, dict[str, list[dict[str, Any]]]]:
    """The per-case table of one run and its folds' histories (work dirs only)."""
    wd = WorkDir(path)
    if path.is_dir() and wd.cv_metrics.is_file():
        table = read_case_table(wd.cv_metrics)
        hist = {}
        for prog in sorted((path / "train").glob(f"*/fold_*/{PROGRESS}")):
            hist[f"{prog.parent.parent.name} {prog.parent.name}"] = read_progress(prog)["history"]
        return table, hist
    csv = path / "metrics.csv" if path.is_dir() else path
    if csv.is_file() and csv.suffix == ".csv":
        table = read_case_table(csv, required=False)  # another table is named below with what a report takes
        if {"case", "label", "dice"} <= set(table.columns):
            return table, {}
    if (path / "sweep.json").is_file():
        raise ArtifactError.single(path, "a report compares trainings", "a sweep's folder",
                                   f"pass its selection folder ({path.name}/selection) or its trials' work dirs "
                                   f"({path.name}/trials/<key>, those trials.csv says reached cv)")  # fmt: skip
    raise ArtifactError.single(
        path,
        "a report compares runs: training work dirs, `automed metrics` outputs or selection folders",
        "no model.json, cv/metrics.csv or metrics.csv with case, label and dice",
        "train it first (`automed train`), or score predictions with `automed metrics`",
    )


def _one_name_per_label(cases: pd.DataFrame) -> pd.DataFrame:
    """One name for each label value across runs: a run scored with ``--labels`` (``anterior``) beside one without
    (``1``) had split the structure in two, with no paired test and no word. The name that is not the value wins."""
    if not {"label", "name", "run"} <= set(cases.columns):
        return cases
    names = cases.groupby(cases["label"].astype(str))["name"].agg(
        lambda v: sorted({str(x) for x in v.dropna()})
    )
    chosen = {}
    for label, found in names.items():
        if len(found) > 1:
            given = [n for n in found if n != label] or found
            chosen[label] = given[0]
            log.warning("report: label %s is named %s in different runs; compared as %s", label,
                        " and ".join(found), given[0])  # fmt: skip
    if not chosen:
        return cases
    relabel = cases["label"].astype(str).map(chosen)
    return cases.assign(name=relabel.where(relabel.notna(), cases["name"]))


def _say_other_tolerances(paths: list[Path], names: list[str]) -> None:
    """``automed metrics`` outputs scored at different NSD tolerances: their NSD columns measure different things."""
    from automed.workflow.report_image import read_metrics_summary

    seen = {}
    for path, name in zip(paths, names, strict=True):
        summary = path / "summary.json" if path.is_dir() else None
        if summary is not None and summary.is_file() and not (path / "model.json").is_file():
            seen[name] = read_metrics_summary(summary).get("nsd_tolerance_mm")  # (its one reader)
    given = {n: t for n, t in seen.items() if isinstance(t, int | float)}
    if len(set(given.values())) > 1:
        log.warning("report: NSD was scored at different tolerances (%s): compare NSD of runs at one tolerance",
                    ", ".join(f"{n} {t:g} mm" for n, t in given.items()))  # fmt: skip


def _refuse_non_runs(paths: list[Path]) -> None:
    """Name a folder that is no run at all before the runs' problems are compared (a mistyped folder beside a
    classification run read as "runs of one problem; found ['None', 'classification']")."""
    for path in paths:
        wd = WorkDir(path)
        if path.is_dir() and (
            wd.model.is_file() or wd.cv_metrics.is_file() or (path / "summary.json").is_file()
        ):
            continue
        if not (path.is_file() and path.suffix == ".csv"):
            _read_run(path)  # raises, naming what the folder lacks


def _volume(a: Any) -> Any:
    """(z, y, x) for the thumbnail code: a 2D image becomes one slice."""
    return a if a.ndim == 3 else a.reshape(1, *a.shape[-2:])


def _thumbnails(path: Path, run: str, table: pd.DataFrame, folder: Path) -> str:
    """For a training work dir: max-slice thumbnails of each structure of its worst cases (HTML, PNGs in
    ``folder/thumbnails/``); empty for other runs (their images are not known)."""
    import html as h

    from automed.data.dataset import load_dataset
    from automed.data.io import read_image
    from automed.evaluate.report_thumbs import thumbnail, worst_scored
    from automed.fingerprint.schema import Fingerprint
    from automed.train.meta import load_model

    wd = WorkDir(path)
    if not (path.is_dir() and wd.model.is_file() and wd.fingerprint.is_file() and "fold" in table):
        return ""
    try:
        cases = {c.case_id: c for c in load_dataset(Fingerprint.load(wd.fingerprint).source).cases}
    except (
        Exception
    ):  # the dataset moved or changed since training: no thumbnails, the rest of the report stays
        return ""
    configuration = load_model(path).configuration
    rows = []
    (folder / "thumbnails").mkdir(exist_ok=True)
    for cid, sub in worst_scored(table, MAX_THUMB_CASES):
        pred_file = wd.fold(configuration, int(sub["fold"].iloc[0])) / "validation" / f"{cid}.nii.gz"
        case = cases.get(str(cid))
        if case is None or case.label is None or not pred_file.is_file():
            continue
        image, ref, pred = (_volume(read_image(f)[0][0]) for f in (case.images[0], case.label, pred_file))
        cells = []
        for _, r in sub.iterrows():
            fig = thumbnail(image, ref, pred, int(r["label"]), f"{cid} {r['name']} Dice {r['dice']:.3f}")
            cells.append(png(fig, folder / "thumbnails" / f"{run}_{cid}_{r['label']}.png"))
        rows.append(f"<tr><th>{h.escape(str(cid))}</th>{''.join(f'<td>{c}</td>' for c in cells)}</tr>")
    return (
        f"<p>{h.escape(run)}: worst {len(rows)} cases by mean Dice</p><table>{''.join(rows)}</table>"
        if rows
        else ""
    )


def _write(
    cases: pd.DataFrame,
    histories: dict[str, list[dict[str, Any]]],
    names: list[str],
    folder: Path,
    thumbs: dict[str, Path] | None = None,
    extra: list[tuple[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """The page, its PNGs and CSVs into ``folder``; returns the paired tests."""
    if cases.empty:  # all-data models without a cross-validation: their sections and training curves only
        sections = [*(extra or [])]
        if histories:
            sections.append(("Training curves", png(curves(histories), folder / "curves.png")))
        (folder / "report.html").write_text(page(names, sections))
        return []
    tests = paired_tests(cases) if len(names) > 1 else []
    worst = outliers(cases)
    metrics = [m for m in ("dice", "hd95", "nsd") if m in cases]
    means = cases.groupby(["run", "name"], sort=False)[metrics].mean()
    sections = [("Mean per run and structure", table(means.reset_index())), *(extra or [])]
    sections.append(("Distributions", png(boxplots(cases), folder / "boxplots.png")))
    if histories:
        sections.append(("Training curves (every fold)", png(curves(histories), folder / "curves.png")))
    if tests:
        pd.DataFrame(tests).to_csv(folder / "wilcoxon.csv", index=False)
        sections.append(
            ("Paired Wilcoxon signed-rank tests (Dice, Holm-corrected)", table(pd.DataFrame(tests)))
        )
        sections.append(("Run vs run", png(scatter(cases, names[0], names[1]), folder / "scatter.png")))
    sections += not_compared(cases)
    pd.DataFrame(worst).to_csv(folder / "outliers.csv", index=False)
    sections.append(("Outliers (worst cases and beyond 1.5 IQR, Dice)", table(pd.DataFrame(worst))))
    pictures = "".join(
        _thumbnails(p, run, cases[cases["run"] == run], folder) for run, p in (thumbs or {}).items()
    )
    if pictures:
        sections.append(("Max-slice thumbnails (green: reference, red: prediction)", pictures))
    cases.to_csv(folder / "cases.csv", index=False)
    shown = cases[["run", "case", "name", *metrics]]
    sections.append((f"Per case (first {MAX_CASE_ROWS}; all in cases.csv)", table(shown.head(MAX_CASE_ROWS))))
    (folder / "report.html").write_text(page(names, sections))
    return tests


def comparison_folder(names: Sequence[str]) -> str:
    """The folder under ``report/`` of a training's MLflow run that holds one comparison's report (its runs' names):
    a report of other runs never leaves its figures and tables among another's (MLflow keeps what was logged, and
    a one-run report had shown beside the scatter and Wilcoxon tests of an earlier two-run one)."""
    import hashlib
    import re

    slug = "_vs_".join(re.sub(r"[^A-Za-z0-9._-]+", "_", n).strip("._") or "run" for n in names)
    if len(slug) > 80:
        slug = f"{slug[:60]}-{hashlib.sha256(slug.encode()).hexdigest()[:12]}"
    return slug


def _log_to_mlflow(
    path: Path, render: Callable[[Path, Callable[[str], str]], object], names: Sequence[str] = ()
) -> bool:
    """For a training work dir: the report, rendered again by ``render(folder, pseudonym)`` with its cases'
    pseudonyms (and no local paths), logged under ``report/<the compared runs>/`` of the training's MLflow run.
    Returns whether it was logged."""
    import tempfile

    from mlflow.exceptions import MlflowException

    from automed.tracking import Tracker
    from automed.workflow.disclosure import redactor_for

    wd = WorkDir(path)
    if path.is_dir() and (path / "trial.json").is_file() and not wd.tracking.is_file():
        log.warning("report not logged to MLflow for %s: a sweep trial's report goes with the sweep's runs, which "
                    "this report does not write to (the page is written)", path.name)  # fmt: skip
        return False
    if not (path.is_dir() and wd.tracking.is_file()):
        return False
    track = read_tracking(wd.tracking)
    uri = str(track["uri"])
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():  # never create a store
        log.warning("report not logged to MLflow for %s: its store is gone (work dir moved?)", path.name)
        return False
    red = redactor_for([path])
    try:
        tracker = Tracker(uri, track["experiment"], red)
        with tempfile.TemporaryDirectory(prefix="automed-report-") as tmp:
            folder = Path(tmp) / comparison_folder(names or [path.name])
            folder.mkdir()
            render(folder, lambda c: red.case(str(c)))
            tracker.log_artifact(track["parent_run_id"], folder, "report")
    except MlflowException as exc:  # the report is written; only its copy in MLflow is missing
        log.warning("report not logged to MLflow for %s: %s", path.name, str(exc).splitlines()[0][:200])
        return False
    except (
        ConfigError
    ) as exc:  # the store's own checks (a server that is down): the page is written all the same
        p = exc.problems[0]
        log.warning("report not logged to MLflow for %s: %s (rule: %s). Fix: %s, then run the report again",
                    path.name, p.value, p.rule, "start its tracking server" if "server" in p.rule else p.fix)  # fmt: skip
        return False
    return True


def _names(paths: list[Path]) -> list[str]:
    names: list[str] = []
    for p in paths:
        name = p.stem if p.is_file() else p.name
        names.append(name if name not in names else f"{name}-{len(names) + 1}")
    return names


def _image_level_report(
    paths: list[Path],
    names: list[str],
    out: Path,
    kind: str,
    log_to_mlflow: bool,
    extra: list[tuple[str, str]],
) -> ReportResult:
    from automed.workflow.report_image import read_image_run, write_image_level

    tables, histories = [], {}
    for p, name in zip(paths, names, strict=True):
        t, hist = read_image_run(p)
        tables.append(t)
        histories.update({f"{name} {k}": v for k, v in hist.items()})
    with atomic_directory(out) as tmp:
        tests = write_image_level(tables, histories, names, kind, tmp, extra)
        mark_output(tmp, "report")

    def render(folder: Path, pseudonym: Callable[[str], str]) -> object:
        shown = [t.assign(case=[pseudonym(c) for c in t["case"]]) for t in tables]
        return write_image_level(shown, histories, names, kind, folder, extra)

    logged = [str(p) for p in paths if log_to_mlflow and _log_to_mlflow(p, render, names)]
    return ReportResult(out, out / "report.html", tests, logged)


def _selection_sections(selections: list[dict[str, Any]], shown: dict[str, str]) -> list[tuple[str, str]]:
    """One table per selection (its folder's name in the heading): every candidate with its CV score, the chosen one
    marked; candidates named as the rest of the page names their trainings (``shown``: path -> name; a name two
    inputs share is told apart there), never by local paths, so the MLflow copy can show the table too."""

    def name(candidate: dict[str, Any]) -> str:
        members = candidate.get("members") or candidate["candidate"].split(" + ")
        # selections written before names were path-free held absolute paths where names collided
        return " + ".join(shown.get(str(Path(m)), Path(m).name) for m in members)

    out = []
    for sel in selections:
        rows = [
            {
                "candidate": name(c),
                "cv score": c.get("foreground_mean", c.get("score")),
                "chosen": c["candidate"] == sel["chosen"]["candidate"],
            }
            for c in sel.get("candidates", [])
        ]
        steps = sel.get("postprocessing") or []
        kept = "; ".join(describe(s) for s in steps)
        heading = f"Selection {sel.get('folder', '')} ({sel.get('criterion', 'CV score')})".replace("  ", " ")
        out.append(
            (f"{heading}: postprocessing kept: {kept}" if kept else heading, table(pd.DataFrame(rows)))
        )
    return out


def report(
    runs: Sequence[str | Path],
    output: str | Path,
    *,
    overwrite: bool = False,
    log_to_mlflow: bool = True,
    tracking_uri: str | None = None,
) -> ReportResult:
    """Write the report of ``runs`` into ``output`` (see the module docstring); with ``log_to_mlflow``, also into the
    MLflow run of every training work dir among ``runs`` (case IDs as pseudonyms there). A RUN may also be a
    selection folder (its candidate trainings, and its table) or an MLflow training run ``runs:/<id>``
    (:mod:`automed.workflow.report_inputs`)."""
    import tempfile

    from automed.workflow.report_inputs import RUN_PREFIX, resolve

    if Path(output).suffix.lower() in (".html", ".htm") and not Path(output).is_dir():
        raise ConfigError.single(  # it became a folder named like a page, the page inside it
            "--output", "the report's output is a folder (report.html, its pictures and tables go inside)",
            str(output), f"pass a folder, e.g. -o {Path(output).with_suffix('')}",
        )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="automed-report-inputs-") as scratch:
        inputs = resolve(list(runs), Path(scratch), tracking_uri)
        local = [Path(r) for r in runs if not str(r).startswith(RUN_PREFIX)]
        names = _names(inputs.paths)
        names = [inputs.names.get(p, n) for p, n in zip(inputs.paths, names, strict=True)]
        shown = {str(p): n for p, n in zip(inputs.paths, names, strict=True)}
        return _report(inputs.paths, names, output, local, overwrite, log_to_mlflow,
                       _selection_sections(inputs.selections, shown))  # fmt: skip


def _report(
    paths: list[Path],
    names: list[str],
    output: str | Path,
    protected: list[Path],
    overwrite: bool,
    log_to_mlflow: bool,
    extra: list[tuple[str, str]],
) -> ReportResult:
    from automed.workflow.report_image import image_level_kind, refuse_other_references

    datasets = training_datasets(paths)  # its pictures are read from the trainings' datasets
    out = claim_output(
        Path(output), "report", protected=protected + paths, datasets=datasets, overwrite=overwrite
    )
    refuse_other_datasets(paths, names)
    kinds = {image_level_kind(p) for p in paths}
    if kinds - {None}:
        _refuse_non_runs(paths)
        if len(kinds) > 1:
            raise ArtifactError.single(
                paths[0], "a report compares runs of one problem", f"{sorted(k or 'segmentation' for k in kinds)}",
                "report segmentation, classification and regression runs separately",
            )  # fmt: skip
        return _image_level_report(paths, names, out, str(kinds.pop()), log_to_mlflow, extra)
    tables: list[pd.DataFrame] = []
    histories: dict[str, list[dict[str, Any]]] = {}
    thumbs = dict(zip(names, paths, strict=True))
    extra = list(extra)
    for p, name in zip(paths, names, strict=True):
        alone = all_data_run(p, name, paths)  # trained on every case: no CV table of its own
        if alone is not None:
            extra.append(alone.section)
            hist = alone.histories
            if alone.cases is not None and alone.images_from is not None:
                tables.append(alone.cases.assign(run=name))
                thumbs[name] = alone.images_from
        else:
            run_table, hist = _read_run(p)
            tables.append(run_table.assign(run=name))
        histories.update({f"{name} {k}": v for k, v in hist.items()})
    cases = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=NO_CASES)
    regions = cases["label"].astype(str).str.startswith("region:") if "label" in cases else None
    if regions is not None and regions.any():
        log.warning("report: the --region rows of %s are left out (the page compares structures)",
                    ", ".join(sorted(set(cases.loc[regions, "run"]))))  # fmt: skip
        cases = cases[~regions]
    refuse_other_references(cases, ["case", "label"], "n_ref")
    cases = _one_name_per_label(cases)
    _say_other_tolerances(paths, names)
    with atomic_directory(out) as tmp:
        tests = _write(cases, histories, names, tmp, thumbs=thumbs, extra=extra)
        mark_output(tmp, "report")

    def render(folder: Path, pseudonym: Callable[[str], str]) -> object:
        shown = cases.assign(case=[pseudonym(c) for c in cases["case"]])
        return _write(shown, histories, names, folder, extra=extra)

    logged = [str(p) for p in paths if log_to_mlflow and _log_to_mlflow(p, render, names)]
    return ReportResult(out, out / "report.html", tests, logged)
