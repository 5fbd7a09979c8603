"""automed's own records that report, sweep verdicts, export's model card, select, registration and a bundle's
channels read back damaged (not JSON, another type, a key missing): one automed cannot recompute is refused naming
the file, the rule, the value and the fix; a trial's failure record, which the engine's error replaces, is read as
missing with a warning. Each had crashed with a bare JSONDecodeError, KeyError, TypeError or AttributeError."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from automed.errors import ArtifactError
from automed.export.card import model_card, pair_card
from automed.plan.planner import make_plan
from automed.plan.preset import load_preset
from automed.registry_model import channel_names
from automed.search.engine import TrialOutcome
from automed.select.register import registered_version
from automed.select.selection import load_training
from automed.testing.fingerprints import synthetic_fingerprint
from automed.workflow.report_image import image_level_kind, read_image_run
from automed.workflow.report_inputs import resolve
from automed.workflow.sweep_verdict import failure_lines
from tests.conftest import NOT_JSON, refused_naming

# --- report and sweep verdict ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selection", "found"),
    [
        (NOT_JSON, "must be valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"candidates": [{"members": "W"}]}', "must each list their members"),
        ('{"candidates": [3]}', "[3] (list)"),
        # the page names each row and marks the chosen one (a KeyError before)
        ('{"candidates": [{"members": ["W"]}]}', "must each have their name"),
        ('{"candidates": [{"candidate": "W", "members": ["W"]}]}', "must name its chosen candidate"),
        (
            '{"candidates": [{"candidate": "W"}], "chosen": {"members": ["W"]}}',
            "must name its chosen candidate",
        ),
    ],
)
def test_a_report_refuses_a_damaged_selection(tmp_path: Path, selection: str, found: str) -> None:
    (tmp_path / "S").mkdir()
    (tmp_path / "S" / "selection.json").write_text(selection)
    with pytest.raises(ArtifactError) as exc:
        resolve([tmp_path / "S"], tmp_path / "scratch")
    refused_naming(exc, tmp_path / "S" / "selection.json", found, "automed select again")


@pytest.mark.parametrize(
    ("summary", "found"),
    [(NOT_JSON, "must be valid JSON"), ("[]", "[] (list)"), ('{"problem": 1}', "problem")],
)
def test_a_report_refuses_a_damaged_metrics_summary(tmp_path: Path, summary: str, found: str) -> None:
    (tmp_path / "metrics.csv").write_text("case,target,prediction\na,x,x\n")
    (tmp_path / "summary.json").write_text(json.dumps({"problem": "classification", "accuracy": 1.0}))
    assert image_level_kind(tmp_path) == "classification"
    assert read_image_run(tmp_path)[0].attrs["summary"]["accuracy"] == 1.0
    (tmp_path / "summary.json").write_text(summary)
    for read in (image_level_kind, read_image_run):
        with pytest.raises(ArtifactError) as exc:
            read(tmp_path)
        refused_naming(exc, tmp_path / "summary.json", found, "automed metrics again")


@pytest.mark.parametrize("failed", [NOT_JSON, '["TypeError"]', '{"error": 3}'])
def test_a_damaged_failure_record_leaves_the_engines_error(
    tmp_path: Path, failed: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "trials" / "t1").mkdir(parents=True)
    (tmp_path / "trials" / "t1" / "failed.json").write_text(failed)
    with caplog.at_level(logging.WARNING):
        (line,) = failure_lines(tmp_path, [TrialOutcome("t1", "error", "Traceback\nValueError: boom")])
    assert line.startswith("trial t1 failed (no values): ValueError: boom; no traceback saved"), line
    assert "failed.json" in caplog.text and "engine's error" in caplog.text


# --- export's model card ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fingerprint", "found"),
    [
        (NOT_JSON, "must be valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"n_cases": 3}', "must hold n_channels (the channels, a whole number) for the model card"),
    ],
)
def test_a_model_card_refuses_a_damaged_fingerprint(tmp_path: Path, fingerprint: str, found: str) -> None:
    plan = make_plan(synthetic_fingerprint((1.0, 1.0, 1.0), (40,) * 3), load_preset("default"))
    (tmp_path / "fingerprint.json").write_text(fingerprint)
    predictor: Any = SimpleNamespace(
        plan=plan, cfg=plan.configurations["3d_fullres"], configuration="3d_fullres"
    )
    with pytest.raises(ArtifactError) as exc:
        model_card(predictor, {}, tmp_path)
    refused_naming(exc, tmp_path / "fingerprint.json", found)


GOOD_SELECTION = {
    "candidates": [
        {"candidate": "pair", "foreground_mean": 0.8},
        {"candidate": "W0", "foreground_mean": None},
    ],
    "chosen": {"candidate": "pair", "members": ["W0", "W1"]},
    "cv_dice_final": {"dice": [0.8], "foreground_mean": 0.81},
}


@pytest.mark.parametrize(
    ("name", "content", "found"),
    [
        ("selection.json", NOT_JSON, "must be valid JSON"),
        ("selection.json", {**GOOD_SELECTION, "candidates": [{"candidate": "pair"}]}, "candidates must be"),
        (
            "selection.json",
            {**GOOD_SELECTION, "chosen": "pair"},
            "chosen must be an object naming its candidate",
        ),
        ("selection.json", {k: v for k, v in GOOD_SELECTION.items() if k != "cv_dice_final"}, "found none"),
        ("model_bundle/ensemble.json", NOT_JSON, "must be valid JSON"),
        ("model_bundle/ensemble.json", {"members": []}, "members list each member's folder"),
    ],
)
def test_a_pairs_card_refuses_a_damaged_selection_or_pair(
    tmp_path: Path, name: str, content: object, found: str
) -> None:
    plan = make_plan(synthetic_fingerprint((1.0, 1.0, 1.0), (40,) * 3), load_preset("default"))
    (tmp_path / "model_bundle").mkdir()
    pair = {"members": [{"folder": f"member_{i}", "name": f"W{i}", "configuration": "2d"} for i in (0, 1)]}
    (tmp_path / "model_bundle" / "ensemble.json").write_text(json.dumps(pair))
    (tmp_path / "selection.json").write_text(json.dumps(GOOD_SELECTION))
    member = SimpleNamespace(configuration="2d", patch=[8, 8], models=[0, 1], tta=False, step=0.5)
    predictor: Any = SimpleNamespace(plan=plan, members=[member, member], postprocessing=[])
    card = pair_card(predictor, {}, tmp_path)
    assert "| 1 | `W1` | 2d |" in card and "Chosen: pair; CV Dice after postprocessing 0.8100" in card
    (tmp_path / name).write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ArtifactError) as exc:
        pair_card(predictor, {}, tmp_path)
    refused_naming(exc, tmp_path / name, found)


# --- select, registration and a bundle's channels ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("meta", "found"),
    [
        (NOT_JSON, "must be valid JSON"),
        ("[]", "must be a JSON object"),
        ({"config": {"configuration": "3d_fullres"}, "labels": {"0": "bg"}}, "must hold folds"),
        (
            {"config": {"configuration": "3d_fullres"}, "folds": [0], "labels": {"x": "bg"}},
            "keyed by label value",
        ),
        (
            {"config": {"configuration": "3d_fullres", "epoch": 3}, "folds": [0], "labels": {"0": "bg"}},
            "epoch",
        ),
    ],
)
def test_select_refuses_a_damaged_model_json(tmp_path: Path, meta: object, found: str) -> None:
    (tmp_path / "train_config.json").write_text(json.dumps({"dataset": "/data/ds"}))
    (tmp_path / "model.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    with pytest.raises(ArtifactError) as exc:
        load_training(tmp_path)
    refused_naming(exc, tmp_path / "model.json", found, "re-run the training")


@pytest.mark.parametrize(
    ("name", "content", "found"),
    [
        ("selection.json", NOT_JSON, "must be valid JSON"),
        ("selection.json", "[]", "must be a JSON object"),
        ("selection.json", '{"registered": "v3"}', "registered must be the registry entry"),
        ("tracking.json", '{"registered": [3]}', "registered must be the registry entry"),
    ],
)
def test_registration_refuses_a_damaged_registry_entry(
    tmp_path: Path, name: str, content: str, found: str
) -> None:
    assert registered_version(tmp_path) is None
    (tmp_path / "selection.json").write_text(json.dumps({"registered": {"name": "m", "version": "1"}}))
    assert registered_version(tmp_path) == {"name": "m", "version": "1"}
    (tmp_path / name).write_text(content)
    with pytest.raises(ArtifactError) as exc:
        registered_version(tmp_path)
    refused_naming(exc, tmp_path / name, found)


@pytest.mark.parametrize(
    ("channels", "found"), [(NOT_JSON, "must be valid JSON"), ('{"names": ["T1"]}', "None"), ("[1]", "[1]")]
)
def test_a_bundle_with_damaged_channel_names_is_refused(tmp_path: Path, channels: str, found: str) -> None:
    (tmp_path / "channels.json").write_text(json.dumps({"schema_version": 1, "channels": ["T1", "T2"]}))
    assert channel_names(tmp_path) == ["T1", "T2"]
    (tmp_path / "channels.json").write_text(channels)
    with pytest.raises(ArtifactError) as exc:
        channel_names(tmp_path)
    refused_naming(exc, tmp_path / "channels.json", found, "bundle the model again")
