"""``automed package --export DIR`` reads the export's ``export.json`` through ``export.link.read_export_record``:
a damaged one is refused naming the file, the rule, the value and the fix, where it had crashed with a bare
JSONDecodeError or AttributeError; one written before the record's keys is still taken."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from automed.errors import ArtifactError
from automed.export.link import read_export_record
from automed.workflow.export import package

FIX = "export the model again into"


@pytest.mark.parametrize(
    ("text", "rule", "found"),
    [
        ('{"formats": ["onnx"', "export.json must be valid JSON", "line 1"),
        ('["onnx", "openvino"]', "export.json must be a JSON object", "['onnx', 'openvino'] (list)"),
        ('{"formats": "onnx,openvino"}', "export.json's formats must list its network formats (text)",
         "'onnx,openvino' (str)"),
    ],
)  # fmt: skip
def test_package_refuses_a_damaged_export_record(tmp_path: Path, text: str, rule: str, found: str) -> None:
    bundle = tmp_path / "E"
    bundle.mkdir()
    (bundle / "preprocess.json").write_text("{}")
    (bundle / "export.json").write_text(text)
    with pytest.raises(ArtifactError) as exc:
        package("models:/m/1", tmp_path / "cube", export_dir=bundle)
    (p,) = exc.value.problems
    assert p.file == str(bundle / "export.json") and p.rule == rule and found in p.value and FIX in p.fix
    assert (bundle / "export.json").read_text() == text


def test_an_export_record_as_export_writes_it_is_read(tmp_path: Path) -> None:
    record = {"formats": ["onnx", "openvino"], "checkpoints": ["ab12"], "parity": {"onnx": 0.0}}
    (tmp_path / "export.json").write_text(json.dumps(record))
    assert read_export_record(tmp_path) == record
    assert read_export_record(tmp_path / "none") is None  # an export of an earlier automed


@pytest.mark.parametrize(
    ("text", "found"),
    [("{", "line 1"), ('{"files": ["onnx"]}', "['onnx'] (list)"), ("[1]", "[1] (list)")],
)
def test_a_damaged_preprocess_json_of_an_export_is_refused(tmp_path: Path, text: str, found: str) -> None:
    """An export's preprocess.json (what package ships, what predict's exported runtime reads) had crashed with a
    bare JSONDecodeError or KeyError."""
    from automed.records import read_bundle_meta

    (tmp_path / "preprocess.json").write_text(text)
    with pytest.raises(ArtifactError) as exc:
        read_bundle_meta(tmp_path)
    (p,) = exc.value.problems
    assert p.file == str(tmp_path / "preprocess.json") and found in p.value and FIX in p.fix
    good = {"files": {"onnx": ["fold_0.onnx"]}, "dataset": "D"}
    (tmp_path / "preprocess.json").write_text(json.dumps(good))
    assert read_bundle_meta(tmp_path) == good


@pytest.mark.parametrize(
    "text", ["{", '["x"]', '{"path": 3, "checkpoints": []}', '{"path": "/e", "checkpoints": "ab"}']
)
def test_a_damaged_export_link_is_no_export(tmp_path: Path, text: str) -> None:
    """automed predict falls back to torch, and package exports afresh, where a damaged export_link.json had
    crashed both with a bare JSONDecodeError, KeyError or TypeError."""
    from automed.export.link import usable_export

    (tmp_path / "model.json").write_text("{}")
    (tmp_path / "export_link.json").write_text(text)
    folder, why = usable_export(tmp_path)
    assert folder is None and why.startswith(f"the export link {tmp_path / 'export_link.json'} is damaged")


def test_a_registered_model_is_not_exported_or_packaged_without_a_parity_case(tmp_path: Path) -> None:
    """`automed export models:/...` without --case skipped the parity check without a word (no table, no parity in
    export.json, no Export section in the card), and `automed package models:/...` shipped that unchecked export.
    Both are refused before anything is downloaded or written."""
    from automed.errors import ConfigError
    from automed.workflow.export import export, package

    with pytest.raises(
        ConfigError, match=r"--case: .*checked against torch on a real case.*pass --case IMAGE"
    ):
        export("models:/m/1", tmp_path / "exp", tracking_uri="sqlite:///nowhere.db")
    with pytest.raises(ConfigError, match=r"automed export models:/m/1 -o DIR --case IMAGE.*--export DIR"):
        package("models:/m/1", tmp_path / "cube", tracking_uri="sqlite:///nowhere.db")
    assert not list(tmp_path.iterdir())
