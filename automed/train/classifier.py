"""The image-level network: the plan's encoder (the U-Net's stages, plain or residual), global average pooling,
dropout and a linear head with one output per class (classification) or one value (regression). The encoder
normalizes per image (instance norm) or, where the plan says so (regression), per batch."""

from __future__ import annotations

import torch
from torch import nn

from automed.plan.schema import ConfigurationPlan, NetworkPlan, Plan
from automed.train.config import TrainConfig
from automed.train.networks import NETWORKS, ConvBlock, NormKind, ResEncUNet, ResidualBlock


class EncoderHead(nn.Module):
    """Encoder stages from ``plan.json`` (kernels, strides, features), pooled to one vector per image."""

    def __init__(self, net: NetworkPlan, n_outputs: int, dropout: float, norm: NormKind = "instance") -> None:
        super().__init__()
        dim, f = net.dimension, net.features_per_stage
        residual = net.architecture == "resenc_unet"
        self.encoder = nn.ModuleList()
        cin = net.in_channels
        for i in range(net.n_stages):
            if residual:
                blocks: list[nn.Module] = [
                    ResidualBlock(dim, cin, f[i], net.kernel_sizes[i], net.strides[i], norm)
                ]
                n = ResEncUNet.BLOCKS[min(i, len(ResEncUNet.BLOCKS) - 1)]
                blocks += [
                    ResidualBlock(dim, f[i], f[i], net.kernel_sizes[i], [1] * dim, norm) for _ in range(n - 1)
                ]
                self.encoder.append(nn.Sequential(*blocks))
            else:
                self.encoder.append(
                    ConvBlock(dim, cin, f[i], net.kernel_sizes[i], net.strides[i], net.convs_per_stage, norm)
                )
            cin = f[i]
        self.pool = nn.AdaptiveAvgPool3d(1) if dim == 3 else nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(cin, n_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last encoder stage's feature maps (what attention maps look at)."""
        for block in self.encoder:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(self.features(x)).flatten(1)
        out: torch.Tensor = self.head(self.dropout(pooled))
        return out


def build_classifier(
    net: NetworkPlan, n_outputs: int, dropout: float, norm: NormKind = "instance"
) -> EncoderHead:
    return EncoderHead(net, n_outputs, dropout, norm)


def image_network(plan: Plan, cfg_plan: ConfigurationPlan, config: TrainConfig) -> EncoderHead:
    """The image-level network of a configuration (the training config may name another architecture)."""
    net = cfg_plan.network.model_copy(
        update={"architecture": config.architecture or cfg_plan.network.architecture}
    )
    NETWORKS.get(net.architecture)  # a misspelt name: did-you-mean, never a silent plain encoder
    dropout = plan.target.dropout if plan.target is not None else 0.0
    norm = plan.target.norm if plan.target is not None else "instance"
    return build_classifier(net, net.n_classes, dropout, norm)
