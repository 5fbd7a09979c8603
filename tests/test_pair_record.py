"""A pair bundle's ``ensemble.json`` (``automed select`` chose two trainings) is read through
``records.read_pair``: a damaged one is refused naming the file, the rule, the value and the fix, where predict,
export, package and the registry's model crashed with a bare JSONDecodeError, KeyError or TypeError; a member folder
that is not a plain name beside the file (a path out of the bundle) is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from automed.errors import ArtifactError
from automed.records import read_pair

GOOD = {
    "schema_version": 1,
    "members": [
        {
            "folder": "member_0",
            "name": "a",
            "relative": "../../a",
            "configuration": "3d_fullres",
            "cv_score": 0.8,
        },
        {"folder": "member_1", "name": "b", "relative": None, "configuration": "2d", "cv_score": 0.7},
    ],
    "combine": "mean of probabilities",
    "postprocessing": [],
    "cv_score": 0.81,
}


def test_a_pair_as_select_writes_it_is_read(tmp_path: Path) -> None:
    (tmp_path / "ensemble.json").write_text(json.dumps(GOOD))
    assert read_pair(tmp_path / "ensemble.json") == GOOD
    old = {
        "members": [{"folder": "member_0", "workdir": "/w/a"}]
    }  # before schema_version and relative places
    (tmp_path / "ensemble.json").write_text(json.dumps(old))
    assert read_pair(tmp_path / "ensemble.json") == old


@pytest.mark.parametrize(
    ("members", "found"),
    [
        (None, "None (NoneType)"),
        ([], "[] (list)"),
        (["member_0"], "['member_0'] (list)"),
        ([{"name": "a"}], "{'name': 'a'} (dict)"),
        ([{"folder": "../../elsewhere"}], "'../../elsewhere'"),
        ([{"folder": ".."}], "'..'"),
        ([{"folder": "/etc"}], "'/etc'"),
        ([{"folder": "member_0", "relative": 3}], "'relative': 3"),
    ],
)
def test_a_damaged_pair_is_refused(tmp_path: Path, members: object, found: str) -> None:
    path = tmp_path / "ensemble.json"
    path.write_text(json.dumps({**GOOD, "members": members}))
    with pytest.raises(ArtifactError) as exc:
        read_pair(path)
    (p,) = exc.value.problems
    assert p.file == str(path) and p.rule.startswith("ensemble.json's members list") and found in p.value
    assert "run automed select again" in p.fix


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ('{"members": [', "ensemble.json must be valid JSON"),
        ("[]", "ensemble.json must be a JSON object"),
        (json.dumps({**GOOD, "schema_version": 9}), "schema_version"),
        (json.dumps({**GOOD, "postprocessing": "largest"}), "ensemble.json's postprocessing is a list"),
    ],
)
def test_a_pair_record_that_is_no_pair_is_refused(tmp_path: Path, text: str, rule: str) -> None:
    path = tmp_path / "ensemble.json"
    path.write_text(text)
    with pytest.raises(ArtifactError) as exc:
        read_pair(path)
    assert rule in str(exc.value)


def test_a_selection_folders_damaged_pair_is_named_by_predict(tmp_path: Path) -> None:
    """The members of a selection folder's pair (predict, export and report find them) are read checked."""
    from automed.workdir import pair_members

    bundle = tmp_path / "S" / "model_bundle"
    bundle.mkdir(parents=True)
    (bundle / "ensemble.json").write_text(json.dumps({"members": [{"name": "a"}]}))
    with pytest.raises(ArtifactError, match=r"ensemble\.json's members list"):
        pair_members(tmp_path / "S")


def test_a_pair_record_that_is_not_text_is_refused(tmp_path: Path) -> None:
    """read_json (every checked reader) names a file that is not UTF-8 text (a bare UnicodeDecodeError before)."""
    path = tmp_path / "ensemble.json"
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(ArtifactError) as exc:
        read_pair(path)
    (p,) = exc.value.problems
    assert p.rule == "ensemble.json must be valid JSON" and p.value == "not UTF-8 text (byte 0xff at 0)"
