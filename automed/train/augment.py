"""Training augmentation built from torchio transforms, with probabilities from :class:`Augmentation`.

torchio lacks nnU-Net's multiplicative brightness, range-preserving contrast and stats-retaining gamma, so those three
are small :class:`torchio.IntensityTransform` subclasses here. All callables are module-level (picklable), as
torchio's workers require.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torchio as tio

from automed.train.config import Augmentation


class _RandomIntensity(tio.IntensityTransform):
    """Base: apply ``_apply(tensor, rng_value)`` to every scalar image with probability ``p`` (set by torchio)."""

    def __init__(self, value_range: tuple[float, float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.value_range = value_range
        self.args_names = ["value_range"]

    def _apply(self, x: torch.Tensor, v: float) -> torch.Tensor:
        raise NotImplementedError

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        for image in self.get_images(subject):
            v = float(torch.empty(1).uniform_(*self.value_range))
            image.set_data(self._apply(image.data.float(), v))
        return subject


class RandomBrightness(_RandomIntensity):
    """Multiply intensities by a factor drawn from ``value_range``."""

    def _apply(self, x: torch.Tensor, v: float) -> torch.Tensor:
        return x * v


class RandomContrast(_RandomIntensity):
    """Scale intensities around their mean by a factor, then clip to the original range (range preserved)."""

    def _apply(self, x: torch.Tensor, v: float) -> torch.Tensor:
        lo, hi = x.min(), x.max()
        m = x.mean()
        return ((x - m) * v + m).clamp(lo, hi)


class RandomGammaRetainStats(_RandomIntensity):
    """Gamma on intensities rescaled to [0, 1], then mean and std restored (nnU-Net's variant)."""

    def _apply(self, x: torch.Tensor, v: float) -> torch.Tensor:
        m, s = x.mean(), x.std()
        lo, hi = x.min(), x.max()
        y = ((x - lo) / (hi - lo + 1e-7)).pow(v) * (hi - lo + 1e-7) + lo
        return (y - y.mean()) / (y.std() + 1e-7) * s + m


def build_augmentation(aug: Augmentation, spacing: list[float], dummy_2d: bool, is_2d: bool) -> tio.Compose:
    """Compose the training augmentation for patches of a configuration with ``spacing`` (patch axis order)."""
    transforms: list[tio.Transform] = []
    p_affine = 1 - (1 - aug.rotation_p) * (1 - aug.scale_p)
    if p_affine > 0:
        d = aug.rotation_degrees
        if is_2d or dummy_2d:
            degrees: tuple[float, float, float, float, float, float] = (
                (-180, 180, 0, 0, 0, 0) if dummy_2d else (0, 0, 0, 0, -180, 180)
            )
        else:
            degrees = (-d, d, -d, d, -d, d)
        if (
            aug.rotation_p == 0
        ):  # one affine does both: a switched-off part must not ride along with the other
            degrees = (0, 0, 0, 0, 0, 0)
        scales = aug.scale_range if aug.scale_p > 0 else (1.0, 1.0)
        transforms.append(
            tio.RandomAffine(
                scales=scales, degrees=degrees, isotropic=True, default_pad_value=0.0, p=p_affine
            )
        )
    if aug.flip_p > 0:
        axes = (0, 1) if is_2d else (0, 1, 2)
        transforms.append(tio.RandomFlip(axes=axes, flip_probability=aug.flip_p))
    if aug.noise_p > 0:
        transforms.append(tio.RandomNoise(std=(0, aug.noise_std), p=aug.noise_p))
    if aug.blur_p > 0:
        mm = min(spacing)
        transforms.append(tio.RandomBlur(std=(aug.blur_sigma[0] * mm, aug.blur_sigma[1] * mm), p=aug.blur_p))
    if aug.brightness_p > 0:
        transforms.append(RandomBrightness(aug.brightness_range, p=aug.brightness_p))
    if aug.contrast_p > 0:
        transforms.append(RandomContrast(aug.contrast_range, p=aug.contrast_p))
    if aug.lowres_p > 0:
        axes = (0, 1) if is_2d else (0, 1, 2)
        transforms.append(
            tio.RandomAnisotropy(axes=axes, downsampling=(1.0, 1.0 / aug.lowres_zoom[0]), p=aug.lowres_p)
        )
    if aug.gamma_p > 0:
        transforms.append(RandomGammaRetainStats(aug.gamma_range, p=aug.gamma_p))
    return tio.Compose(transforms)


def enlarged_patch(patch: list[int], aug: Augmentation, dummy_2d: bool, is_2d: bool) -> list[int]:
    """Crop size before spatial augmentation, so rotated or zoomed-out corners hold real data."""
    if aug.rotation_p == 0 and aug.scale_p == 0:
        return list(patch)
    f = math.sqrt(2) * max(1.0, aug.scale_range[1] if aug.scale_range[1] > 1 else 1.0) / 1.0
    f = min(f, 1.6)
    out = []
    for ax, p in enumerate(patch):
        rotated = not (dummy_2d and ax == 0)
        out.append(math.ceil(p * f) if rotated else p)
    return out


def center_crop(x: np.ndarray, size: list[int]) -> np.ndarray:
    """Centre crop the last ``len(size)`` axes of ``x`` to ``size``."""
    sl = [slice(None)] * (x.ndim - len(size))
    for s, n in zip(x.shape[-len(size) :], size, strict=True):
        a = (s - n) // 2
        sl.append(slice(a, a + n))
    return x[tuple(sl)]
