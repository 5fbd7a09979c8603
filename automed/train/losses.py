"""Segmentation losses (registry) and the deep-supervision wrapper.

Soft Dice excludes the background, uses a smoothing of 1e-5 and is computed over the whole batch when the plan says
``batch_dice`` (else per sample, then averaged). Deep-supervision weights are 1/2^i from full resolution down, the
lowest resolution gets 0, normalised to sum 1 (nnU-Net's choice).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from automed.registry import Registry

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES: Registry[Callable[[bool], LossFn]] = Registry("loss")


def soft_dice(
    logits: torch.Tensor, target: torch.Tensor, batch_dice: bool, smooth: float = 1e-5
) -> torch.Tensor:
    """1 - mean foreground soft Dice. ``target`` holds class indices ``(B, 1, ...)``."""
    probs = logits.float().softmax(1)
    onehot = torch.zeros_like(probs).scatter_(1, target.long(), 1.0)
    axes = [0, *range(2, probs.ndim)] if batch_dice else list(range(2, probs.ndim))
    inter = (probs * onehot).sum(axes)
    denom = probs.sum(axes) + onehot.sum(axes)
    dice = (2 * inter + smooth) / (denom + smooth).clamp_min(1e-8)
    fg = dice[1:] if batch_dice else dice[:, 1:]
    return 1 - fg.mean()


def _dice_ce(batch_dice: bool) -> LossFn:
    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return soft_dice(logits, target, batch_dice) + F.cross_entropy(logits.float(), target[:, 0].long())

    return loss


def _dice_focal(batch_dice: bool, gamma: float = 2.0) -> LossFn:
    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), 1)
        t = target.long()
        logp_t = logp.gather(1, t)[:, 0]
        focal = (-((1 - logp_t.exp()) ** gamma) * logp_t).mean()
        return soft_dice(logits, target, batch_dice) + focal

    return loss


def _ce(batch_dice: bool) -> LossFn:
    del batch_dice

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target[:, 0].long())

    return loss


LOSSES.add("dice_ce", _dice_ce)
LOSSES.add("dice_focal", _dice_focal)
LOSSES.add("ce", _ce)


def deep_supervision_weights(n: int) -> list[float]:
    w = [1 / 2**i for i in range(n)]
    if n > 1:
        w[-1] = 0.0
    s = sum(w)
    return [x / s for x in w]


def downsample_target(target: torch.Tensor, strides: list[list[int]], n: int) -> list[torch.Tensor]:
    """Targets for each deep-supervision output: nearest downsampling by the cumulative pooling strides."""
    out = [target]
    cum = [1] * (target.ndim - 2)
    for s in strides[1:n]:
        cum = [c * k for c, k in zip(cum, s, strict=True)]
        out.append(target[(slice(None), slice(None), *[slice(None, None, c) for c in cum])])
    return out


class DeepSupervisionLoss:
    def __init__(self, base: LossFn, strides: list[list[int]]) -> None:
        self.base = base
        self.strides = strides

    def __call__(self, outputs: torch.Tensor | list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.base(outputs, target)
        weights = deep_supervision_weights(len(outputs))
        targets = downsample_target(target, self.strides, len(outputs))
        total = outputs[0].new_zeros((), dtype=torch.float32)
        for w, o, t in zip(weights, outputs, targets, strict=True):
            if w > 0:
                total = total + w * self.base(o, t)
        return total


def build_loss(name: str, batch_dice: bool, strides: list[list[int]]) -> DeepSupervisionLoss:
    return DeepSupervisionLoss(LOSSES.get(name)(batch_dice), strides)
