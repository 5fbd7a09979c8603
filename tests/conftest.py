from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared(*parts: str) -> Path:
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not found: {p}")
    return p


@pytest.fixture(scope="session")
def hippocampus() -> Path:
    return shared("msd_hippocampus_dev")


@pytest.fixture()
def tiny_msd(tmp_path: Path) -> Path:
    from automed.testing.synthetic import make_dataset

    return make_dataset(tmp_path / "ds", n_cases=4, shape=(12, 16, 14), seed=1)
