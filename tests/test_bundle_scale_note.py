"""The bundle's ``predict.py`` warns when an image-level network sees less than half of an image along an axis (a
picture at another resolution than the training images is centre-cropped), as ``automed predict`` does; before, it
predicted such an image without a word."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from automed.runtime import cli, image_model


def _bundle(root: Path) -> Path:
    norm = {"channel": 0, "scheme": "zscore", "use_nonzero_mask": False, "clip_low": None, "clip_high": None,
            "mean": None, "std": None}  # fmt: skip
    spec = {"transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2], "spacing": [1.0, 1.0],
            "dimension": 2, "normalization": [norm], "image_order": 3, "z_order": 0, "separate_z_threshold": 3.0,
            "label_values": [], "n_channels": 1}  # fmt: skip
    meta = {"task": "classification", "files": {"onnx": ["fold_0.onnx"]}, "spec": spec,
            "inference": {"patch": [28, 28], "tta": False},
            "target": {"kind": "classification", "class_names": ["a", "b"]}}  # fmt: skip
    root.mkdir()
    (root / "preprocess.json").write_text(json.dumps(meta))
    return root


def stub_networks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The bundle's networks replaced by one that always says class b (onnx runtime); an empty input folder."""
    monkeypatch.setattr(image_model, "forwards_for", lambda *a, **k: [lambda x: np.array([[0.0, 1.0]])])
    monkeypatch.setattr(cli, "_runtime", lambda *a: "onnx")
    inputs = tmp_path / "in"
    inputs.mkdir()
    return inputs


def test_the_bundle_warns_when_the_network_sees_part_of_an_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = stub_networks(monkeypatch, tmp_path)
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((112, 112), np.uint8)), str(inputs / "big.png"))
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((30, 28), np.uint8)), str(inputs / "fit.png"))
    assert cli.main(["-i", str(inputs), "-o", str(tmp_path / "out")], bundle=_bundle(tmp_path / "b")) == 0
    err = capsys.readouterr().err
    assert "warning: big: at the model's spacing the image is 112 x 112" in err and "25% x 25%" in err
    assert "fit:" not in err
    assert (tmp_path / "out" / "predictions.csv").read_text().count("\n") == 3


def test_the_bundle_replaces_an_older_bundles_table_but_not_a_users_csv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image-level bundle before the record wrote only predictions.csv: --overwrite (the cube's rerun) replaces
    such a table; a predictions.csv of the user's (another header) is never replaced."""
    inputs, out = stub_networks(monkeypatch, tmp_path), tmp_path / "out"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((30, 28), np.uint8)), str(inputs / "fit.png"))
    bundle = _bundle(tmp_path / "b")
    assert cli.main(["-i", str(inputs), "-o", str(out)], bundle=bundle) == 0
    assert (out / cli.RECORD).is_file()
    (out / cli.RECORD).unlink()  # as an older image-level bundle left its output
    assert cli.main(["-i", str(inputs), "-o", str(out), "--overwrite"], bundle=bundle) == 0
    (out / cli.RECORD).unlink()
    (out / "predictions.csv").write_text("patient,diagnosis\nfit,1\n")  # the user's own table
    with pytest.raises(SystemExit, match=r"holds predictions\.csv without it: files of yours, not replaced"):
        cli.main(["-i", str(inputs), "-o", str(out), "--overwrite"], bundle=bundle)
    assert (out / "predictions.csv").read_text() == "patient,diagnosis\nfit,1\n"
