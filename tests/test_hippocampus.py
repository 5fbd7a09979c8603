"""`automed plan` on the real MSD Hippocampus subset (60 cases)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from automed import api


@pytest.mark.slow  # reads and plans 60 real cases (10 s): make test-fast stays under 3 minutes
def test_plan_hippocampus_end_to_end(hippocampus: Path, tmp_path: Path) -> None:
    wd = tmp_path / "W"
    res = api.plan_dataset(hippocampus, wd, configurations=["3d_fullres"], workers=2, show_progress=False)
    for name in ("fingerprint.json", "plan.json", "splits.json"):
        assert (wd / name).is_file(), name
    plan = json.loads((wd / "plan.json").read_text())
    full = plan["configurations"]["3d_fullres"]
    assert full["spacing"] == [1.0, 1.0, 1.0]
    assert [n["scheme"] for n in full["normalization"]] == ["zscore"]
    assert full["normalization"][0]["use_nonzero_mask"] is False
    # nnU-Net v2 plans 40x56x40 (padded past the 36x50x35 median image); automed stays inside the median image,
    # within one pooling step (8 voxels) of nnU-Net on every axis and with the same 4-stage topology.
    nnunet = [40, 56, 40]
    assert all(abs(a - b) <= 8 for a, b in zip(full["patch_size"], nnunet, strict=True)), full["patch_size"]
    assert full["network"]["n_stages"] == 4
    assert "3d_lowres" not in plan["configurations"]
    assert "not needed" in plan["reasons"]["3d_lowres"]
    assert full["batch_size"] >= 2
    # cache: one npz + json per case, images normalized, labels as class indices
    cache = wd / "preprocessed" / "3d_fullres"
    assert len(list(cache.glob("*.npz"))) == 60
    with np.load(cache / "hippocampus_001.npz") as z:
        data, seg = z["data"], z["seg"]
        assert data.dtype == np.float32 and data.shape[0] == 1
        assert abs(float(data.mean())) < 1e-3 and abs(float(data.std()) - 1) < 1e-3
        assert set(np.unique(seg).tolist()) <= {0, 1, 2}
        assert z["loc_1"].shape[1] == 3
    props = json.loads((cache / "hippocampus_001.json").read_text())
    assert props["geometry"]["size"] == [35, 51, 35]
    splits = json.loads((wd / "splits.json").read_text())
    assert splits["n_folds"] == 5
    val = sorted(c for f in splits["folds"] for c in f["val"])
    assert val == sorted(c.case_id for c in res.fingerprint.cases)
    fp = json.loads((wd / "fingerprint.json").read_text())
    assert fp["n_cases"] == 60 and fp["channels"][0]["modality"] == "MRI"
    assert {lab["value"] for lab in fp["labels"]} == {0, 1, 2}

    # second run: every stage is skipped, nothing changes
    before = {p.name: p.stat().st_mtime_ns for p in wd.iterdir() if p.is_file()}
    again = api.plan_dataset(hippocampus, wd, configurations=["3d_fullres"], workers=1, show_progress=False)
    assert again.fingerprint_reused
    assert again.preprocessed == {"3d_fullres": "skipped"}
    after = {p.name: p.stat().st_mtime_ns for p in wd.iterdir() if p.is_file()}
    assert before["fingerprint.json"] == after["fingerprint.json"]
    assert before["plan.json"] == after["plan.json"]
