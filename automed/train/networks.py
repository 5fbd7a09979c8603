"""Networks built from a plan's topology: a plain dynamic U-Net in 2D or 3D.

conv -> InstanceNorm(affine) -> LeakyReLU blocks, strided-conv downsampling, transposed-conv upsampling and a 1x1
segmentation head per decoder stage (deep supervision). Blocks take ``norm_kind="batch"`` for the image-level
encoder of a regression plan (see :mod:`automed.train.classifier`).
"""

from __future__ import annotations

from typing import Literal, Protocol

import torch
from torch import nn

from automed.plan.schema import ConfigurationPlan, NetworkPlan
from automed.registry import Registry
from automed.train.config import TrainConfig


class Network(Protocol):
    """What a registered architecture is: built from the plan's network topology into a torch module."""

    def __call__(self, net: NetworkPlan) -> nn.Module: ...


NETWORKS: Registry[Network] = Registry("network architecture")
NormKind = Literal["instance", "batch"]  # per image (segmentation, classification) or per batch (regression)


def _ops(dim: int, norm: NormKind = "instance") -> tuple[type[nn.Module], type[nn.Module], type[nn.Module]]:
    """Convolution, normalization (``instance``, or ``batch`` for image-level regression) and up-convolution."""
    if dim == 3:
        return nn.Conv3d, nn.BatchNorm3d if norm == "batch" else nn.InstanceNorm3d, nn.ConvTranspose3d
    return nn.Conv2d, nn.BatchNorm2d if norm == "batch" else nn.InstanceNorm2d, nn.ConvTranspose2d


class ConvBlock(nn.Sequential):
    def __init__(
        self,
        dim: int,
        cin: int,
        cout: int,
        kernel: list[int],
        stride: list[int],
        n: int,
        norm_kind: NormKind = "instance",
    ) -> None:
        conv, norm, _ = _ops(dim, norm_kind)
        layers: list[nn.Module] = []
        for i in range(n):
            layers += [
                conv(
                    cin if i == 0 else cout,
                    cout,
                    kernel_size=kernel,
                    stride=stride if i == 0 else 1,
                    padding=[k // 2 for k in kernel],
                ),
                norm(cout, eps=1e-5, affine=True),
                nn.LeakyReLU(0.01, inplace=True),
            ]
        super().__init__(*layers)


class PlainUNet(nn.Module):
    """U-Net whose stages, kernels and strides come from ``plan.json``.

    ``forward`` returns the full-resolution logits, or with ``deep_supervision`` a list of logits from full to
    lowest decoder resolution.
    """

    def __init__(self, net: NetworkPlan) -> None:
        super().__init__()
        dim, f = net.dimension, net.features_per_stage
        conv, _, tconv = _ops(dim)
        self.deep_supervision = net.deep_supervision
        self.encoder = nn.ModuleList()
        cin = net.in_channels
        for i in range(net.n_stages):
            self.encoder.append(
                ConvBlock(dim, cin, f[i], net.kernel_sizes[i], net.strides[i], net.convs_per_stage)
            )
            cin = f[i]
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        self.heads = nn.ModuleList()
        for i in range(net.n_stages - 2, -1, -1):
            s = net.strides[i + 1]
            self.up.append(tconv(f[i + 1], f[i], kernel_size=s, stride=s))
            self.decoder.append(
                ConvBlock(dim, 2 * f[i], f[i], net.kernel_sizes[i], [1] * dim, net.convs_per_stage_decoder)
            )
            self.heads.append(conv(f[i], net.n_classes, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        x = skips.pop()
        outs = []
        for up, dec, head in zip(self.up, self.decoder, self.heads, strict=True):
            x = up(x)
            x = dec(torch.cat([x, skips.pop()], dim=1))
            outs.append(head(x))
        if self.deep_supervision and self.training:
            return outs[::-1]
        last: torch.Tensor = outs[-1]
        return last


NETWORKS.add("unet", PlainUNet)


class ResidualBlock(nn.Module):
    """conv-norm-act-conv-norm plus a (1x1 strided when needed) skip, then act."""

    def __init__(
        self,
        dim: int,
        cin: int,
        cout: int,
        kernel: list[int],
        stride: list[int],
        norm_kind: NormKind = "instance",
    ) -> None:
        super().__init__()
        conv, norm, _ = _ops(dim, norm_kind)
        pad = [k // 2 for k in kernel]
        self.body = nn.Sequential(
            conv(cin, cout, kernel_size=kernel, stride=stride, padding=pad),
            norm(cout, eps=1e-5, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
            conv(cout, cout, kernel_size=kernel, padding=pad),
            norm(cout, eps=1e-5, affine=True),
        )
        self.skip: nn.Module = nn.Identity()
        if cin != cout or any(s != 1 for s in stride):
            self.skip = nn.Sequential(
                conv(cin, cout, kernel_size=1, stride=stride), norm(cout, eps=1e-5, affine=True)
            )
        self.act = nn.LeakyReLU(0.01, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act(self.body(x) + self.skip(x))
        return out


class ResEncUNet(PlainUNet):
    """U-Net with a residual encoder (blocks per stage 1, 3, 4, 6, 6, ...) and a plain decoder, as nnU-Net's ResEnc."""

    BLOCKS = (1, 3, 4, 6, 6, 6, 6, 6)

    def __init__(self, net: NetworkPlan) -> None:
        super().__init__(net)
        dim, f = net.dimension, net.features_per_stage
        self.encoder = nn.ModuleList()
        cin = net.in_channels
        for i in range(net.n_stages):
            blocks: list[nn.Module] = [ResidualBlock(dim, cin, f[i], net.kernel_sizes[i], net.strides[i])]
            blocks += [
                ResidualBlock(dim, f[i], f[i], net.kernel_sizes[i], [1] * dim)
                for _ in range(self.BLOCKS[min(i, len(self.BLOCKS) - 1)] - 1)
            ]
            self.encoder.append(nn.Sequential(*blocks))
            cin = f[i]


NETWORKS.add("resenc_unet", ResEncUNet)


def segmentation_network(cfg_plan: ConfigurationPlan, config: TrainConfig) -> nn.Module:
    """The U-Net of a configuration with the training config's architecture and deep-supervision choices."""
    net = cfg_plan.network.model_copy(
        update={
            "architecture": config.architecture or cfg_plan.network.architecture,
            "deep_supervision": config.deep_supervision,
        }
    )
    return build_network(net)


def build_network(net: NetworkPlan) -> nn.Module:
    """Instantiate the architecture named in the plan (did-you-mean on unknown names)."""
    cls = NETWORKS.get(net.architecture)
    module: nn.Module = cls(net)
    return module
