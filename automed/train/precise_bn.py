"""Batch-norm statistics recomputed for the current weights ("precise BN").

A batch-normalized network predicts with running means and variances that an exponential average collected while
the weights were still moving: after a short schedule (a few dozen steps, a budget of minutes) they lag the weights
and predictions drift by whole standard deviations. Before each validation the trainer resets them and averages
them (cumulatively, every batch the same weight) over forward passes of un-augmented training batches with the
current weights, so validation, checkpoints and prediction see the statistics of the model they hold. Networks
without batch norm (every segmentation and classification network automed builds) are left untouched.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def batch_norm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BN)]


def recompute_batch_norm(model: nn.Module, batches: Iterable[torch.Tensor], device: torch.device) -> int:
    """Reset the batch-norm statistics and average them over ``batches``; returns the number of batches used.

    The model's training/eval mode and each layer's momentum are restored. With no batch-norm layer, nothing is
    run and 0 is returned.
    """
    layers = batch_norm_layers(model)
    if not layers:
        return 0
    was_training = model.training
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch counts the same
    model.train()
    n = 0
    try:
        with torch.no_grad():
            for x in batches:
                model(x.to(device))
                n += 1
    finally:
        for m, momentum in zip(layers, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)
    return n
