"""CT normalization on the real CT in ../shared/data/ct_small, declared or guessed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from automed import api
from tests.conftest import shared


def _csv(tmp_path: Path, header: str) -> Path:
    ct = shared("ct_small")
    p = tmp_path / "ct.csv"
    p.write_text(f"SubjectID,{header},Label\nct1,{ct / 'example_ct_sm.nii.gz'},{ct / 'example_seg.nii.gz'}\n")
    return p


@pytest.mark.parametrize(("header", "how"), [("Channel_0", "guessed CT"), ("Channel_CT", "declared 'CT'")])
def test_ct_normalization_uses_fingerprint_clip_values(tmp_path: Path, header: str, how: str) -> None:
    wd = tmp_path / "W"
    res = api.plan_dataset(
        _csv(tmp_path, header), wd, workers=1, show_progress=False, configurations=["3d_fullres"]
    )
    fp = json.loads((wd / "fingerprint.json").read_text())
    ch = fp["channels"][0]
    assert ch["modality"] == "CT"
    assert ch["modality_reason"].startswith(how)
    plan = json.loads((wd / "plan.json").read_text())
    norm = plan["configurations"]["3d_fullres"]["normalization"][0]
    fg = ch["foreground"]
    assert norm["scheme"] == "ct"
    assert norm["clip_low"] == fg["percentile_00_5"] and norm["clip_high"] == fg["percentile_99_5"]
    assert norm["mean"] == fg["mean"] and norm["std"] == fg["std"]
    assert norm["use_nonzero_mask"] is False
    # CT HU: clip values lie in the soft-tissue/bone range, the lower clip above air
    assert -1000 < norm["clip_low"] < norm["clip_high"] < 3000
    # the cache is normalized with those global values, not per image
    with np.load(wd / "preprocessed" / "3d_fullres" / "ct1.npz") as z:
        data = z["data"]
    hi = (norm["clip_high"] - norm["mean"]) / norm["std"]
    lo = (norm["clip_low"] - norm["mean"]) / norm["std"]
    assert data.max() <= hi + 1e-3 and data.min() >= lo - 1e-3
    # 41 organ labels + background in the map: all in the plan, mapped to consecutive class indices
    assert len(res.plan.labels) == len(fp["labels"]) == 42
    assert res.plan.configurations["3d_fullres"].network.n_classes == 42
    with np.load(wd / "preprocessed" / "3d_fullres" / "ct1.npz") as z:
        assert int(z["seg"].max()) <= 41


def test_mr_is_not_guessed_as_ct(tmp_path: Path) -> None:
    ct = shared("ct_small")
    p = tmp_path / "mr.csv"
    p.write_text(
        f"SubjectID,Channel_0,Label\nmr1,{ct / 'example_mr_sm.nii.gz'},{ct / 'example_seg_mr.nii.gz'}\n"
    )
    fp, _ = api.fingerprint(p, tmp_path / "W", workers=1, show_progress=False)
    assert fp.channels[0].modality != "CT"
    plan = api.plan(tmp_path / "W")
    assert plan.configurations["3d_fullres"].normalization[0].scheme == "zscore"
