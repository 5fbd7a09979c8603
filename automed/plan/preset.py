"""Planner presets (``planners/*.yaml``): every constant the planner uses, validated on load."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from automed.config import Strict, data_dir, load_yaml_model
from automed.errors import ConfigError
from automed.registry import did_you_mean
from automed.runtime.sliding import Mirrors

PRESET_SCHEMA_VERSION = 1


PRESETS_DIR = data_dir("planners")


class MemoryModel(Strict):
    target_gb: float = Field(8.0, gt=0)
    device: Literal["cuda", "cpu"] = "cuda"
    bytes_per_element_cuda: float = Field(7.14, gt=0)
    bytes_per_element_cpu: float = Field(14.3, gt=0)
    bytes_per_parameter: float = Field(16.0, gt=0)
    fixed_overhead_gb: float = Field(0.0, ge=0)


# the network architectures automed.train.networks registers (named here without torch, for the planner's check)
ARCHITECTURES = ("resenc_unet", "unet")


class NetworkRules(Strict):
    architecture: str = "unet"
    base_features: int = Field(32, ge=1)
    max_features_3d: int = Field(320, ge=1)
    max_features_2d: int = Field(512, ge=1)
    min_bottleneck_edge: int = Field(4, ge=1)
    convs_per_stage: int = Field(2, ge=1)
    convs_per_stage_decoder: int = Field(2, ge=1)
    max_stages: int = Field(10, ge=2)


class SpacingRules(Strict):
    anisotropy_threshold: float = Field(3.0, gt=1)
    thick_axis_percentile: float = Field(10.0, ge=0, le=100)


class PatchRules(Strict):
    initial_edge_3d: int = Field(256, ge=8)
    initial_edge_2d: int = Field(2048, ge=8)
    round_up_past_median: bool = False


class BatchRules(Strict):
    min_batch_size: int = Field(2, ge=1)
    max_batch_size: int = Field(512, ge=1)
    max_dataset_fraction: float = Field(0.05, gt=0, le=1)


class LowresRules(Strict):
    enabled: bool = True
    coverage_threshold: float = Field(0.25, gt=0, le=1)
    spacing_step: float = Field(1.03, gt=1)
    min_size_reduction: float = Field(2.0, ge=1)


class NormalizationRules(Strict):
    mask_if_relative_size_below: float = Field(0.75, gt=0, le=1)


class ResamplingRules(Strict):
    # the orders the resampler has (nearest, linear, cubic B-spline): 2, 4 and 5 had been taken and recorded in
    # plan.json while order 3 ran
    image_order: Literal[0, 1, 3] = 3
    label_order: int = Field(1, ge=0, le=1)
    separate_z_threshold: float = Field(3.0, gt=1)
    z_order: Literal[0, 1, 3] = 0


class SamplingRules(Strict):
    foreground_oversample: float = Field(0.33, ge=0, le=1)
    class_locations_max: int = Field(10000, ge=1)
    class_locations_min_fraction: float = Field(0.01, ge=0, le=1)
    seed: int = 1234


class BudgetRules(Strict):
    """How a ``--budget`` shapes the training (``--folds auto``): measured on CPU budgets (bench/RESULTS.md)."""

    min_iterations_per_model: int = Field(1500, ge=1)
    fold_counts: list[Annotated[int, Field(ge=1)]] = Field([1, 5], min_length=1)
    screen_configurations: bool = True  # screen the planned configurations on fold 0 when the budget allows
    # when even one model falls short of min_iterations_per_model: halve the network width (base features), each
    # width timed, down to min_base_features, until one does (measured: bench/RESULTS.md, volume regression)
    shrink_width: bool = True
    min_base_features: int = Field(16, ge=1)


class InferenceRules(Strict):
    """How a training's model predicts by default (its validation predicts the same way)."""

    # mirror TTA over all flip combinations (nnU-Net) or the even half (automed.runtime.sliding.mirror_axes_sets)
    mirrors: Mirrors = "all"


