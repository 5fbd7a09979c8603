"""Batch-norm statistics recomputed for the current weights (automed.train.precise_bn)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from automed.train.precise_bn import recompute_batch_norm


def test_statistics_are_the_exact_average_over_the_batches_and_the_model_is_restored() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm3d(2), nn.Conv3d(2, 3, 1), nn.BatchNorm3d(3, momentum=0.3))
    batches = [torch.randn(4, 2, 3, 3, 3) * (i + 1) + i for i in range(3)]
    model.eval()
    assert recompute_batch_norm(model, batches, torch.device("cpu")) == 3
    first = model[0]
    assert isinstance(first, nn.BatchNorm3d) and first.running_mean is not None
    # equal-weight average of the per-batch means (not the 0.1-momentum average that starts at 0)
    expected = torch.stack([b.mean(dim=(0, 2, 3, 4)) for b in batches]).mean(0)
    torch.testing.assert_close(first.running_mean, expected)
    assert first.momentum == 0.1 and model[2].momentum == 0.3  # momenta restored
    assert not model.training  # mode restored
    assert first.num_batches_tracked == 3


def test_a_network_without_batch_norm_is_not_run() -> None:
    model = nn.Sequential(nn.Conv2d(1, 1, 1), nn.InstanceNorm2d(1))
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def never() -> Iterator[torch.Tensor]:
        raise AssertionError("batches were read for a network without batch norm")
        yield torch.zeros(1)

    assert recompute_batch_norm(model, never(), torch.device("cpu")) == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
