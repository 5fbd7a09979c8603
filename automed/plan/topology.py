"""Network topology as a pure function of spacing and patch size, and its feature-map size for the memory model.

Rules (nnU-Net v2's, re-derived): an axis is pooled (stride 2) while its size is at least ``2 * min_edge`` and its
spacing is under twice the finest spacing among the poolable axes; a lone poolable axis also needs
``3 * min_edge``. A convolution uses kernel 3 on an axis once that axis' spacing is under twice the finest,
else 1 (in-plane-first on thick-slice data). The bottleneck always uses kernel 3. The patch is padded to a multiple
of ``2 ** pools`` per axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Topology:
    patch_size: list[int]
    strides: list[list[int]]
    kernel_sizes: list[list[int]]
    pools_per_axis: list[int]

    @property
    def n_stages(self) -> int:
        return len(self.strides)

    @property
    def divisor(self) -> list[int]:
        return [2**p for p in self.pools_per_axis]


def derive_topology(spacing: list[float], patch: list[int], *, min_edge: int, max_stages: int) -> Topology:
    dim = len(spacing)
    sp = [float(s) for s in spacing]
    size = [float(p) for p in patch]
    finest = min(sp)
    kernels = [[3 if s / finest < 2 else 1 for s in sp]]
    strides = [[1] * dim]
    pools = [0] * dim
    while len(strides) < max_stages:
        poolable = [a for a in range(dim) if size[a] >= 2 * min_edge]
        if not poolable:
            break
        fine = min(sp[a] for a in poolable)
        chosen = [a for a in poolable if sp[a] < 2 * fine]
        if len(chosen) == 1 and size[chosen[0]] < 3 * min_edge:
            break
        if not chosen:
            break
        stride = [2 if a in chosen else 1 for a in range(dim)]
        for a in chosen:
            sp[a] *= 2
            size[a] = math.ceil(size[a] / 2)
            pools[a] += 1
        finest = min(sp)
        prev = kernels[-1]
        kernels.append([3 if (prev[a] == 3 or sp[a] / finest < 2) else 1 for a in range(dim)])
        strides.append(stride)
    kernels[-1] = [3] * dim
    div = [2**p for p in pools]
    padded = [int(math.ceil(p / d) * d) for p, d in zip(patch, div, strict=True)]
    return Topology(padded, strides, kernels, pools)


def features_per_stage(n_stages: int, base: int, maximum: int) -> list[int]:
    return [min(base * 2**i, maximum) for i in range(n_stages)]


def stage_sizes(topo: Topology) -> list[list[int]]:
    sizes = [list(topo.patch_size)]
    for stride in topo.strides[1:]:
        sizes.append([s // st for s, st in zip(sizes[-1], stride, strict=True)])
    return sizes


def feature_map_elements(
    topo: Topology, features: list[int], in_channels: int, n_classes: int, convs_enc: int, convs_dec: int
) -> int:
    """Conv output elements of one sample over encoder, decoder (transposed conv + convs) and seg heads."""
    sizes = [math.prod(s) for s in stage_sizes(topo)]
    total = 0
    for f, s in zip(features, sizes, strict=True):
        total += convs_enc * f * s
    for i in range(len(sizes) - 1):
        f, s = features[i], sizes[i]
        total += f * s + convs_dec * f * s + n_classes * s
    total += in_channels * sizes[0]
    return int(total)


def parameter_count(
    topo: Topology, features: list[int], in_channels: int, n_classes: int, convs_enc: int, convs_dec: int
) -> int:
    """Trainable parameters of the planned plain U-Net (conv weights + biases + norm affine)."""
    total = 0
    prev = in_channels
    for k, f in zip(topo.kernel_sizes, features, strict=True):
        kv = math.prod(k)
        for j in range(convs_enc):
            cin = prev if j == 0 else f
            total += cin * f * kv + f + 2 * f
        prev = f
    for i in range(len(features) - 2, -1, -1):
        f, fb = features[i], features[i + 1]
        total += fb * f * math.prod(topo.strides[i + 1]) + f
        kv = math.prod(topo.kernel_sizes[i])
        for j in range(convs_dec):
            cin = 2 * f if j == 0 else f
            total += cin * f * kv + f + 2 * f
        total += f * n_classes + n_classes
    return int(total)
