"""automed plan's options refused before any work: --device, --memory-gb and a -c name that no planner gives were
refused after verify and fingerprinting had read every image; --calibrate for CUDA on a machine without it crashed
("Torch not compiled with CUDA enabled"); -c of a configuration the new plan lacks had first replaced the work dir's
plan.json; and a preset's resampling order 2, 4 or 5 was recorded while order 3 ran."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from automed import api
from automed.errors import ConfigError, PlanError
from automed.plan.preset import load_preset
from automed.testing.synthetic import make_dataset


def _said(exc: pytest.ExceptionInfo[Exception]) -> str:
    return " ".join(str(exc.value).split())


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"device": "tpu"}, "--device: the device must be 'cuda' or 'cpu'; found 'tpu'"),
        ({"memory_gb": 0.0}, "--memory-gb: the memory target must be a positive finite number; found 0.0"),
        (
            {"configurations": ["3d_fulres"]},
            "found '3d_fulres'. Fix: use one of the listed values. Did you mean",
        ),
    ],
)
def test_bad_options_are_refused_before_the_dataset_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict[str, object], said: str
) -> None:
    from automed.workflow import prepare

    ds = make_dataset(tmp_path / "d", n_cases=2, shape=(8, 8, 8))

    def read(*a: object, **k: object) -> None:
        raise AssertionError("the dataset was read")

    monkeypatch.setattr(prepare, "verify", read)
    with pytest.raises((PlanError, ConfigError)) as exc:
        api.plan_dataset(ds, tmp_path / "W", show_progress=False, **options)  # type: ignore[arg-type]
    assert said in _said(exc) and not (tmp_path / "W").exists()


def test_calibrating_for_cuda_without_cuda_is_refused_first(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    ds = make_dataset(tmp_path / "d", n_cases=2, shape=(8, 8, 8))
    with pytest.raises(PlanError) as exc:
        api.plan_dataset(ds, tmp_path / "W", calibrate=True, show_progress=False)
    said = _said(exc)
    assert (
        "--calibrate: calibration measures on the device the plan is for" in said and "--device cpu" in said
    )
    assert not (tmp_path / "W").exists()


def test_a_configuration_the_new_plan_lacks_leaves_the_plan_as_it_was(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "d", n_cases=4, shape=(12, 16, 16))
    wd = tmp_path / "W"
    api.plan_dataset(ds, wd, run_preprocess=False, show_progress=False)
    before = (wd / "plan.json").read_bytes()
    assert '"2d"' in before.decode()
    with pytest.raises(ConfigError) as exc:  # the cpu preset plans 3d_fullres only
        api.plan_dataset(ds, wd, preset="cpu", configurations=["2d"], show_progress=False)
    assert "found '2d'" in _said(exc)
    assert (wd / "plan.json").read_bytes() == before


@pytest.mark.parametrize("order", [2, 4, 5])
def test_a_resampling_order_the_resampler_lacks_is_refused(tmp_path: Path, order: int) -> None:
    preset = tmp_path / "p.yaml"
    preset.write_text(
        yaml.safe_dump({"extends": "default", "name": "p", "resampling": {"image_order": order}})
    )
    with pytest.raises(ConfigError) as exc:
        load_preset(str(preset))
    assert "'resampling.image_order': Input should be 0, 1 or 3" in _said(exc)
