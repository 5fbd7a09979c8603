"""A model that cannot predict whole slides is named before the slide is read: one trained on a dataset.json (it was
told of a missing mining.json "beside its training CSV" and to pass --mpp), and a 3D or non-RGB network (with --mpp
it failed in torch mid-slide: "unexpected error: RuntimeError: ... expected input ... to have 1 channels")."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from automed.errors import ConfigError
from automed.workflow.predict_wsi import model_mpp, predict_slides


def _predictor(dimension: int, channels: int) -> SimpleNamespace:
    return SimpleNamespace(spec=SimpleNamespace(dimension=dimension), n_channels=channels)


@pytest.mark.parametrize(("dimension", "channels", "found"), [(3, 1, "a 3D model of 1"), (2, 1, "a 2D model of 1"),
                                                              (3, 3, "a 3D model of 3")])  # fmt: skip
def test_a_network_that_does_not_take_rgb_pictures_is_refused(
    tmp_path: Path, dimension: int, channels: int, found: str
) -> None:
    from automed.testing.synthetic_wsi import default_scene, write_slide

    slide = write_slide(default_scene(256, 256, mpp=0.5), tmp_path / "s.tif")
    with pytest.raises(ConfigError, match=r"a 2D model of RGB pictures") as exc:
        predict_slides(_predictor(dimension, channels), [slide], tmp_path / "P", mpp=2.0, names={1: "tumour"})
    assert found in str(exc.value) and "automed patch-miner" in str(exc.value)
    assert not (tmp_path / "P").exists()


def test_a_model_trained_on_a_dataset_json_is_not_asked_for_its_mpp(tmp_path: Path, tiny_msd: Path) -> None:
    from automed import api

    api.fingerprint(tiny_msd, tmp_path / "W", workers=0)
    with pytest.raises(ConfigError, match=r"a model trained on patches of slides") as exc:
        model_mpp(tmp_path / "W", None)
    assert "trained on dataset.json" in str(exc.value) and "patches/patches.csv" in str(exc.value)
    assert "--mpp" not in str(exc.value)
    assert model_mpp(tmp_path / "W", 0.5) == 0.5  # given, it is taken (the network is checked on the slide)
