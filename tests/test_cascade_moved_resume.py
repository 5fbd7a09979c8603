"""A cascade's ``train_config.json`` records its first stage (``previous_workdir``) relative to the work dir too: a
project folder moved whole (both stages together) still resumes and extends, ``--previous`` typed again names the
first stage at its new place, and a record written before (no relative place) keeps working."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest

from automed import api
from automed.errors import ConfigError
from automed.testing.synthetic import make_dataset
from automed.workflow.resume_checks import refuse_ignored_on_resume
from tests.conftest import cascade_options


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both stages trained in ``proj/``, then ``proj/`` moved to ``moved/`` (the old place is gone)."""
    root = tmp_path_factory.mktemp("cascade_moved")
    ds = make_dataset(root / "data", n_cases=4, shape=(40, 40, 40), shape_jitter=0, seed=3)
    common: dict[str, Any] = {**cascade_options(root), "register": False}
    proj = root / "proj"
    api.train(ds, proj / "LOW", configuration="3d_lowres", **common)
    api.train(ds, proj / "CASC", configuration="3d_cascade_fullres", previous=proj / "LOW", **common)
    saved = json.loads((proj / "CASC" / "train_config.json").read_text())
    shutil.move(proj, root / "moved")
    return {"root": root, "old": proj, "new": root / "moved", "saved": saved}


@pytest.mark.slow
def test_the_first_stage_is_recorded_relative_to_the_cascade(moved: dict[str, Any]) -> None:
    options = moved["saved"]["options"]
    assert options["previous_workdir"] == str(moved["old"] / "LOW")
    assert options["previous_relative"] == "../LOW"


@pytest.mark.slow
def test_a_moved_cascade_resumes_and_extends_over_its_moved_first_stage(moved: dict[str, Any]) -> None:
    casc = moved["new"] / "CASC"
    before = json.loads((casc / "train" / "3d_cascade_fullres" / "fold_0" / "progress.json").read_text())
    res = api.train(None, casc, resume=True, extend=1, workers=0, show_progress=False)
    assert res.workdir == casc and sorted(res.fold_epochs) == [0, 1]
    after = json.loads((casc / "train" / "3d_cascade_fullres" / "fold_0" / "progress.json").read_text())
    assert len(after["history"]) == len(before["history"]) + 1
    assert not moved["old"].exists()  # nothing was written at the old place


@pytest.mark.slow
def test_previous_typed_again_on_resume_is_the_first_stage_at_its_new_place(moved: dict[str, Any]) -> None:
    casc = moved["new"] / "CASC"
    refuse_ignored_on_resume(casc, {"--previous": moved["new"] / "LOW"})  # the same first stage: accepted
    with pytest.raises(ConfigError, match=r"keeps its own previous"):
        refuse_ignored_on_resume(casc, {"--previous": moved["root"] / "data"})


@pytest.mark.slow
def test_a_record_without_the_relative_place_still_resumes_when_moved(moved: dict[str, Any]) -> None:
    """Written before relative places were recorded: the first stage is found through the cascade's link."""
    copy = moved["root"] / "copy_old_format"
    shutil.copytree(moved["new"], copy)
    shutil.rmtree(moved["new"])  # moved again, alone in the world: a copy whose original is gone
    f = copy / "CASC" / "train_config.json"
    saved = json.loads(f.read_text())
    del saved["options"]["previous_relative"]
    f.write_text(json.dumps(saved))
    res = api.train(None, copy / "CASC", resume=True, workers=0, show_progress=False)
    assert sorted(res.fold_epochs) == [0, 1]
