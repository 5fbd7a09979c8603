"""``plan.json``: schema (version 1). Per-axis values of a configuration are in network axis order, i.e. array
order ``(z, y, x)`` after ``transpose_forward``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from automed.artifacts import check_schema_version, content_hash, read_json, write_json_atomic
from automed.config import Strict

SCHEMA_VERSION = 1


class NetworkPlan(Strict):
    architecture: str
    dimension: Literal[2, 3]
    in_channels: int
    n_classes: int
    n_stages: int
    features_per_stage: list[int]
    kernel_sizes: list[list[int]]
    strides: list[list[int]]
    convs_per_stage: int
    convs_per_stage_decoder: int
    deep_supervision: bool = True
    # the preset's cap on features per stage, which a wider base_features of a training config or search space
    # respects too; a decision of the preset (hashed in preset_hash), so not hashed again. None: a plan written
    # before it was recorded (the default presets' caps apply)
    max_features: int | None = None

    @property
    def divisor(self) -> list[int]:
        """What every input edge must be divisible by: 2 ** (number of stride-2 stages) per axis."""
        return [2 ** sum(1 for s in self.strides if s[ax] == 2) for ax in range(self.dimension)]


class ChannelNormalization(Strict):
    channel: int
    scheme: Literal["ct", "zscore", "none", "rescale_0_1", "rgb_0_1"]
    use_nonzero_mask: bool
    clip_low: float | None = None
    clip_high: float | None = None
    mean: float | None = None
    std: float | None = None
    reason: str


class ResamplingPlan(Strict):
    image_order: int
    label_order: int
    separate_z_threshold: float
    z_order: int
    reason: str


class MemoryEstimate(Strict):
    device: Literal["cuda", "cpu"]
    target_gb: float
    estimate_gb: float
    per_sample_gb: float
    fixed_gb: float
    feature_map_elements: int
    parameters: int
    bytes_per_element: float
    calibrated: bool = False


class ClassLocations(Strict):
    """Foreground voxels stored per class for oversampling: up to ``max_per_class``, at least ``min_fraction``."""

    max_per_class: int
    min_fraction: float
    seed: int


class ConfigurationPlan(Strict):
    name: str
    data_identifier: str
    spacing: list[float]
    median_shape: list[int]
    patch_size: list[int]
    batch_size: int
    batch_dice: bool
    network: NetworkPlan
    normalization: list[ChannelNormalization]
    resampling: ResamplingPlan
    foreground_oversample: float
    class_locations: ClassLocations
    memory: MemoryEstimate
    previous_stage: str | None = None
    next_stage: str | None = None
    reasons: dict[str, str]


class TargetPlan(Strict):
    """What an image-level task predicts: class names and counts (classification) or the target's standardization
    (regression), and the loss chosen for it."""

    kind: Literal["classification", "regression"]
    class_values: list[float] = Field(default_factory=list)  # ValueToPredict of each class, by class index
    class_names: list[str] = Field(default_factory=list)
    class_counts: list[int] = Field(default_factory=list)
    class_weights: list[float] | None = None  # cross-entropy weights (None: unweighted)
    mean: float = 0.0  # regression: the network predicts (value - mean) / std
    std: float = 1.0
    loss: Literal["cross_entropy", "huber", "mse"]
    dropout: float = 0.2  # before the network's linear head
    scale_augmentation: bool = True  # False: training never rescales images (the target may be a size)
    norm: Literal["instance", "batch"] = "instance"  # normalization layers of the image-level encoder
    reasons: dict[str, str]

    def index_of(self, value: float) -> int:
        """The class index of a ValueToPredict."""
        return self.class_values.index(float(value))


class Calibration(Strict):
    device: str
    patch_size: list[int]
    measured_gb: dict[str, float]
    estimated_per_sample_gb: float
    measured_per_sample_gb: float
    measured_fixed_gb: float
    factor: float
    note: str


class Plan(Strict):
    schema_version: int = SCHEMA_VERSION
    automed_version: str
    dataset_name: str
    fingerprint_hash: str
    preset_name: str
    preset_hash: str
    task_type: str
    labels: dict[str, str]
    n_channels: int
    original_median_spacing: list[float]
    transpose_forward: list[int]
    transpose_backward: list[int]
    configurations: dict[str, ConfigurationPlan]
    reasons: dict[str, str]
    calibration: Calibration | None = None
    target: TargetPlan | None = None  # classification and regression only
    # the data's: 3 for volumes, 2 for pictures and single slices, whatever the networks planned (a 2d-only preset
    # on volumes); derived from the fingerprint (hashed in fingerprint_hash), so not hashed again. None: a plan
    # written before it was recorded
    data_dimension: Literal[2, 3] | None = None
    hash: str = ""

    def compute_hash(self) -> str:
        recorded = {"configurations": {"__all__": {"network": {"max_features"}}}}  # derived, see above
        return content_hash(
            self.model_dump(
                mode="json",
                exclude={"hash": True, "automed_version": True, "data_dimension": True, **recorded},
            )
        )

    def with_hash(self) -> Plan:
        return self.model_copy(update={"hash": self.compute_hash()})

    @property
    def image_dimension(self) -> int:
        """3 for a dataset of volumes, 2 for pictures and single slices (a plan without ``data_dimension``: 3 when a
        3D configuration was planned)."""
        if self.data_dimension is not None:
            return self.data_dimension
        return 3 if any(c.network.dimension == 3 for c in self.configurations.values()) else 2

    def configuration_hash(self, name: str) -> str:
        """Hash of what preprocessing of one configuration depends on."""
        c = self.configurations[name]
        return content_hash(
            {
                "fingerprint": self.fingerprint_hash,
                "transpose": self.transpose_forward,
                "spacing": c.spacing,
                "normalization": [n.model_dump(mode="json", exclude={"reason"}) for n in c.normalization],
                "resampling": c.resampling.model_dump(mode="json", exclude={"reason"}),
                "dimension": c.network.dimension,
                "class_locations": c.class_locations.model_dump(mode="json"),
            }
        )

    def save(self, path: Path) -> None:
        write_json_atomic(path, self.model_dump(mode="json"))

    @classmethod
    def load(cls, path: Path) -> Plan:
        data = read_json(path, what="plan.json")
        check_schema_version(path, data, SCHEMA_VERSION, what="plan.json")
        return cls.model_validate(data)
