"""Selection on CV: the better of two configurations wins, pairs are compared, and largest-component postprocessing
is kept only when it helps (crafted CV probabilities, so the expected decisions are known)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from automed.data.cases import read_case
from automed.data.dataset import load_dataset
from automed.parallel import Stages
from automed.runtime.postprocess import apply, largest_component
from automed.select.class_bias import GRID
from automed.select.selection import select
from automed.testing.synthetic import make_dataset
from automed.train.config import TrainConfig


def _fake_training(root: Path, name: str, ds_path: Path, labels: dict[str, np.ndarray], edit: str) -> Path:
    """A finished training work dir whose CV probabilities are the reference, edited: ``islands`` adds small spurious
    blobs of label 1 far from the structures; ``eroded`` removes a slab of every structure; ``grown``: label 2 also
    wins, narrowly (0.55 against 0.45), in a one-voxel shell of background around it (a model that draws it too
    large)."""
    wd = root / name
    cases = sorted(labels)
    folds = [cases[::2], cases[1::2]]
    (wd).mkdir(parents=True)
    (wd / "splits.json").write_text(
        json.dumps({"n_folds": 2, "folds": [{"train": folds[1 - k], "val": folds[k]} for k in (0, 1)]})
    )
    (wd / "train_config.json").write_text(json.dumps({"dataset": str(ds_path)}))
    cfg = TrainConfig(configuration="3d_fullres")
    meta = {
        "config": cfg.model_dump(mode="json"),
        "folds": [0, 1],
        "labels": {"0": "background", "1": "large", "2": "small"},
    }
    (wd / "model.json").write_text(json.dumps(meta))
    for k, val in enumerate(folds):
        vdir = wd / "train" / "3d_fullres" / f"fold_{k}" / "validation"
        vdir.mkdir(parents=True)
        for cid in val:
            lab = labels[cid].copy()
            if edit == "islands":
                lab[0, 0, 0:2] = 1
                lab[-1, -1, -2:] = 1
            elif edit == "eroded":
                zs = np.flatnonzero(lab.any(axis=(1, 2)))
                lab[zs[: max(1, len(zs) // 3)]] = 0
            probs = np.stack([(lab == v).astype(np.float32) * 0.9 + 0.05 for v in (0, 1, 2)])
            if edit == "grown":
                from scipy import ndimage

                shell = ndimage.binary_dilation(lab == 2) & (lab == 0)
                probs[:, shell] = np.array([0.45, 0.0, 0.55], dtype=np.float32)[:, None]
            np.savez_compressed(vdir / f"{cid}.npz", probabilities=probs.astype(np.float16))
    return wd


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("select")
    ds_path = make_dataset(root / "ds", n_cases=6, shape=(16, 24, 24), seed=5)
    ds = load_dataset(ds_path)
    labels = {}
    for c in ds.cases:
        lab = read_case(c, False).label
        assert lab is not None
        labels[c.case_id] = lab
    return ds_path, labels


def test_better_configuration_wins_and_postprocessing_helps(
    dataset: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    ds_path, labels = dataset
    good = _fake_training(tmp_path, "good", ds_path, labels, "islands")
    bad = _fake_training(tmp_path, "bad", ds_path, labels, "eroded")
    res = select([bad, good], tmp_path / "sel")
    names = [r["candidate"] for r in res["candidates"]]
    assert names == ["bad", "good", "bad + good"]
    scores = {r["candidate"]: r["foreground_mean"] for r in res["candidates"]}
    assert scores["good"] > scores["bad"]
    assert res["chosen"]["candidate"] == max(scores, key=lambda k: scores[k])
    assert res["chosen"]["candidate"] == "good"
    kept = [d for d in res["decisions"] if d["kept"]]
    assert kept, res["decisions"]  # removing the spurious islands helps...
    assert res["cv_dice_final"]["foreground_mean"] > res["cv_dice_before_postprocessing"]["foreground_mean"]
    for k, v in res["cv_dice_final"]["dice"].items():  # ...and no label got worse
        assert v >= res["cv_dice_before_postprocessing"]["dice"][k] - 1e-9
    assert (tmp_path / "sel" / "selection.json").is_file()


def test_a_labels_largest_component_is_scored_on_that_label(
    dataset: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    """Each label's largest-component variant changes only that label (checked case by case), and its decision's
    Dice of that label is the mean over the cases with the step applied (computed here from the CV probabilities and
    the references)."""
    from automed.select.selection import dice_table

    ds_path, labels = dataset
    wd = _fake_training(tmp_path, "good", ds_path, labels, "islands")
    res = select([wd], tmp_path / "sel")
    splits = json.loads((wd / "splits.json").read_text())["folds"]
    assert all(s["kind"] != "class_bias" for s in res["postprocessing"])  # (not applied below)
    assert [d["step"] for d in res["decisions"] if d["step"].startswith("label ")] == ["label 1", "label 2"]
    earlier = [s for s in res["decisions"] if s["kept"] and s["step"] == "all foreground"]
    values = [0, 1, 2]
    for d in (d for d in res["decisions"] if d["step"].startswith("label ")):
        (v,) = d["labels"]
        own = []
        for k, fold in enumerate(splits):
            for cid in fold["val"]:
                npz = wd / "train" / "3d_fullres" / f"fold_{k}" / "validation" / f"{cid}.npz"
                pred = np.load(npz)["probabilities"].astype(np.float32).argmax(0)
                pred = apply(pred, [{"kind": e["kind"], "labels": e["labels"]} for e in earlier])
                ref = labels[cid]
                kept = apply(pred, [{"kind": "largest_component", "labels": [v]}])
                # what the selection relies on: no other label's Dice moves
                whole, variant = dice_table(pred, ref, values), dice_table(kept, ref, values)
                assert {u: x for u, x in variant.items() if u != v} == {
                    u: x for u, x in whole.items() if u != v
                }
                inter, total = (
                    int(((kept == v) & (ref == v)).sum()),
                    int((kept == v).sum() + (ref == v).sum()),
                )
                own.append(2.0 * inter / total if total else float("nan"))
        assert d["after"]["dice"][str(v)] == pytest.approx(float(np.nanmean(own)))


def test_select_shows_its_stages_as_plain_lines_off_a_terminal(
    dataset: tuple[Path, dict[str, np.ndarray]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each stage that reads the CV cases says when it starts and ends (it printed nothing for minutes)."""
    ds_path, labels = dataset
    good = _fake_training(tmp_path, "good", ds_path, labels, "islands")
    bad = _fake_training(tmp_path, "bad", ds_path, labels, "eroded")
    select([bad, good], tmp_path / "sel", progress=Stages(every_s=0))
    lines = capsys.readouterr().out.splitlines()
    n = len(labels)
    starts = [line for line in lines if line.endswith(": 0/" + line.rsplit("/", 1)[-1])]
    search = f"class bias: searching offsets (2 rounds x 2 labels x {len(GRID)})"
    assert starts == [
        f"scoring 3 candidate(s) on {n} CV cases: 0/{n}",
        f"class bias: reading {n} CV cases: 0/{n}",
        f"{search}: 0/{2 * 2 * len(GRID)}",  # the search is counted too (the bar stood at N/N while it ran)
        f"largest components: 0/{2 * n}",  # all foreground, then each label
    ]
    ends = [line.split(" done in ")[0] for line in lines if " done in " in line]
    assert ends == [
        f"scoring 3 candidate(s) on {n} CV cases: {n}/{n}",
        f"class bias: reading {n} CV cases: {n}/{n}",
        f"{search}: {2 * 2 * len(GRID)}/{2 * 2 * len(GRID)}",
        f"largest components: {2 * n}/{2 * n}",
    ]
    assert len(lines) > 8  # and the counts between


