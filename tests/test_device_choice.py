"""``--device cuda`` where torch sees no CUDA device: refused before any work with the fix, not torch's
"AssertionError: Torch not compiled with CUDA enabled" once train had verified, fingerprinted and preprocessed
(predict and explain met it as an unexpected error too). Planning for CUDA on a CPU machine stays allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from automed import api
from automed.errors import ConfigError
from automed.train.device import pick_device, usable_device


@pytest.fixture()
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


@pytest.mark.usefixtures("no_cuda")
def test_cuda_without_a_cuda_device_is_refused_with_the_fix() -> None:
    for asked in ("cuda", "cuda:1"):
        with pytest.raises(
            ConfigError, match=rf"--device: --device {asked} needs a CUDA device.*--device cpu"
        ):
            usable_device(asked)
    assert usable_device("auto").type == "cpu" and usable_device("cpu").type == "cpu"
    assert pick_device("cuda").type == "cuda"  # planning for a CUDA machine needs none here


@pytest.mark.usefixtures("no_cuda")
def test_train_refuses_it_before_anything_is_written(tiny_msd: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        api.train(tiny_msd, tmp_path / "W", epochs=1, device="cuda", show_progress=False)
    assert not (tmp_path / "W").exists()
