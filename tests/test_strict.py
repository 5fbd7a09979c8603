"""Every config and artifact schema has the one strict base (``automed.config.Strict``): unknown keys refused, frozen,
and NaN or infinite numbers refused, also in the schemas whose own copy of the base let them through before
(fingerprint, plan, model metadata, container configs)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from automed.config import Strict
from automed.errors import ConfigError
from automed.fingerprint.schema import CaseFingerprint, Fingerprint, IntensityStats
from automed.package.schemas import ContainerConfig, MLCube, Platform
from automed.plan.preset import MemoryModel, Preset
from automed.plan.schema import Calibration, ChannelNormalization, Plan, TargetPlan
from automed.search.schema import Parameter, SearchSpace
from automed.train.config import TrainConfig
from automed.train.meta import InferenceChoice, InferenceSettings, ModelMeta

SCHEMAS: list[type[BaseModel]] = [
    Fingerprint, CaseFingerprint, Plan, TargetPlan, Preset, MemoryModel, SearchSpace, Parameter, TrainConfig,
    ModelMeta, InferenceSettings, InferenceChoice, MLCube, ContainerConfig, Platform,
]  # fmt: skip


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.__name__)
def test_every_schema_has_the_one_strict_base(schema: type[BaseModel]) -> None:
    assert issubclass(schema, Strict)
    cfg = schema.model_config
    assert (cfg.get("extra"), cfg.get("frozen"), cfg.get("allow_inf_nan")) == ("forbid", True, False)


def _stats(**over: Any) -> dict[str, Any]:
    return {"mean": 0.0, "std": 1.0, "median": 0.0, "min": -1.0, "max": 1.0, "percentile_00_5": -1.0,
            "percentile_99_5": 1.0, "n_samples": 10, **over}  # fmt: skip


def _case(**over: Any) -> dict[str, Any]:
    return {"case_id": "c1", "spacing": [1.0, 1.0, 1.0], "shape": [4, 4, 4], "shape_after_crop": [4, 4, 4],
            "relative_size_after_crop": 1.0, "label_voxels": {}, "component_sizes": {}, **over}  # fmt: skip


def _calibration(**over: Any) -> dict[str, Any]:
    return {"device": "cuda", "patch_size": [32, 32, 32], "note": "", "measured_gb": {"2": 1.0}, "estimated_per_sample_gb": 1.0,
            "measured_per_sample_gb": 1.0, "measured_fixed_gb": 0.5, "factor": 1.0, **over}  # fmt: skip


# (schema, valid data, the same with one non-finite number): fields that took NaN/inf before the shared base
NON_FINITE: list[tuple[type[BaseModel], dict[str, Any], dict[str, Any]]] = [
    (IntensityStats, _stats(), _stats(std=math.nan)),
    (CaseFingerprint, _case(value=2.5), _case(value=math.nan)),  # a regression target: NaN was written as null
    (CaseFingerprint, _case(), _case(spacing=[1.0, math.inf, 1.0])),  # inside a list
    (TargetPlan, {"kind": "regression", "loss": "mse", "reasons": {}},
     {"kind": "regression", "loss": "mse", "reasons": {}, "std": math.inf}),
    (ChannelNormalization, {"channel": 0, "scheme": "zscore", "use_nonzero_mask": False, "reason": "mr"},
     {"channel": 0, "scheme": "zscore", "use_nonzero_mask": False, "reason": "mr", "mean": math.nan}),
    (Calibration, _calibration(), _calibration(measured_gb={"2": math.nan})),  # a dict's value
    (InferenceSettings, {"whole_image_factor": 0.5}, {"whole_image_factor": math.nan}),
    (Platform, {"host_memory_gb": 8.0}, {"host_memory_gb": math.inf}),
]  # fmt: skip


@pytest.mark.parametrize(("schema", "good", "bad"), NON_FINITE, ids=lambda v: getattr(v, "__name__", ""))
def test_a_non_finite_number_is_refused_where_it_was_accepted(
    schema: type[BaseModel], good: dict[str, Any], bad: dict[str, Any]
) -> None:
    schema.model_validate(good)
    with pytest.raises(ValidationError, match="finite number"):
        schema.model_validate(bad)


def test_a_non_finite_number_in_a_cube_description_is_refused(tmp_path: Path) -> None:
    """Through the YAML loader: ``.inf`` in ``mlcube.yaml``'s platform was read as infinite host memory."""
    from automed.config import load_yaml_model

    f = tmp_path / "mlcube.yaml"
    io = "{inputs: {data_path: {type: directory, default: d}, parameters_file: {type: file, default: p.yaml}}, "
    io += "outputs: {output_path: {type: directory, default: o}}}"
    body = (
        "name: m\ndescription: d\nauthors: []\ndocker: {image: i, build_context: ., build_file: Dockerfile}\n"
    )
    body += f"tasks: {{infer: {{parameters: {io}}}, evaluate: {{parameters: {io}}}}}\n"
    f.write_text(body + "platform: {host_memory_gb: 16}\n")
    assert load_yaml_model(MLCube, f).platform.host_memory_gb == 16
    f.write_text(body + "platform: {host_memory_gb: .inf}\n")
    with pytest.raises(ConfigError, match="finite number"):
        load_yaml_model(MLCube, f)


def test_the_shared_base_keeps_unknown_keys_refused_and_models_frozen() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        InferenceSettings.model_validate({"stpe": 0.5})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        IntensityStats.model_validate(_stats(average=0.0))
    s = InferenceSettings()
    with pytest.raises(ValidationError, match="frozen"):
        s.step = 0.25  # type: ignore[misc]
    a, b = (TargetPlan(kind="classification", loss="cross_entropy", reasons={}) for _ in range(2))
    assert a.class_values == [] and a.class_values is not b.class_values  # a default list is each model's own
    assert a.class_values is not b.class_values
