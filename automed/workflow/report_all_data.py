"""An all-data model in ``automed report`` (a work dir of ``automed train --folds all``): trained on every case, it
has no validation fold and no ``cv/metrics.csv`` of its own. The report shows what it has: its training curve (the
per-epoch pseudo-Dice is on training patches), its plan, and, when it was trained with ``--cv``, the
cross-validation whose evidence it inherits: that training's out-of-fold cases stand as its rows (the same model
trained on fewer cases per fold), unless that training is itself among the report's runs. Without ``--cv`` the page
says there is no cross-validation to show, and how to get one."""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from automed.evaluate.report import read_case_table
from automed.plan.schema import Plan
from automed.plan.variants import effective_plan
from automed.records import PROGRESS, read_progress, read_train_config
from automed.train.meta import ModelMeta, load_model
from automed.workdir import ALL_DATA, WorkDir, fold_name

log = logging.getLogger("automed")


@dataclass
class AllDataRun:
    section: tuple[str, str]  # the page's heading and HTML on this model
    histories: dict[str, list[dict[str, Any]]]  # its own training curve
    cases: pd.DataFrame | None = (
        None  # the inherited cross-validation's out-of-fold rows, when shown as its own
    )
    images_from: Path | None = None  # the work dir holding those rows' predictions (thumbnails)


def _linked_cv(path: Path) -> Path | None:
    """The cross-validation work dir ``--cv`` named when this model was trained (``train_config.json``)."""
    wd = WorkDir(path)
    if not wd.train_config.is_file():
        return None
    linked = read_train_config(wd.train_config).get("options", {}).get("cv_workdir")
    return Path(linked) if linked else None


def _plan_table(path: Path, meta: ModelMeta) -> str:
    wd = WorkDir(path)
    rows: dict[str, Any] = {"configuration": meta.configuration, "epochs": meta.config.epochs}
    if wd.plan.is_file():
        cfg = effective_plan(Plan.load(wd.plan), meta.config).configurations.get(meta.configuration)
        if cfg is not None:
            rows["spacing (mm, z y x)"] = str(cfg.spacing)
            rows["features per stage"] = str(cfg.network.features_per_stage)
    rows.update(patch=str(meta.resolved.patch_size), batch=meta.resolved.batch_size, loss=meta.config.loss)
    frame = pd.DataFrame({"": list(rows), "value": [str(v) for v in rows.values()]})
    return str(frame.to_html(index=False, border=0, escape=True))


def all_data_run(path: Path, name: str, runs: list[Path]) -> AllDataRun | None:
    """What the report shows of ``path`` when it is a concluded all-data model without a CV table of its own (else
    ``None``); ``runs`` are all the report's runs (the inherited cross-validation may be one of them)."""
    wd = WorkDir(path)
    if not (path.is_dir() and wd.model.is_file()) or wd.cv_metrics.is_file():
        return None
    meta = load_model(path)
    if meta.folds != [ALL_DATA]:
        return None
    prog = wd.fold(meta.configuration, ALL_DATA) / PROGRESS
    curve = (
        {f"{meta.configuration} {fold_name(ALL_DATA)}": read_progress(prog)["history"]}
        if prog.is_file()
        else {}
    )
    heading = f"{name}: a model trained on all data (automed train --folds all)"
    said = (
        f"{html.escape(name)} was trained on every case of dataset {html.escape(meta.dataset)}: no case was held "
        "out, so it has no out-of-fold predictions of its own; its training curve's pseudo-Dice is measured on "
        "training patches."
    )
    cv = _linked_cv(path)
    out = AllDataRun((heading, ""), curve)
    if cv is None:
        said += (
            " It was trained without --cv, so there is no cross-validation to show. To have one: train a "
            "cross-validation with the same config (automed train DATA -o CV --config ...) and train the "
            "all-data model with --cv CV."
        )
    else:
        score = f"{meta.cv_score:.4f}" if meta.cv_score is not None else "undefined"
        inherited = (
            f" It inherits the evidence of the cross-validation {html.escape(cv.name)} (CV score {score})"
        )
        if any(r.resolve() == cv.resolve() for r in runs):
            said += f"{inherited}, reported on this page as its own run."
        elif WorkDir(cv).cv_metrics.is_file():
            said += (
                f"{inherited}: its rows here are that training's out-of-fold predictions (the same model trained "
                "on fewer cases per fold), not this model's."
            )
            out.cases, out.images_from = read_case_table(WorkDir(cv).cv_metrics), cv
        else:
            log.warning("report: %s inherits the cross-validation %s, which has no cv/metrics.csv there (moved?)",
                        path, cv)  # fmt: skip
            said += (
                f"{inherited}, whose per-case table is no longer where it was (moved?): report that work dir."
            )
    out.section = (heading, f"<p>{said}</p>{_plan_table(path, meta)}")
    return out
