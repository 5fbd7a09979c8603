"""Artifacts that name another folder (a pair's ``ensemble.json``, ``export_link.json``, ``inference.json``,
``previous_stage.json``) record it relative to their own folder too: a project folder moved or copied whole still
finds it, an artifact written before still reads by its absolute path, and no absolute path of the work dirs
leaves the machine in the registered bundle or the model card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from automed.plan.planner import make_plan
from automed.plan.preset import load_preset
from automed.plan.schema import Plan
from automed.testing.fingerprints import synthetic_fingerprint
from automed.train.config import TrainConfig
from automed.train.meta import ModelMeta, resolve_training
from automed.workdir import (
    WorkDir,
    chosen_members,
    recorded_place,
    with_relative_members,
    without_local_places,
)
from tests.conftest import cascade_pair


def _plan(shape: int = 40) -> Plan:
    return make_plan(synthetic_fingerprint((1.0, 1.0, 1.0), (shape,) * 3), load_preset("default"))


def _trained(wd: Path) -> Path:
    """A finished training work dir, cheaply: a valid plan and model.json, and two folds whose final checkpoints
    hold a one-tensor state (enough to bundle and hash them)."""
    plan = _plan()
    wd.mkdir(parents=True)
    plan.save(wd / "plan.json")
    cfg = TrainConfig(configuration="3d_fullres")
    ModelMeta(
        dataset=plan.dataset_name, configuration="3d_fullres", folds=[0, 1], config=cfg,
        resolved=resolve_training(plan, cfg), plan_hash=plan.hash, labels=plan.labels, cv_score=0.5,
    ).save(wd / "model.json")  # fmt: skip
    for k in (0, 1):
        fold = WorkDir(wd).fold("3d_fullres", k)
        fold.mkdir(parents=True)
        torch.save({"model": {"w": torch.full((2,), float(k))}}, fold / "checkpoint_final.pt")
    return wd


def _texts(folder: Path) -> str:
    return "\n".join(
        f.read_text() for f in sorted(folder.rglob("*")) if f.suffix in (".json", ".md", ".txt", ".yaml")
    )


def test_a_recorded_place_prefers_the_relative_one_and_falls_back(tmp_path: Path) -> None:
    (tmp_path / "a" / "x").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    # the relative place exists: it wins over an absolute one that also exists (a copied project)
    assert recorded_place(tmp_path / "a", str(tmp_path / "b"), "x") == tmp_path / "a" / "x"
    # gone relative: the absolute one (a folder moved alone); none recorded: the absolute one (an older artifact)
    assert recorded_place(tmp_path / "a", str(tmp_path / "b"), "y") == tmp_path / "b"
    assert recorded_place(tmp_path / "a", str(tmp_path / "b"), None) == tmp_path / "b"
    record = {
        "relative": ["../w"],
        "chosen": {"members": ["/w"], "relative": ["../w"]},
        "rows": [{"relative": 1}],
    }
    assert without_local_places(record) == {"chosen": {"members": ["/w"]}, "rows": [{}]}


def test_a_copied_selection_uses_the_copied_trainings(tmp_path: Path) -> None:
    """A project copied elsewhere (the original kept): its selection finds the copies, not the originals."""
    proj = tmp_path / "proj"
    (proj / "runs" / "W").mkdir(parents=True)
    (proj / "S").mkdir()
    chosen = with_relative_members({"members": [str(proj / "runs" / "W")]}, proj / "S")
    shutil.copytree(proj, tmp_path / "copy")
    assert chosen_members(tmp_path / "copy" / "S", chosen) == [tmp_path / "copy" / "runs" / "W"]


def test_the_export_link_follows_a_moved_work_dir(tmp_path: Path) -> None:
    from automed.export.link import usable_export, write_link

    proj = tmp_path / "proj"
    wd = _trained(proj / "W")
    report = {"files": {"onnx": []}, "parity": {"onnxruntime": {"passed": True}}}
    for export in (wd / "export", proj / "E"):  # the default place, and one beside the work dir
        export.mkdir()
        (export / "preprocess.json").write_text("{}")
    link = write_link(wd, proj / "E", report)
    assert link["relative"] == "../E" and usable_export(wd)[0] == proj / "E"
    write_link(wd, wd / "export", report)
    shutil.move(proj, tmp_path / "moved")
    moved = tmp_path / "moved" / "W"
    assert usable_export(moved)[0] == moved / "export"
    # a link written before relative places were recorded: its absolute place, gone since the move
    old = json.loads(WorkDir(moved).export_link.read_text())
    old.pop("relative")
    WorkDir(moved).export_link.write_text(json.dumps(old))
    folder, why = usable_export(moved)
    assert folder is None and str(proj / "W" / "export") in why


def test_a_selections_choice_is_found_in_a_copied_project(tmp_path: Path) -> None:
    """inference.json names the selection that decided it: in a copy of the project it is the copied selection (it
    named the original one, still there, so predicting with the copy was refused as chosen by another selection)."""
    from automed.errors import ArtifactError
    from automed.select.segmentation import _choose_for_one
    from automed.workflow.predict import model_dir

    proj = tmp_path / "proj"
    wd = _trained(proj / "runs" / "W")
    sel = proj / "S"
    sel.mkdir()
    chosen = with_relative_members({"candidate": "W", "members": [str(wd)]}, sel)
    (sel / "selection.json").write_text(json.dumps({"chosen": chosen}))
    _choose_for_one(wd, sel, {"postprocessing": [], "decisions": []}, False, None, 1, None, None)
    choice = json.loads(WorkDir(wd).choice.read_text())
    assert choice["selection"] == str(sel) and choice["relative"] == "../../S"
    shutil.copytree(proj, tmp_path / "copy")
    copied = tmp_path / "copy"
    assert model_dir(copied / "S") == copied / "runs" / "W"
    # another selection decided since, and it is still there: refused, as before
    other = copied / "S2"
    other.mkdir()
    (other / "selection.json").write_text(json.dumps({"chosen": chosen}))
    _choose_for_one(
        copied / "runs" / "W", other, {"postprocessing": [], "decisions": []}, False, None, 1, None, None
    )
    with pytest.raises(ArtifactError, match=r"chosen since by another selection \(S2\)"):
        model_dir(copied / "S")


def _pair(proj: Path) -> tuple[Path, list[Path]]:
    from automed.select.register import write_ensemble_bundle

    work = [_trained(proj / "runs" / name) for name in ("W0", "W1")]
    sel = proj / "S"
    write_ensemble_bundle(work, sel / "model_bundle", [], 0.6)
    chosen = with_relative_members({"candidate": "W0 + W1", "members": [str(w) for w in work]}, sel)
    (sel / "selection.json").write_text(json.dumps({"chosen": chosen}))
    return sel, work


def test_a_pairs_bundle_names_no_path_and_finds_its_trainings_when_moved(tmp_path: Path) -> None:
    from automed.workflow.predict import pair_workdirs

    proj = tmp_path / "proj"
    sel, work = _pair(proj)
    ens = json.loads(WorkDir(sel).pair.read_text())
    assert [(m["name"], m["relative"]) for m in ens["members"]] == [
        ("W0", "../../runs/W0"),
        ("W1", "../../runs/W1"),
    ]
    assert str(tmp_path) not in _texts(sel / "model_bundle")
    assert pair_workdirs(sel) == work
    shutil.move(proj, tmp_path / "moved")  # the whole project
    assert pair_workdirs(tmp_path / "moved" / "S") == [tmp_path / "moved" / "runs" / n for n in ("W0", "W1")]
    shutil.move(
        tmp_path / "moved" / "S", tmp_path / "S"
    )  # the selection alone: selection.json's absolute places
    shutil.move(tmp_path / "moved", proj)
    assert pair_workdirs(tmp_path / "S") == work
    # a bundle written before: the trainings by their absolute place
    shutil.rmtree(tmp_path / "S")
    old = {"members": [{"folder": f"member_{i}", "workdir": str(w), "configuration": "3d_fullres"} for i, w in
                       enumerate(work)]}  # fmt: skip
    WorkDir(tmp_path / "S").pair.parent.mkdir(parents=True)
    WorkDir(tmp_path / "S").pair.write_text(json.dumps(old))
    assert pair_workdirs(tmp_path / "S") == work


def test_a_later_selection_of_one_training_is_not_predicted_with_an_earlier_pair(tmp_path: Path) -> None:
    """``automed select A B -o S`` chose the pair, a later one into S chose A alone: S predicts with A (it took the
    earlier pair's bundle, still in S), and the later selection removes that bundle."""
    from automed.workflow.choice import record_choice
    from automed.workflow.predict import model_dir

    sel, work = _pair(tmp_path / "proj")
    assert model_dir(sel) == sel  # the pair: its bundle
    one = {"chosen": with_relative_members({"candidate": "W0", "members": [str(work[0])]}, sel)}
    (sel / "selection.json").write_text(
        json.dumps(one)
    )  # a kill after selection.json: the bundle is still there
    assert WorkDir(sel).pair.is_file() and model_dir(sel) == work[0]
    tracker = SimpleNamespace(log_artifact=lambda *a: None, end_run=lambda *a: None)
    record_choice(one, sel, 0.6, tracker, "run")  # type: ignore[arg-type]
    assert not (sel / "model_bundle").exists() and model_dir(sel) == work[0]


def test_a_pairs_card_names_its_trainings_by_name(tmp_path: Path) -> None:
    from automed.export.card import pair_card

    sel, _ = _pair(tmp_path / "proj")
    (sel / "selection.json").unlink()  # the card's members only
    member = SimpleNamespace(configuration="3d_fullres", patch=[8, 8, 8], models=[0, 1], tta=False, step=0.5)
    pred: Any = SimpleNamespace(plan=_plan(), members=[member, member], postprocessing=[])
    card = pair_card(pred, {}, sel)
    assert "| 0 | `W0` | 3d_fullres |" in card and "| 1 | `W1` |" in card and str(tmp_path) not in card
    old = json.loads(WorkDir(sel).pair.read_text())
    for m in old["members"]:  # a bundle written before names were recorded: the name of its absolute place
        m["workdir"] = str(tmp_path / "proj" / "runs" / m.pop("name"))
    WorkDir(sel).pair.write_text(json.dumps(old))
    assert "| 1 | `W1` |" in pair_card(pred, {}, sel) and str(tmp_path) not in pair_card(pred, {}, sel)


@pytest.mark.slow
def test_a_registered_pair_ships_no_local_place(tmp_path: Path) -> None:
    from automed.model_store import download_model
    from automed.select.register import register_members
    from automed.tracking import Tracker

    proj = tmp_path / "proj"
    work = [_trained(proj / "runs" / name) for name in ("W0", "W1")]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "moved")
    run = tracker.start_run("select-test")
    reg = register_members(work, proj / "S", [], 0.6, tracker, run)
    tracker.end_run(run)
    assert (
        "relative" in WorkDir(proj / "S").pair.read_text()
    )  # kept locally: the selection finds its trainings
    shipped = download_model(reg["uri"], tmp_path / "download", uri)
    text = _texts(shipped)
    assert '"name": "W0"' in text and "relative" not in text and str(proj) not in text


