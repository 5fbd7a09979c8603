"""Attention maps of fold networks for one network input, computed by medcam (``medcam.medcam.inject``).

Backends: ``gcam`` (Grad-CAM), ``gcampp`` (Grad-CAM++), ``gbp`` (guided backpropagation: the gradient of the
explained output with respect to the input, negative gradients stopped at every activation), ``ggcam`` (guided
Grad-CAM: Grad-CAM times guided backpropagation). Every map is normalized to [0, 1]; a fold ensemble's map is the
mean of its networks' maps, normalized again.

Default layers (``--layer`` names another module, as ``named_modules`` spells it):

- U-Net (``PlainUNet``, ``ResEncUNet``): the last decoder block (``decoder.N``, full resolution, before the 1x1
  head). medcam's own ``layer='auto'`` picks the last module with a spatial output, the network's output, whose map
  is the logit map itself.
- Image-level ``EncoderHead``: the last encoder stage (``encoder.N``), the module ``auto`` picks there too.

medcam 0.1.22 on torch 2.13, as measured (``tests/test_explain.py`` keeps them true):

- medcam's guided backpropagation rectifies gradients only at ``nn.ReLU`` modules; automed's networks use
  LeakyReLU, where it returns the plain input gradient, identical to ``torch.autograd``'s. ``gbp`` and ``ggcam``
  therefore run on a copy of each network whose LeakyReLU modules are :class:`GuidedLeakyReLU` (an ``nn.ReLU``
  subclass computing the same leaky ReLU, so the outputs are unchanged and medcam's rule applies).
- ``gbp`` and ``ggcam`` register torch's non-full module backward hooks (``register_backward_hook``); torch 2.13
  warns ``FutureWarning: Using a non-full backward hook when the forward contains multiple autograd Nodes is
  deprecated`` for every module whose forward has several autograd nodes. automed collects those and logs one warning
  per command (:class:`HookWarnings`); should a later torch drop the hooks, these backends fail with a
  :class:`~automed.errors.ConfigError` naming ``gcam``/``gcampp`` instead.
- medcam rescales the signed input gradient of ``gbp`` (and the product of ``ggcam``) to [0, 1], so a region without
  gradient sits mid-scale and looks attended. automed's wrapper (:class:`ExplainedOutput`) passes the gradient's
  magnitude to the input, so 0 means no gradient for every backend.
- Grad-CAM++ on a segmentation output weights the layer's gradients by the class logits resampled to the layer and
  fails unless the layer has as many channels as the network has classes: segmentation networks are wrapped to
  output only the explained class's logit map (one channel), which makes every layer work.
- medcam rescales a map to [0, 1] at the layer's resolution, then resizes it to the input: the resize lowers the
  peak, so maps are normalized again here (and once more on the input image's grid:
  :func:`automed.interpret.geometry.to_input_grid`).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import logging
import re
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from automed.errors import ConfigError
from automed.interpret.geometry import normalized
from automed.registry import check_choice, did_you_mean

BACKENDS = ("gcam", "gbp", "ggcam", "gcampp")
GUIDED = ("gbp", "ggcam")  # backends that run guided backpropagation (torch's deprecated module hooks)
_HOOK_WARNING = "Using a non-full backward hook"
_PREFIX = "net."  # the wrapped network's modules, as medcam sees them
_PREFIXED = re.compile(r"\bnet\.")  # that prefix in medcam's messages

log = logging.getLogger("automed")


class GuidedLeakyReLU(nn.ReLU):
    """A LeakyReLU medcam's guided backpropagation sees (it rectifies gradients at ``nn.ReLU`` modules only)."""

    def __init__(self, negative_slope: float) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(input, self.negative_slope)


