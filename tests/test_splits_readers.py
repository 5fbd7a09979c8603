"""select, its inference-cost measure, export's parity case and a cascade's first-stage link read ``splits.json``
through ``data.splits.read_splits``: a damaged one is refused naming the file, the rule, the value and the fix.
Before, each crashed with a bare JSONDecodeError (or KeyError, TypeError)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from automed.errors import ArtifactError
from automed.workdir import WorkDir
from tests.conftest import cascade_pair

FIX = "put back the splits.json automed wrote"


def _damaged(wd: Path) -> Path:
    """A work dir whose splits.json was cut short (a kill, a full disk)."""
    wd.mkdir(parents=True, exist_ok=True)
    WorkDir(wd).splits.write_text('{"n_folds": 2, "folds": [{"train": ["a"], "va')
    return WorkDir(wd).splits


def _refused(path: Path, exc: pytest.ExceptionInfo[ArtifactError]) -> None:
    (p,) = exc.value.problems
    assert (p.file, p.rule) == (str(path), "splits.json must be valid JSON") and FIX in p.fix


def test_select_refuses_a_damaged_split(tmp_path: Path) -> None:
    from automed.select.selection import Training

    path = _damaged(tmp_path / "W")
    with pytest.raises(ArtifactError) as exc:
        Training.of(tmp_path / "W", "3d_fullres", [0], [0, 1], "D")
    _refused(path, exc)


def test_the_inference_cost_refuses_a_damaged_split(tmp_path: Path) -> None:
    from automed.select.inference_cost import measure_folds

    path = _damaged(tmp_path / "W")
    with pytest.raises(ArtifactError) as exc:
        measure_folds(tmp_path / "W", cast(Any, None), cast(Any, None), [0], "D", [])
    _refused(path, exc)


def test_export_refuses_a_damaged_split_before_loading_the_dataset(tmp_path: Path) -> None:
    from automed.export.export import first_validation_case

    path = _damaged(tmp_path / "W")
    WorkDir(tmp_path / "W").train_config.write_text(json.dumps({"dataset": str(tmp_path / "gone")}))
    with pytest.raises(ArtifactError) as exc:
        first_validation_case(tmp_path / "W")
    _refused(path, exc)


def test_a_cascade_refuses_a_damaged_split_of_its_first_stage(tmp_path: Path) -> None:
    from automed.preprocess.previous_stage import link_previous

    low, casc, plan = cascade_pair(tmp_path)
    path = _damaged(low)
    with pytest.raises(ArtifactError) as exc:
        link_previous(casc, low, plan, "3d_cascade_fullres")
    _refused(path, exc)
