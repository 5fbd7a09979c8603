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
from torchio.transforms.augmentation.random_transform import RandomTransform

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
        # each channel its own factor and statistics, as nnU-Net's (synchronize_channels=False): one mean and range
        # over channels of different scales had flattened the smaller one
        for image in self.get_images(subject):
            data = image.data.float()
            channels = [self._apply(c, float(torch.empty(1).uniform_(*self.value_range))) for c in data]
            image.set_data(torch.stack(channels))
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


class RandomRotateScale(RandomTransform, tio.SpatialTransform):
    """nnU-Net's spatial transform: a rotation (probability ``rotation_p``, angles drawn per rotation axis from
    ``degrees``, torchio's ``(min1, max1, min2, max2, min3, max3)``) and an isotropic scaling (probability
    ``scale_p``, one factor from ``scale_range`` for the ``scaled`` axes), drawn independently and done in one
    resampling (torchio's RandomAffine drew them together: both in 36 % of patches for 0.2 each; and its isotropic
    scale zoomed the thick axis of a pseudo-2D patch, pulling padded slices in)."""

    def __init__(
        self,
        degrees: tuple[float, float, float, float, float, float],
        rotation_p: float,
        scale_range: tuple[float, float],
        scale_p: float,
        scaled: tuple[int, ...],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.degrees, self.rotation_p = degrees, rotation_p
        self.scale_range, self.scale_p, self.scaled = scale_range, scale_p, scaled
        self.args_names = ["degrees", "rotation_p", "scale_range", "scale_p", "scaled"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        rotate = float(torch.rand(1)) < self.rotation_p
        scale = float(torch.rand(1)) < self.scale_p
        if not (rotate or scale):
            return subject
        angles = [float(torch.empty(1).uniform_(lo, hi)) if rotate else 0.0
                  for lo, hi in zip(self.degrees[::2], self.degrees[1::2], strict=True)]  # fmt: skip
        s = float(torch.empty(1).uniform_(*self.scale_range)) if scale else 1.0
        scales = [s if ax in self.scaled else 1.0 for ax in range(3)]
        base: dict[str, Any] = self._get_base_args()
        affine = tio.Affine(
            scales=(scales[0], scales[1], scales[2]), degrees=(angles[0], angles[1], angles[2]),
            translation=(0.0, 0.0, 0.0), default_pad_value=0.0, **base,
        )  # fmt: skip
        out = affine(subject)
        assert isinstance(out, tio.Subject)
        return out


def rotation_range(aug: Augmentation, patch: list[int], dummy_2d: bool) -> float:
    """The largest rotation in degrees: nnU-Net's, 180 in-plane for 2D and pseudo-2D patches (15 for a 2D patch
    more than 1.5x as long as wide, whose rotated corners would leave the crop) and ``rotation_degrees`` in 3D."""
    if aug.rotation_p == 0:
        return 0.0
    if len(patch) == 2:
        return 15.0 if max(patch) / min(patch) > 1.5 else 180.0
    return 180.0 if dummy_2d else aug.rotation_degrees


def build_augmentation(
    aug: Augmentation, spacing: list[float], dummy_2d: bool, is_2d: bool, patch: list[int] | None = None
) -> tio.Compose:
    """Compose the training augmentation for patches of a configuration with ``spacing`` (patch axis order) and
    ``patch`` (the network's, which sets a 2D patch's rotation; a square one when not given)."""
    transforms: list[tio.Transform] = []
    if aug.rotation_p > 0 or aug.scale_p > 0:
        d = rotation_range(aug, patch or ([1, 1] if is_2d else [1, 1, 1]), dummy_2d)
        # a 2D patch is (y, x, 1) to torchio: it turns about its third axis; pseudo-2D about the thick first one
        degrees: tuple[float, float, float, float, float, float] = (
            (0, 0, 0, 0, -d, d) if is_2d else (-d, d, 0, 0, 0, 0) if dummy_2d else (-d, d, -d, d, -d, d)
        )
        scaled = (0, 1) if is_2d else (1, 2) if dummy_2d else (0, 1, 2)
        transforms.append(RandomRotateScale(degrees, aug.rotation_p, aug.scale_range, aug.scale_p, scaled))
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


MAX_ENLARGEMENT = 1.6  # per axis: a larger crop costs more resampling than its corners are worth


def _rotated(a: float, b: float, theta: float) -> float:
    """Extent along ``a``'s axis of an ``a`` x ``b`` rectangle turned by up to ``theta`` radians."""
    return math.hypot(a, b) if theta >= math.atan2(b, a) else a * math.cos(theta) + b * math.sin(theta)


def enlarged_patch(patch: list[int], aug: Augmentation, dummy_2d: bool, is_2d: bool) -> list[int]:
    """Crop size before spatial augmentation, so rotated or zoomed-out corners hold real data: the bounding box of
    the patch turned by the largest rotation about each rotation axis in turn (nnU-Net's rule), over the smallest
    scale (a zoom-out shows more around it; the range's upper end had been used), at most
    :data:`MAX_ENLARGEMENT` per axis; a pseudo-2D patch's thick axis is not enlarged."""
    if aug.rotation_p == 0 and aug.scale_p == 0:
        return list(patch)
    theta = math.radians(min(rotation_range(aug, patch, dummy_2d), 90.0))
    ext = [float(p) for p in patch]
    planes = [(0, 1)] if is_2d else [(1, 2)] if dummy_2d else [(1, 2), (0, 2), (0, 1)]
    for i, j in planes if theta > 0 else []:
        ext[i], ext[j] = _rotated(ext[i], ext[j], theta), _rotated(ext[j], ext[i], theta)
    zoom = 1.0 / min(1.0, aug.scale_range[0]) if aug.scale_p > 0 else 1.0
    out = []
    for ax, (p, e) in enumerate(zip(patch, ext, strict=True)):
        kept = dummy_2d and ax == 0
        out.append(p if kept else math.ceil(p * min(e * zoom / p, MAX_ENLARGEMENT) - 1e-9))
    return out


def center_crop(x: np.ndarray, size: list[int]) -> np.ndarray:
    """Centre crop the last ``len(size)`` axes of ``x`` to ``size``."""
    sl = [slice(None)] * (x.ndim - len(size))
    for s, n in zip(x.shape[-len(size) :], size, strict=True):
        a = (s - n) // 2
        sl.append(slice(a, a + n))
    return x[tuple(sl)]
