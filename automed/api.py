"""The Python API: one typed function per stage, re-exported from :mod:`automed.workflow` (the only orchestration).
The CLI is a thin layer over these.

dataset -> :func:`verify` -> :func:`fingerprint` (fingerprint.json) -> :func:`plan` (plan.json) ->
:func:`preprocess` (preprocessed/<configuration>/ + splits.json) [:func:`plan_dataset` runs them in order] ->
:func:`train` (folds, CV, model.json, registry) or :func:`sweep` (trials over folds) -> :func:`select` (on CV) ->
:func:`export` (ONNX/OpenVINO + standalone bundle) -> :func:`package` (MLCube/MedPerf) ; :func:`predict` on new images,
:func:`explain` (attention maps with medcam).

Names are imported on first use: ``automed predict`` through a linked export must not import torch, which the
training modules do.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the "as" form re-exports the names for type checkers
    from automed.config import parse_duration as parse_duration
    from automed.data.verify import VerifyReport as VerifyReport
    from automed.export.export import ExportResult as ExportResult
    from automed.package.mlcube import PackageResult as PackageResult
    from automed.select.inference_cost import mirror_label as mirror_label
    from automed.workflow.anonymize import AnonymizeResult as AnonymizeResult
    from automed.workflow.anonymize import anonymize as anonymize
    from automed.workflow.anonymize import check_anonymized as check_anonymized
    from automed.workflow.convert import ConvertResult as ConvertResult
    from automed.workflow.convert import convert as convert
    from automed.workflow.explain import explain as explain
    from automed.workflow.export import export as export
    from automed.workflow.export import package as package
    from automed.workflow.metrics import MetricsResult as MetricsResult
    from automed.workflow.metrics import metrics as metrics
    from automed.workflow.patch_miner import MineResult as MineResult
    from automed.workflow.patch_miner import patch_miner as patch_miner
    from automed.workflow.predict import load_predictor as load_predictor
    from automed.workflow.predict import predict as predict
    from automed.workflow.prepare import PlanResult as PlanResult
    from automed.workflow.prepare import fingerprint as fingerprint
    from automed.workflow.prepare import plan as plan
    from automed.workflow.prepare import plan_dataset as plan_dataset
    from automed.workflow.prepare import preprocess as preprocess
    from automed.workflow.prepare import verify as verify
    from automed.workflow.report import ReportResult as ReportResult
    from automed.workflow.report import report as report
    from automed.workflow.select import select as select
    from automed.workflow.sweep import grid as grid
    from automed.workflow.sweep import sweep as sweep
    from automed.workflow.sweep_stages import SweepResult as SweepResult
    from automed.workflow.train import train as train
    from automed.workflow.train_options import TrainResult as TrainResult

_WHERE = {
    "parse_duration": "automed.config",
    "VerifyReport": "automed.data.verify",
    "ExportResult": "automed.export.export",
    "PackageResult": "automed.package.mlcube",
    "mirror_label": "automed.select.inference_cost",
    "AnonymizeResult": "automed.workflow.anonymize",
    "anonymize": "automed.workflow.anonymize",
    "check_anonymized": "automed.workflow.anonymize",
    "ConvertResult": "automed.workflow.convert",
    "convert": "automed.workflow.convert",
    "explain": "automed.workflow.explain",
    "export": "automed.workflow.export",
    "package": "automed.workflow.export",
    "MetricsResult": "automed.workflow.metrics",
    "metrics": "automed.workflow.metrics",
    "MineResult": "automed.workflow.patch_miner",
    "patch_miner": "automed.workflow.patch_miner",
    "load_predictor": "automed.workflow.predict",
    "predict": "automed.workflow.predict",
    "PlanResult": "automed.workflow.prepare",
    "fingerprint": "automed.workflow.prepare",
    "plan": "automed.workflow.prepare",
    "plan_dataset": "automed.workflow.prepare",
    "preprocess": "automed.workflow.prepare",
    "verify": "automed.workflow.prepare",
    "ReportResult": "automed.workflow.report",
    "report": "automed.workflow.report",
    "select": "automed.workflow.select",
    "grid": "automed.workflow.sweep",
    "sweep": "automed.workflow.sweep",
    "SweepResult": "automed.workflow.sweep_stages",
    "TrainResult": "automed.workflow.train_options",
    "train": "automed.workflow.train",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'automed.api' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
