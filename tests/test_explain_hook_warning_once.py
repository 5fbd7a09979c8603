"""medcam's guided backpropagation makes torch warn about deprecated non-full backward hooks for every module and
every map: automed says it once per command, however many explainers the command builds (``explain: true`` builds
one per validation case it draws)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from automed import api
from automed.interpret.attention import Explainer, HookWarnings
from automed.testing.synthetic import make_dataset
from automed.train.networks import PlainUNet
from tests.conftest import tiny_unet_plan

_SAID = "deprecated non-full backward hooks"


def _unet() -> PlainUNet:
    return PlainUNet(tiny_unet_plan(3))


def test_explainers_sharing_one_notice_say_the_hook_warning_once(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    notice = HookWarnings()
    x = torch.randn(1, 1, 8, 8, 8)
    with caplog.at_level(logging.WARNING, logger="automed"):
        for _ in range(3):
            Explainer([_unet()], backend="gbp", layer="decoder.0", channel=1, hooks=notice)(x, 0)
    assert caplog.text.count(_SAID) == 1
    assert notice.count > 3  # every warning of the three is counted, one is said
    assert "--backend gbp" in caplog.text and "torch warned" in caplog.text


def test_an_explainer_of_its_own_still_says_it(caplog: pytest.LogCaptureFixture) -> None:
    x = torch.randn(1, 1, 8, 8, 8)
    with caplog.at_level(logging.WARNING, logger="automed"):
        explainer = Explainer([_unet()], backend="ggcam", layer="decoder.0", channel=1)
        explainer(x, 0)
        explainer(x, 0)
    assert caplog.text.count(_SAID) == 1


@pytest.mark.slow  # trains a tiny model (seconds)
def test_explain_true_with_guided_backprop_says_the_hook_warning_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Three validation cases drawn, one explainer each: the warning was logged three times in one training."""
    ds = make_dataset(tmp_path / "s", n_cases=4, shape=(12, 24, 24))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "epochs: 1\niterations_per_epoch: 2\nval_iterations: 1\nnum_workers: 0\nexplain: true\nexplain_backend: gbp\n"
    )
    with caplog.at_level(logging.WARNING, logger="automed"):
        api.train(
            ds, tmp_path / "W", configuration="3d_fullres", config=cfg, folds=2, workers=0, show_progress=False,
            register=False, tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
        )  # fmt: skip
    assert "attention maps were not logged" not in caplog.text
    assert caplog.text.count(_SAID) == 1
