"""``automed explain --layer`` on an image-level network's pooling, dropout or linear head (modules it lists and
accepts): their output holds one number per channel and image, no place, so Grad-CAM's map was constant. Every case
got an all-zero map written and a warning 'no positive attention at layer head; try another --layer'. Such a layer
is refused at the first case, naming its output's shape and the layers that have a place."""

from __future__ import annotations

import pytest
import torch

from automed.errors import ConfigError
from automed.interpret.attention import Explainer
from automed.train.classifier import EncoderHead
from tests.conftest import tiny_unet_plan


@pytest.mark.parametrize("layer", ["pool", "dropout", "head"])
@pytest.mark.parametrize("backend", ["gcam", "gcampp", "ggcam"])
def test_a_layer_without_a_place_is_refused(layer: str, backend: str) -> None:
    net = EncoderHead(tiny_unet_plan(3), 3, 0.0).eval()
    explainer = Explainer([net], backend=backend, layer=layer, channel=None)
    with pytest.raises(
        ConfigError, match=rf"--layer {layer}.*a spatial output.*found output of shape \(1, \d+"
    ):
        explainer(torch.randn(1, 1, 8, 8, 8), 0)


def test_an_encoder_stage_and_guided_backpropagation_give_maps() -> None:
    net = EncoderHead(tiny_unet_plan(3), 3, 0.0).eval()
    for backend, layer in (
        ("gcam", "encoder.1"),
        ("gcam", "encoder.0"),
        ("gbp", "head"),
    ):  # gbp: input gradient
        values = Explainer([net], backend=backend, layer=layer, channel=None)(torch.randn(1, 1, 8, 8, 8), 1)
        assert values.shape == (8, 8, 8) and values.max() == pytest.approx(1.0)
