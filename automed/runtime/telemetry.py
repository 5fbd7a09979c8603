"""The usage telemetry of the libraries automed runs stays off: a hospital's model, data and machine are not
reported to anyone (``AUTOMED_ALLOW_TELEMETRY=1`` leaves the libraries' own defaults).

onnxruntime (1DS events to Microsoft), MLflow and Ray read an environment variable, set here unless the user set it;
OpenVINO's tools send Google Analytics events on ``import openvino`` unless a consent file in the home folder says
no, so its consent check answers "declined" for this process (nothing is written to the home folder).
"""

from __future__ import annotations

import os

OFF = {
    "ORT_DISABLE_TELEMETRY": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def allowed() -> bool:
    return os.environ.get("AUTOMED_ALLOW_TELEMETRY", "") == "1"


def environment_off() -> None:
    """Set the opt-out variables (before the libraries are imported; processes started later inherit them)."""
    if not allowed():
        for name, value in OFF.items():
            os.environ.setdefault(name, value)


def openvino_off() -> None:
    """Before ``import openvino``: its telemetry package's consent check declines."""
    environment_off()
    if allowed():
        return
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:  # an OpenVINO without its telemetry package
        return

    def declined(self: object, *args: object, **kwargs: object) -> object:
        return ConsentCheckResult.DECLINED

    OptInChecker.check = declined