def test_postprocessing_rejected_when_it_hurts(
    dataset: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    """References whose structures come in two pieces: keeping the largest component would delete true voxels, so
    every step is measured worse and rejected."""
    import shutil

    import SimpleITK as sitk

    ds_path, _ = dataset
    copy = tmp_path / "ds2"
    shutil.copytree(ds_path, copy)
    split = {}
    for f in sorted((copy / "labelsTr").iterdir()):
        img = sitk.ReadImage(str(f))
        lab = sitk.GetArrayFromImage(img)
        for v in (1, 2):  # cut every structure in two at its middle slice
            zs = np.flatnonzero((lab == v).any(axis=(1, 2)))
            if len(zs) >= 3:
                lab[zs[len(zs) // 2]][lab[zs[len(zs) // 2]] == v] = 0
        out = sitk.GetImageFromArray(lab)
        out.CopyInformation(img)
        sitk.WriteImage(out, str(f))
        split[f.name.split(".")[0]] = lab
    assert any(largest_component(lab == 1).sum() < (lab == 1).sum() for lab in split.values())
    exact = _fake_training(tmp_path, "exact", copy, split, "none")
    res = select([exact], tmp_path / "sel")
    assert res["cv_dice_before_postprocessing"]["foreground_mean"] == pytest.approx(1.0)
    assert res["decisions"] and not any(d["kept"] for d in res["decisions"])
    assert any(d["after"]["foreground_mean"] < d["before"]["foreground_mean"] for d in res["decisions"])
    assert res["postprocessing"] == []
    steps = [{"kind": "largest_component", "labels": [1]}]
    lab = next(iter(split.values()))
    assert (apply(lab, steps) == 1).sum() == largest_component(lab == 1).sum()


def test_class_bias_corrects_a_label_drawn_too_large(
    dataset: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    """Label 2 narrowly wins a shell of background around it: a negative offset for label 2 (and none for label 1)
    restores the reference; the step leads the postprocessing, and the runtime's argmax applies it."""
    from automed.runtime.model import average
    from automed.runtime.postprocess import class_bias, decide

    ds_path, labels = dataset
    grown = _fake_training(tmp_path, "grown", ds_path, labels, "grown")
    res = select([grown], tmp_path / "sel")
    (bias,) = [d for d in res["decisions"] if d["step"] == "class bias"]
    assert (
        bias["kept"]
        and bias["before"]["dice"]["2"] < 0.95
        and bias["after"]["dice"]["2"] == pytest.approx(1.0)
    )
    assert bias["after"]["dice"]["1"] == pytest.approx(bias["before"]["dice"]["1"])
    offsets = class_bias(res["postprocessing"])
    assert res["postprocessing"][0]["kind"] == "class_bias" and offsets is not None
    assert offsets[0] == 0.0 and offsets[1] == 0.0 and offsets[2] < 0
    assert res["cv_dice_final"]["foreground_mean"] == pytest.approx(1.0)
    # the runtime decides labels with the offsets; the label-map steps skip the bias step
    cid = sorted(labels)[0]
    probs = np.load(next(grown.rglob(f"{cid}.npz")))["probabilities"].astype(np.float32)
    values = np.array([0, 1, 2], dtype=np.int16)
    assert (values[decide(probs)] == 2).sum() > (labels[cid] == 2).sum()
    out, _ = average([probs], values, res["postprocessing"])
    assert np.array_equal(out, labels[cid])
    from automed.runtime.pipeline import Spec, to_original

    spec = Spec([0, 1, 2], [0, 1, 2], [1.0] * 3, 3, [], 3, 0, 3.0, [0, 1, 2], 1)
    shape = list(probs.shape[1:])
    props = {"separate_axis": None, "shape_after_crop": shape, "shape_before_crop": shape}
    props["crop_box"] = [[0, n] for n in shape]
    assert np.array_equal(to_original(probs, props, spec, class_bias=offsets)[0], labels[cid])
    assert not np.array_equal(to_original(probs, props, spec)[0], labels[cid])
    assert np.array_equal(
        apply(labels[cid], res["postprocessing"]), apply(labels[cid], res["postprocessing"][1:])
    )


def test_class_bias_is_not_kept_without_a_gain(
    dataset: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    ds_path, labels = dataset
    res = select([_fake_training(tmp_path, "exact", ds_path, labels, "none")], tmp_path / "sel")
    (bias,) = [d for d in res["decisions"] if d["step"] == "class bias"]
    assert not bias["kept"] and "kept when it rises by at least" in bias["reason"]
    assert all(s["kind"] != "class_bias" for s in res["postprocessing"])


def test_class_bias_search_that_would_not_fit_in_memory_is_skipped(
    dataset: tuple[Path, dict[str, np.ndarray]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import automed.select.class_bias as cb

    monkeypatch.setattr(cb, "MAX_VALUES", 10)
    ds_path, labels = dataset
    res = select(
        [_fake_training(tmp_path, "grown", ds_path, labels, "grown")],
        tmp_path / "sel",
        progress=Stages(every_s=3600),
    )
    (bias,) = [d for d in res["decisions"] if d["step"] == "class bias"]
    assert not bias["kept"] and bias["reason"].startswith("not searched")
    assert bias["before"] == bias["after"] == res["cv_dice_before_postprocessing"]
    # the plain lines (start and end: every_s) say so: the reading stopped at the first case (it said "0/N done"),
    # the search was skipped
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("class bias")]
    n, why = len(labels), "the CV cases' uncertain voxels exceed 10 values in memory"
    assert lines[0] == f"class bias: reading {n} CV cases: 0/{n}"
    assert re.fullmatch(rf"class bias: reading {n} CV cases: 1/{n} stopped in \d+ s: {why}", lines[1])
    assert lines[2:] == [
        f"class bias: searching offsets (2 rounds x 2 labels x {len(GRID)}): skipped ({why})"
    ]


def test_decide_is_the_argmax_of_offset_log_probabilities() -> None:
    from automed.runtime.postprocess import decide

    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=(6, 7, 8)).transpose(3, 0, 1, 2).astype(np.float32)
    for offsets in ([0.0, -2.0, 0.5, 1.0], [0.0, 0.0, -0.25, -1.5], [0.0] * 4):
        expected = (np.log(p) + np.asarray(offsets)[:, None, None, None]).argmax(0)
        assert (decide(p, offsets) == expected).mean() > 0.999
    with pytest.raises(ValueError, match="3 offsets for 4 classes"):
        decide(p, [0.0, 1.0, 0.0])


def test_each_task_of_a_dataset_has_its_own_registered_name() -> None:
    # a classification and a regression of one dataset (--task) must not share a name: the champion rule would
    # compare an AUC with an R²
    from automed.plan.planner import make_plan
    from automed.plan.preset import load_preset
    from automed.plan.schema import TargetPlan
    from automed.select.register import model_name_for
    from automed.testing.fingerprints import synthetic_fingerprint

    plan = make_plan(synthetic_fingerprint((1.0, 1.0, 1.0), (32, 32, 32)), load_preset("default"))
    plan = plan.model_copy(update={"dataset_name": "My Data/1"})
    names = {model_name_for(plan)}
    for kind, loss in (("classification", "cross_entropy"), ("regression", "huber")):
        target = TargetPlan(kind=kind, loss=loss, reasons={})  # type: ignore[arg-type]
        names.add(model_name_for(plan.model_copy(update={"target": target})))
    assert names == {"automed-My_Data_1", "automed-My_Data_1-classification", "automed-My_Data_1-regression"}


def test_a_models_uri_that_names_nothing_lists_what_is_registered(tmp_path: Path) -> None:
    """No store where one is looked up: an error, and no empty store created; an unknown name or alias: the
    registered models with their aliases instead of MLflow's raw exception."""
    from mlflow.tracking import MlflowClient

    from automed.errors import ArtifactError
    from automed.model_store import download_model

    with pytest.raises(ArtifactError, match="no store at"):
        download_model("models:/x@champion", tmp_path / "d", f"sqlite:///{tmp_path / 'none.db'}")
    assert not (tmp_path / "none.db").exists()
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).create_registered_model("automed-A")
    with pytest.raises(ArtifactError, match=r"registered here: automed-A \(aliases none"):
        download_model("models:/automed-B@champion", tmp_path / "d", uri)


def test_select_of_a_folder_that_is_no_training_leaves_no_trace(tmp_path: Path) -> None:
    """``automed select DATASET`` by mistake: refused before a pseudonym key (or anything) is written there."""
    from automed import api
    from automed.errors import AutomedError

    data = make_dataset(tmp_path / "d", n_cases=2, shape=(8, 8, 8))
    before = sorted(p.name for p in data.iterdir())
    with pytest.raises(AutomedError):
        api.select([data], tmp_path / "S")
    assert sorted(p.name for p in data.iterdir()) == before and not (tmp_path / "S").exists()


def test_a_sweep_folder_or_dataset_as_a_model_says_what_to_pass(tmp_path: Path) -> None:
    from automed.errors import ArtifactError
    from automed.workdir import WorkDir

    (tmp_path / "sw").mkdir()
    (tmp_path / "sw" / "sweep.json").write_text("{}")
    with pytest.raises(ArtifactError, match=r"a sweep's folder.*trials/<key>"):
        WorkDir(tmp_path / "sw").require_model()
    data = make_dataset(tmp_path / "d", n_cases=2, shape=(8, 8, 8))
    with pytest.raises(ArtifactError, match=r"a dataset folder.*into a new folder"):
        WorkDir(data).require_model()


def test_a_csv_or_class_folder_dataset_as_a_model_is_named_a_dataset(tmp_path: Path) -> None:
    """A CSV dataset's folder, or a folder of one sub-folder of images per class, was told to train into itself."""
    from automed.errors import ArtifactError
    from automed.testing.synthetic_image_level import make_classification
    from automed.workdir import WorkDir

    csv = make_classification(tmp_path / "c", n_cases=4)
    for data in (csv.parent, csv):  # the CSV's folder, or the CSV itself
        with pytest.raises(ArtifactError, match=r"a dataset.*into a new folder") as exc:
            WorkDir(data).require_model()
        assert "-o " + str(data) not in str(exc.value)
    classes = tmp_path / "by_class"
    for name in ("benign", "malignant"):
        (classes / name).mkdir(parents=True)
        (classes / name / "a.png").write_bytes(b"")
    with pytest.raises(ArtifactError, match=r"a dataset folder"):
        WorkDir(classes).require_model()


def test_predict_names_a_model_that_is_none_before_its_output(tmp_path: Path) -> None:
    """``automed predict DATASET -i IN -o OUT`` with OUT holding earlier predictions: the model is the first thing to
    fix (it was told of the output first, then, that fixed, of the model)."""
    from automed import api
    from automed.errors import ArtifactError

    data = make_dataset(tmp_path / "d", n_cases=2, shape=(8, 8, 8))
    out = tmp_path / "P"
    out.mkdir()
    (out / "earlier.nii.gz").write_bytes(b"")
    with pytest.raises(ArtifactError, match=r"a dataset folder.*into a new folder"):
        api.predict(data, data / "imagesTr", out)
    assert sorted(p.name for p in out.iterdir()) == ["earlier.nii.gz"]


def test_a_latency_target_is_positive(tmp_path: Path) -> None:
    from automed import api
    from automed.errors import ConfigError

    with pytest.raises(ConfigError, match="positive number of seconds"):
        api.select([tmp_path], tmp_path / "S", latency_target=-1)


def test_a_selection_moved_with_its_trainings_still_finds_them(tmp_path: Path) -> None:
    """selection.json named its trainings by absolute path only: a project folder moved whole (selection and work
    dirs together) could not predict with the selection."""
    import shutil

    from automed.workdir import with_relative_members
    from automed.workflow.predict import model_dir

    proj = tmp_path / "proj"
    (proj / "runs" / "W").mkdir(parents=True)
    (proj / "runs" / "W" / "model.json").write_text("{}")
    (proj / "S").mkdir()
    chosen = with_relative_members({"candidate": "W", "members": [str(proj / "runs" / "W")]}, proj / "S")
    (proj / "S" / "selection.json").write_text(json.dumps({"chosen": chosen}))
    assert model_dir(proj / "S") == proj / "runs" / "W"
    shutil.move(proj, tmp_path / "moved")
    assert model_dir(tmp_path / "moved" / "S") == (tmp_path / "moved" / "runs" / "W").resolve()