class ExplainedOutput(nn.Module):
    """What medcam explains: one class's logit map of a segmentation network (``channel``), or an image-level
    network's logits. A one-output (regression) network gets a constant second column: medcam's Grad-CAM++ takes a
    single output for a segmentation map. With ``magnitude`` the input receives the gradient's magnitude."""

    def __init__(self, net: nn.Module, channel: int | None, magnitude: bool = False) -> None:
        super().__init__()
        self.net, self.channel, self.magnitude = net, channel, magnitude

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.magnitude and x.requires_grad:  # what reaches the input (medcam's gbp map): |gradient|
            x = x.view_as(x)
            x.register_hook(torch.abs)
        out: torch.Tensor = self.net(x)
        if self.channel is not None:
            return out[:, self.channel : self.channel + 1]
        return torch.cat([out, torch.zeros_like(out)], dim=1) if out.shape[1] == 1 else out


def default_layer(network: nn.Module) -> str:
    """A U-Net's last decoder block, an image-level network's last encoder stage."""
    for attr in ("decoder", "encoder"):
        blocks = getattr(network, attr, None)
        if isinstance(blocks, nn.ModuleList) and len(blocks):
            return f"{attr}.{len(blocks) - 1}"
    raise ConfigError.single(
        "--layer",
        "a network without encoder/decoder blocks has no default layer",
        type(network).__name__,
        "name a layer with --layer",
    )


def check_layer(network: nn.Module, layer: str | None) -> str:
    """``layer`` when ``network`` has such a module (did-you-mean otherwise), or the default layer."""
    if layer is None:
        return default_layer(network)
    # a ModuleList or ModuleDict only holds blocks: it has no forward for medcam to hook
    names = [n for n, m in network.named_modules() if n and not isinstance(m, nn.ModuleList | nn.ModuleDict)]
    if layer in names:
        return layer
    blocks = [n for n in names if n.count(".") <= 1]
    raise ConfigError.single(
        "--layer",
        f"the layer must be a module of the network ({type(network).__name__}: {', '.join(blocks)}, ...)",
        repr(layer),
        f"name one of its modules, or leave --layer out for {default_layer(network)}.{did_you_mean(layer, names)}",
    )


def guided_copy(network: nn.Module) -> nn.Module:
    """A copy of ``network`` with every LeakyReLU replaced by :class:`GuidedLeakyReLU` (same outputs)."""
    net = copy.deepcopy(network)
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.LeakyReLU):
                setattr(module, name, GuidedLeakyReLU(child.negative_slope))
    return net


def _medcam() -> Any:
    try:
        return importlib.import_module("medcam.medcam")
    except ImportError as exc:  # medcam itself, or the opencv it imports without declaring it
        raise ConfigError.single(
            "medcam",
            "attention maps need medcam and OpenCV",
            f"{type(exc).__name__}: {exc}",
            "pip install 'medcam>=0.1.22' opencv-python-headless",
        ) from exc