class ImageLevelRules(Strict):
    """Classification and regression: one prediction per image from the whole image."""

    max_input_edge_2d: int = Field(
        256, ge=8
    )  # a coarser spacing makes the median image fit (whole image in view)
    max_input_edge_3d: int = Field(128, ge=8)
    max_batch_size: int = Field(64, ge=1)
    max_batch_size_3d: int = Field(8, ge=1)  # a 3D batch costs seconds per step on a CPU: more, smaller steps
    class_weight_ratio: float = Field(
        1.5, ge=1
    )  # weighted cross-entropy when largest/smallest class exceeds this
    regression_loss: Literal["huber", "mse"] = "huber"
    dropout: float = Field(0.2, ge=0, lt=1)
    regression_scale_augmentation: bool = (
        False  # a regression target may be a size: rescaling would change it
    )
    # instance normalization then average pooling removes how much of something an image holds (a volume, a count);
    # batch normalization keeps it (its statistics are over the batch)
    regression_norm: Literal["instance", "batch"] = "batch"


class Preset(Strict):
    """A planner preset. Every field has nnU-Net v2's value as default unless its comment in the YAML says why not."""

    schema_version: int = PRESET_SCHEMA_VERSION
    name: str
    description: str = ""
    planner: Literal["default"] = "default"  # the one planner there is (automed.plan.planner)
    configurations: list[Literal["2d", "3d_fullres", "3d_lowres"]] = Field(
        ["2d", "3d_fullres", "3d_lowres"], min_length=1
    )
    memory: MemoryModel = MemoryModel()
    network: NetworkRules = NetworkRules()
    spacing: SpacingRules = SpacingRules()
    patch: PatchRules = PatchRules()
    batch: BatchRules = BatchRules()
    lowres: LowresRules = LowresRules()
    normalization: NormalizationRules = NormalizationRules()
    resampling: ResamplingRules = ResamplingRules()
    sampling: SamplingRules = SamplingRules()
    budget: BudgetRules = BudgetRules()
    image_level: ImageLevelRules = ImageLevelRules()
    inference: InferenceRules = InferenceRules()


def available_presets(directory: Path = PRESETS_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.yaml"))


def load_preset(name_or_path: str | Path) -> Preset:
    """Load a preset by name (``default``) from ``planners/`` or from a YAML path."""
    p = Path(name_or_path)
    if p.suffix not in (".yaml", ".yml"):
        names = available_presets()
        cand = PRESETS_DIR / f"{p}.yaml"
        if not cand.is_file():
            raise ConfigError.single(
                "--preset",  # what the user typed (the presets' folder is automed's)
                f"the preset must be one of {names} or a YAML path",
                repr(str(p)),
                f"pick a listed preset.{did_you_mean(str(p), names)}",
            )
        p = cand
    preset = load_yaml_model(Preset, p, PRESETS_DIR)
    rules = [
        (len(set(preset.configurations)) == len(preset.configurations), "configurations: each once",
         preset.configurations, "remove the repeated entries"),
        (preset.batch.min_batch_size <= preset.batch.max_batch_size, "batch: min_batch_size <= max_batch_size",
         f"{preset.batch.min_batch_size} > {preset.batch.max_batch_size}", "lower min_batch_size or raise the max"),
        (preset.network.base_features <= min(preset.network.max_features_3d, preset.network.max_features_2d),
         "network: base_features <= max_features_3d and max_features_2d", preset.network.base_features,
         "lower base_features or raise the maxima"),
    ]  # fmt: skip
    for ok, rule, value, fix in rules:
        if not ok:
            raise ConfigError.single(p, rule, value, fix)
    if "3d_lowres" in preset.configurations and "3d_fullres" not in preset.configurations:
        raise ConfigError.single(
            p,
            "configurations: 3d_lowres is planned from 3d_fullres and needs it",
            preset.configurations,
            "add 3d_fullres to configurations",
        )
    if preset.schema_version != PRESET_SCHEMA_VERSION:
        raise ConfigError.single(
            p,
            f"schema_version must be {PRESET_SCHEMA_VERSION}",
            preset.schema_version,
            "update the preset to the current layout (see planners/default.yaml)",
        )
    return preset
