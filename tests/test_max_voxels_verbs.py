"""--max-voxels reaches every verb that verifies: an image over the default 500 M voxels that passed
`automed verify --max-voxels N` was refused by plan, train and sweep, whose message pointed at verify again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from automed import api
from automed.cli import app
from automed.errors import DatasetError


def test_plan_and_train_take_the_limit_and_say_where_to_raise_it(tiny_msd: Path, tmp_path: Path) -> None:
    for run in (
        lambda: api.plan_dataset(tiny_msd, tmp_path / "P", max_voxels=100, show_progress=False),
        lambda: api.train(tiny_msd, tmp_path / "T", epochs=1, max_voxels=100, show_progress=False),
    ):
        with pytest.raises(DatasetError) as err:
            run()
        assert "at most 100 voxels" in str(err.value)
        assert "`--max-voxels N` of automed verify, plan, train and sweep" in str(err.value)
    assert not (tmp_path / "T").exists()  # refused before the work dir
    res = api.plan_dataset(
        tiny_msd, tmp_path / "P", max_voxels=10_000, run_preprocess=False, show_progress=False
    )
    assert res.plan is not None


def test_train_and_sweep_pass_the_option_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def stop(*args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(api, "train", stop)
    monkeypatch.setattr(api, "sweep", stop)
    for verb in ("train", "sweep"):
        seen.clear()
        CliRunner().invoke(
            app, ["-q", verb, str(tmp_path), "-o", str(tmp_path / "W"), "--max-voxels", "900000000"]
        )
        assert seen["max_voxels"] == 900_000_000, verb