def test_a_cascade_finds_its_first_stage_moved_with_it(tmp_path: Path) -> None:
    from automed.preprocess.previous_stage import check_first_stage, link_previous

    proj = tmp_path / "proj"
    low, casc, plan = cascade_pair(proj)
    link = link_previous(casc, low, plan, "3d_cascade_fullres")
    assert link["relative"] == "../LOW" and check_first_stage(casc) == low
    shutil.copytree(proj, tmp_path / "copy")
    shutil.rmtree(proj)
    copy = tmp_path / "copy"
    assert check_first_stage(copy / "CASC") == copy / "LOW"
    written = WorkDir(copy / "CASC").previous_link.read_bytes()
    # the same first stage given at its new place: the link stays as it was (its folds were trained from it)
    assert link_previous(copy / "CASC", copy / "LOW", plan, "3d_cascade_fullres") == link
    assert WorkDir(copy / "CASC").previous_link.read_bytes() == written


def test_a_cascade_link_of_the_earlier_format_stays_in_it(tmp_path: Path) -> None:
    """No migration: a link without ``relative`` is read by its absolute place, and the same first stage linked
    again keeps the format (the training's check of an unchanged link compares the links whole)."""
    from automed.errors import ArtifactError
    from automed.preprocess.previous_stage import check_first_stage, legacy_digest, link_previous

    low, casc, plan = cascade_pair(tmp_path / "proj")
    link = link_previous(casc, low, plan, "3d_cascade_fullres")
    old = {k: v for k, v in link.items() if k != "relative"}
    WorkDir(casc).previous_link.write_text(json.dumps(old))
    assert check_first_stage(casc) == low
    assert link_previous(casc, low, plan, "3d_cascade_fullres") == old
    legacy = {**old, "model": legacy_digest(WorkDir(low).model)}  # a link of before model digests
    WorkDir(casc).previous_link.write_text(json.dumps(legacy))
    assert link_previous(casc, low, plan, "3d_cascade_fullres") == old
    shutil.move(low, tmp_path / "LOW-moved")  # an old link cannot follow its first stage
    with pytest.raises(ArtifactError, match="moved or deleted"):
        check_first_stage(casc)
