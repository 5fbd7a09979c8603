"""The frozen trial configuration of a training run: every knob is a field, never a subclass.

A :class:`TrainConfig` is sampled (or defaulted), then frozen and logged verbatim; ``train_fold(config, fold)`` is
a deterministic function of it. YAML files passed to ``automed train --config`` are validated on load (unknown keys
rejected with a did-you-mean).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, PositiveInt, ValidationInfo, field_validator

from automed.artifacts import content_hash
from automed.config import Strict, load_yaml_model

SEED_MAX = 2**63 - 1


def _ordered(v: tuple[float, float]) -> tuple[float, float]:
    if not v[0] <= v[1]:
        raise ValueError(f"a range is (low, high) with low <= high, got {list(v)}")
    return v


# a (low, high) range of positive finite numbers, low <= high (a zoom or sigma of 0 divides by zero; a reversed
# range is a typo)
Range = Annotated[
    tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]], AfterValidator(_ordered)
]


class Augmentation(Strict):
    """Probabilities and ranges of the torchio augmentations (nnU-Net v2's values by default).

    Rotation and scaling are drawn independently (``rotation_p``, ``scale_p``) and done in one resampling, as
    nnU-Net's spatial transform; 2D and pseudo-2D patches turn and scale in-plane, by up to 180 degrees (15 for a 2D
    patch over 1.5x as long as wide), whatever ``rotation_degrees`` says."""

    rotation_p: float = Field(0.2, ge=0, le=1)
    rotation_degrees: float = Field(30.0, ge=0, le=180)
    scale_p: float = Field(0.2, ge=0, le=1)
    scale_range: Range = (0.7, 1.4)
    flip_p: float = Field(0.5, ge=0, le=1)
    noise_p: float = Field(0.1, ge=0, le=1)
    noise_std: float = Field(0.3, ge=0)
    blur_p: float = Field(0.2, ge=0, le=1)
    blur_sigma: Range = (0.5, 1.0)
    brightness_p: float = Field(0.15, ge=0, le=1)
    brightness_range: Range = (0.75, 1.25)
    contrast_p: float = Field(0.15, ge=0, le=1)
    contrast_range: Range = (0.75, 1.25)
    lowres_p: float = Field(0.25, ge=0, le=1)
    lowres_zoom: Range = (0.5, 1.0)
    gamma_p: float = Field(0.3, ge=0, le=1)
    gamma_range: Range = (0.7, 1.5)


class TrainConfig(Strict):
    """Everything that decides how one fold trains. Defaults follow nnU-Net v2 unless noted."""

    schema_version: Literal[1] = 1
    configuration: str = "3d_fullres"
    architecture: str | None = None  # None: the plan's; else a registered network name (e.g. "resenc_unet")
    base_features: int | None = Field(
        None, ge=4, le=128
    )  # None: the plan's width (features of the first stage)
    n_stages: int | None = Field(None, ge=2, le=8)  # None: the plan's depth; at most the plan's
    normalization: Literal["zscore", "rescale_0_1", "none"] | None = None  # None: the plan's, per channel
    loss: Literal["dice_ce", "dice_focal", "ce"] = "dice_ce"
    deep_supervision: bool = True
    optimizer: Literal["auto", "sgd", "adam", "adamw"] = "auto"  # auto: see resolve_optimizer
    learning_rate: float | None = Field(None, gt=0)  # None: 1e-2 for SGD, 3e-3 for Adam/AdamW
    weight_decay: float = Field(3e-5, ge=0)
    momentum: float = Field(0.99, ge=0, lt=1)
    nesterov: bool = Field(True, validate_default=True)  # (checked against momentum even when not given)
    schedule: Literal["poly", "cosine", "constant"] = "poly"
    poly_exponent: float = Field(0.9, gt=0)
    grad_clip: float = Field(12.0, gt=0)
    epochs: int = Field(1000, ge=1)
    iterations_per_epoch: int = Field(250, ge=1)
    val_iterations: int = Field(50, ge=1)
    batch_size: int | None = Field(None, ge=1)  # None: the plan's
    patch_size: list[PositiveInt] | None = (
        None  # None: the plan's; must be divisible by the network's pooling
    )
    foreground_oversample: float | None = Field(None, ge=0, le=1)  # None: the plan's
    augmentation: Augmentation = Augmentation()
    ema_decay: float = Field(0.9, ge=0, lt=1)
    early_stopping_patience: int = Field(50, ge=0)  # epochs without EMA improvement; 0 disables
    amp: bool = True  # fp16 autocast on CUDA, bf16 on CPUs with native bf16 (about 2x faster there)
    num_workers: int | None = Field(None, ge=0)  # None: chosen from the CPU count
    seed: int = Field(0, ge=0, le=SEED_MAX)  # numpy and torch take seeds of 0..2**63-1 (-1 crashed a fold)
    # torch's deterministic algorithms and no cuDNN autotuning: repeatable CUDA folds, slower (CPU is repeatable anyway)
    deterministic: bool = False
    extend_lr_factor: float = Field(0.1, gt=0, le=1)
    # attention maps (medcam) of a few validation cases, by the fold that held each out, logged to MLflow
    explain: bool = False
    explain_backend: Literal["gcam", "gcampp", "gbp", "ggcam"] = "gcam"

    @field_validator("nesterov")
    @classmethod
    def _nesterov_needs_momentum(cls, nesterov: bool, info: ValidationInfo) -> bool:
        """torch's SGD refuses Nesterov momentum without momentum: ``momentum: 0`` alone had passed the config
        and crashed every SGD fold (``optimizer: auto`` picks SGD for long schedules) after planning."""
        if nesterov and info.data.get("momentum") == 0:
            raise ValueError("Nesterov momentum needs a momentum above 0 (momentum: 0); set nesterov: false")
        return nesterov

    def digest(self) -> str:
        return content_hash(self.model_dump(mode="json"))

    def mirror_tta(self, asked: bool) -> bool:
        """Mirror TTA only for a network trained on mirrored images (``augmentation.flip_p`` > 0): averaging flips
        it never saw would mix in predictions of another model (left and right swapped, for lateral structures)."""
        return asked and self.augmentation.flip_p > 0


# Below this many planned iterations, "auto" picks AdamW instead of nnU-Net's SGD (see resolve_optimizer).
SHORT_TRAINING_ITERATIONS = 10_000
DEFAULT_LR = {"sgd": 1e-2, "adam": 3e-3, "adamw": 3e-3}


def resolve_optimizer(config: TrainConfig, iterations: int) -> tuple[str, float, str]:
    """The optimizer and initial learning rate a fold trains with, given the iterations its schedule lays out
    (``epochs x iterations_per_epoch``, or what a ``--budget`` fits), and why, in words.

    ``auto`` keeps nnU-Net's SGD-Nesterov (momentum 0.99, lr 1e-2, poly) for long schedules: it is tuned for 250,000
    iterations. Under :data:`SHORT_TRAINING_ITERATIONS` it picks AdamW (lr 3e-3): measured on CPU budgets, SGD with
    momentum 0.99 has barely left its start after a few hundred iterations (hippocampus fold-0 Dice 0.04 vs AdamW
    0.81 at about 150 s), and at about 2,700 iterations AdamW still validated better (bench/RESULTS.md).
    """
    if config.optimizer != "auto":
        name, why = config.optimizer, "set in the config"
    elif iterations < SHORT_TRAINING_ITERATIONS:
        name = "adamw"
        why = f"auto: {iterations} planned iterations < {SHORT_TRAINING_ITERATIONS} (short schedule)"
    else:
        name = "sgd"
        why = f"auto: {iterations} planned iterations >= {SHORT_TRAINING_ITERATIONS}"
    lr = config.learning_rate if config.learning_rate is not None else DEFAULT_LR[name]
    return name, lr, why


def load_train_config(path: str | Path) -> TrainConfig:
    return load_yaml_model(TrainConfig, Path(path))
