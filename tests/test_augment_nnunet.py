"""Augmentation as nnU-Net's (review findings, each failing before): a pseudo-2D patch is scaled in-plane only (its
thick axis was zoomed with the rest, pulling whole padded slices in); rotation and scaling are drawn independently
(one affine had done both in 36 % of patches for 0.2 each); a 2D patch over 1.5x as long as wide turns by 15 degrees,
not 180; the crop is enlarged for the smallest scale (a zoom-out); each channel has its own intensity factor and
statistics; and a loader without workers leaves the training's random draws (dropout) as a loader with workers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torchio as tio

from automed.train import augment
from automed.train.augment import (
    RandomContrast,
    build_augmentation,
    enlarged_patch,
    rotation_range,
)
from automed.train.config import Augmentation
from automed.train.data import augment_pair

OFF = {"flip_p": 0.0, "noise_p": 0.0, "blur_p": 0.0, "brightness_p": 0.0, "contrast_p": 0.0, "lowres_p": 0.0,
       "gamma_p": 0.0}  # fmt: skip


def test_a_pseudo_2d_patch_is_scaled_in_plane_only() -> None:
    """Every voxel labelled 1 and a zoom-out of 0.7 every time: no slice of the patch becomes padding."""
    aug = Augmentation(rotation_p=0.0, scale_p=1.0, scale_range=(0.7, 0.7), **OFF)
    patch = [6, 32, 32]
    crop = enlarged_patch(patch, aug, dummy_2d=True, is_2d=False)
    assert crop[0] == 6 and crop[1] >= 32 / 0.7
    transform = build_augmentation(aug, [4.0, 1.0, 1.0], True, False, patch)
    torch.manual_seed(0)
    data, seg = np.ones([1, *crop], np.float32), np.ones(crop, np.int64)
    _, out, _ = augment_pair(transform, data, seg, [4.0, 1.0, 1.0], False)
    inner = augment.center_crop(out, patch)
    assert inner.reshape(6, -1).all(axis=1).all()  # every slice full (the thick axis had been zoomed out too)


def test_rotation_and_scaling_are_drawn_independently(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[tuple[float, ...], tuple[float, ...]]] = []

    class Recorder:
        def __init__(self, scales: tuple[float, ...], degrees: tuple[float, ...], **kw: Any) -> None:
            seen.append((scales, degrees))

        def __call__(self, subject: tio.Subject) -> tio.Subject:
            return subject

    monkeypatch.setattr(augment.tio, "Affine", Recorder)
    transform = build_augmentation(Augmentation(**OFF), [1.0, 1.0, 1.0], False, False, [8, 8, 8])
    subject = tio.Subject(image=tio.ScalarImage(tensor=torch.zeros(1, 4, 4, 4)))
    torch.manual_seed(0)
    n = 4000
    for _ in range(n):
        transform(subject)
    rotated = sum(any(d != 0 for d in degrees) for _, degrees in seen) / n
    scaled = sum(any(s != 1 for s in scales) for scales, _ in seen) / n
    both = sum(any(d != 0 for d in degrees) and any(s != 1 for s in scales) for scales, degrees in seen) / n
    assert 0.17 < rotated < 0.23 and 0.17 < scaled < 0.23 and 0.02 < both < 0.06  # 0.2, 0.2, 0.04
    assert all(len(set(scales)) == 1 for scales, _ in seen)  # isotropic in 3D


def test_a_long_2d_patch_turns_by_15_degrees() -> None:
    aug = Augmentation()
    assert rotation_range(aug, [160, 64], False) == 15.0
    assert rotation_range(aug, [48, 32], False) == 180.0  # 1.5x: still 180, as nnU-Net's "> 1.5"
    assert (
        rotation_range(aug, [8, 64, 64], True) == 180.0 and rotation_range(aug, [32, 48, 32], False) == 30.0
    )
    assert rotation_range(Augmentation(rotation_p=0.0), [160, 64], False) == 0.0


def test_the_crop_is_enlarged_for_the_smallest_scale() -> None:
    """No rotation, scale down to 0.7: the crop is 1/0.7 of the patch (the upper end, 1.4, had been used)."""
    aug = Augmentation(rotation_p=0.0, scale_range=(0.7, 1.4))
    assert enlarged_patch([32, 32, 32], aug, False, False) == [46, 46, 46]
    only_up = Augmentation(rotation_p=0.0, scale_range=(1.0, 1.4))
    assert enlarged_patch([32, 32, 32], only_up, False, False) == [32, 32, 32]
    assert enlarged_patch([32, 48, 32], Augmentation(), False, False) == [52, 77, 52]  # at most 1.6x per axis
    # a long 2D patch turned by up to 15 degrees: its short axis needs the long one's sine, the long axis little
    long = enlarged_patch([160, 64], Augmentation(scale_p=0.0), False, True)
    assert long == [int(np.ceil(160 * np.cos(np.radians(15)) + 64 * np.sin(np.radians(15)))), 103]


def test_each_channel_gets_its_own_contrast() -> None:
    rng = np.random.default_rng(0)
    data = np.stack([rng.normal(0, 1, (8, 8, 8)), rng.normal(500, 50, (8, 8, 8))]).astype(np.float32)
    subject = tio.Subject(image=tio.ScalarImage(tensor=torch.from_numpy(data)))
    out = RandomContrast((1.25, 1.25), p=1.0)(subject)
    got = out["image"].data.numpy()
    assert (
        got[0].std() > 1.1 * data[0].std()
    )  # a joint mean and range over both channels had made it constant
    assert np.isclose(got[1].mean(), data[1].mean(), rtol=1e-3)


def test_a_loader_without_workers_leaves_the_training_generator_alone(tmp_path: Any) -> None:
    """Batches drawn in the training process (0 workers) had reseeded torch's generator each batch, so dropout drew
    other masks than with loader processes: the same seed trained other weights on a 1-CPU machine."""
    from automed.train.data import BatchStream, CaseStore, SamplerSpec, make_loader

    seg = np.zeros((8, 12, 12), np.int16)
    seg[4, 6, 6] = 1
    data = np.random.default_rng(0).normal(size=(1, 8, 12, 12)).astype(np.float32)
    np.savez_compressed(tmp_path / "a.npz", data=data, seg=seg, loc_1=np.argwhere(seg == 1).astype(np.int32))
    spec = SamplerSpec([4, 8, 8], 2, 0.5, 2, [1.0, 1.0, 1.0], Augmentation())
    stream = BatchStream(CaseStore(tmp_path, ["a"]), ["a"], spec, 3, (1, 2, 3))
    states, drawn = [], []
    for workers in (0, 1):
        torch.manual_seed(42)
        drawn.append(list(make_loader(stream, workers)))
        states.append(torch.get_rng_state())
    assert torch.equal(states[0], states[1])  # (the loader itself draws its base seed either way)
    assert all(
        torch.equal(a[0], b[0]) for a, b in zip(*drawn, strict=True)
    )  # batches: a function of their seed