class HookWarnings:
    """torch's deprecation warnings for medcam's non-full backward hooks (``gbp``, ``ggcam``): counted over every
    map of a command, said once (at the first map), however many :class:`Explainer` objects share it."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, backend: str, n: int) -> None:
        if n and not self.count:
            log.warning(
                "--backend %s: medcam 0.1.22 uses torch's deprecated non-full backward hooks (torch warned %d "
                "times for the first map; said once per command); the maps are right on torch 2.13, a later torch "
                "may drop these hooks (--backend gcam or gcampp do without them)",
                backend,
                n,
            )
        self.count += n


class Explainer:
    """medcam around each fold network of a model, for one backend and layer; calling it gives the fold-mean map of
    a batch of one.

    ``channel``: the segmentation class index explained (each call then passes ``label`` 0); ``None`` for
    image-level networks (each call passes the class index). ``hooks``: shared by the explainers of one command,
    so that torch's hook warnings are said once (default: this explainer's own)."""

    def __init__(
        self,
        networks: list[nn.Module],
        *,
        backend: str,
        layer: str,
        channel: int | None,
        hooks: HookWarnings | None = None,
    ) -> None:
        self.backend = check_choice(backend, BACKENDS, what="the attention backend", where="--backend")
        self.layer = layer
        self.hooks = hooks if hooks is not None else HookWarnings()
        medcam = _medcam()
        self.wrapped = [
            ExplainedOutput(guided_copy(n), channel, True)
            if backend in GUIDED
            else ExplainedOutput(n, channel)
            for n in networks
        ]
        self.models = [
            medcam.inject(
                w,
                backend=backend,
                layer=_PREFIX + layer,
                label=0 if channel is not None else None,
                return_attention=True,
                replace=False,
                save_maps=False,
            )
            for w in self.wrapped
        ]

    @property
    def layer_text(self) -> str:
        """The layer the map comes from, as a figure title names it."""
        return "none (input gradient)" if self.backend == "gbp" else self.layer

    def __call__(self, x: torch.Tensor, label: int) -> np.ndarray:
        """``x`` ``(1, C, *spatial)`` on the networks' device -> the map ``(*spatial)`` in [0, 1] for output
        ``label`` (the class index; 0 for segmentation, whose networks output the explained class only)."""
        maps = [self._one(m, w, x, label) for m, w in zip(self.models, self.wrapped, strict=True)]
        return normalized(np.mean(maps, axis=0))

    def _one(self, model: Any, wrapped: ExplainedOutput, x: torch.Tensor, label: int) -> np.ndarray:
        printed = io.StringIO()
        shapes: list[tuple[int, ...]] = []

        def seen(module: nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                shapes.append(tuple(output.shape))

        hook = wrapped.net.get_submodule(self.layer).register_forward_hook(seen)
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(printed):
            warnings.simplefilter("always")
            try:
                _, attention = model(x.detach().clone(), label=label)
            except (ValueError, RuntimeError, AttributeError, IndexError) as exc:
                self._check_place(wrapped, shapes)
                raise self._failure(exc) from exc
            finally:
                hook.remove()
        self._check_place(wrapped, shapes)
        self._report(caught, printed.getvalue())
        return normalized(attention.detach().float().cpu().numpy()[0, 0])

    def _check_place(self, wrapped: ExplainedOutput, shapes: list[tuple[int, ...]]) -> None:
        """A map comes from a layer whose output has a place (spatial axes longer than 1): after global pooling
        (an image-level network's ``pool``, ``dropout``, ``head``) every channel is one number per image, and
        Grad-CAM's map is constant. Guided backpropagation (``gbp``) takes the input's gradient, whatever the
        layer."""
        if self.backend == "gbp" or not shapes:
            return
        shape = shapes[0]
        if len(shape) > 2 and any(n > 1 for n in shape[2:]):
            return
        raise ConfigError.single(
            f"--layer {self.layer}",
            f"--backend {self.backend} computes its map at a layer with a spatial output (channels over the image "
            "or volume); a layer after global pooling holds one number per channel",
            f"output of shape {shape}",
            f"choose a convolutional block, e.g. {default_layer(wrapped.net)} (the default: leave --layer out), "
            "or use --backend gbp (the input's gradient, no layer)",
        )

    def _failure(self, exc: Exception) -> ConfigError:
        fix = (
            "choose a layer the output depends on with --layer (or leave it out for the default), or use --backend "
            "gcam or gcampp (guided backpropagation relies on torch's deprecated module hooks)"
            if self.backend in GUIDED
            else "choose a layer the output depends on with --layer, or leave it out for the default"
        )
        return ConfigError.single(
            f"--backend {self.backend} --layer {self.layer}",
            "medcam must compute an attention map at the layer",
            f"{type(exc).__name__}: {_PREFIXED.sub('', str(exc))}",
            fix,
        )

    def _report(self, caught: list[warnings.WarningMessage], printed: str) -> None:
        hooks = [w for w in caught if _HOOK_WARNING in str(w.message)]
        for w in caught:
            if w not in hooks:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self.hooks.add(self.backend, len(hooks))
        for line in printed.splitlines():
            if line.strip():
                log.warning("medcam: %s", line.strip())
