"""The same ``automed train`` command typed again into its work dir keeps the decisions its budget made the first
time (folds, width, screened configurations and their reasons): they are read from ``train_config.json``, not
probed again. A second probe on a warm or busy machine times other steps and can decide another width, which the
finished folds then refuse, or rewrite the recorded reason with numbers no fold trained with."""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from typing import Any

from automed.artifacts import content_hash
from automed.plan.preset import BudgetRules
from automed.records import read_train_config
from automed.train.config import TrainConfig
from automed.workdir import WorkDir
from automed.workflow.train_options import TrainOptions

log = logging.getLogger("automed")

# options that change where results go or what is shown, never what the budget decides
_NOT_DECIDING = frozenset({"tracking_uri", "register", "keep_case_ids", "overlays", "latency_cap"})
# what the budget decided, recorded in train_config.json's options
DECIDED = (
    "folds",
    "folds_asked",
    "only_folds",
    "folds_reason",
    "screen",
    "validation_mirrors",
    "fold_resources",
)


def typed_digest(dataset: str, config: TrainConfig, opts: TrainOptions, rules: BudgetRules) -> str:
    """A digest of the command as typed (before any decision): its dataset, config and the options that decide,
    and the preset's budget rules (``budget:``, not part of the plan: an edited rule had kept the decisions the old
    one made, and their reasons quoting it) where they are not the defaults."""
    options = {k: v for k, v in asdict(opts).items() if k not in _NOT_DECIDING}
    typed: dict[str, Any] = {"dataset": dataset, "config": config.model_dump(mode="json"), "options": options}
    if rules != BudgetRules():  # (the defaults keep the digests work dirs recorded before)
        typed["budget_rules"] = rules.model_dump(mode="json")
    return content_hash(typed)


def recorded_decisions(wdir: WorkDir, typed: str, unchanged: bool) -> dict[str, Any] | None:
    """``train_config.json`` of this work dir when it was written by the same command (``typed``) and its
    fingerprint and plan are ``unchanged`` by this call's planning; else None (the budget decides anew)."""
    if not unchanged or not wdir.train_config.is_file():
        return None
    saved = read_train_config(wdir.train_config)
    if saved.get("typed") != typed or saved.get("extension"):
        return None
    return saved


def keep_decisions(saved: dict[str, Any], opts: TrainOptions) -> tuple[TrainConfig, TrainOptions]:
    """The config and options the first run of this command decided, with this call's other options."""
    options = saved["options"]
    if options.get("folds_reason"):  # the budget decided something
        log.info("the same command as before: its recorded decisions are kept (not probed again): %s",
                 options["folds_reason"])  # fmt: skip
    kept = {k: options[k] for k in DECIDED if k in options}
    return TrainConfig.model_validate(saved["config"]), replace(opts, **kept)
