"""Outputs never replace inputs, the model or folders automed did not write; replacing a folder survives a kill;
predict checks its inputs against the model (channels, finite voxels, distinct output names)."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from automed.artifacts import OUTPUT_MARKER, atomic_directory, claim_output, mark_output
from automed.errors import ArtifactError, ConfigError, DatasetError
from automed.infer.inputs import discover
from automed.testing.synthetic import make_dataset


def _tree(root: Path) -> dict[str, str]:
    """Path -> content hash of every file under ``root``."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_claim_refuses_the_model_its_parents_and_the_inputs(tmp_path: Path) -> None:
    model, inputs = tmp_path / "W", tmp_path / "in"
    model.mkdir()
    inputs.mkdir()
    (inputs / "a.nii.gz").write_bytes(b"x")
    for out in (model, tmp_path, inputs):
        with pytest.raises(ArtifactError, match="must not be, or hold, the model or the inputs") as err:
            claim_output(out, "export", protected=[model, inputs / "a.nii.gz"], overwrite=True)
        assert "choose another output folder" in str(err.value)
    assert claim_output(model / "export", "export", protected=[model]) == (model / "export").resolve()
    # inside the model or the inputs, --overwrite never replaces a folder automed did not write as that output
    for holder in (model, inputs):
        (holder / "train").mkdir()
        (holder / "train" / "checkpoint_final.pt").write_bytes(b"weights")
        with pytest.raises(ArtifactError, match="never replaces a folder it did not write"):
            claim_output(holder / "train", "export", protected=[model, inputs / "a.nii.gz"], overwrite=True)
    mark_output(model / "train", "export")  # an earlier export there is replaced as usual
    assert claim_output(model / "train", "export", protected=[model]) == (model / "train").resolve()


def test_claim_never_replaces_a_foreign_folder_and_another_kind_only_with_overwrite(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    for overwrite in (False, True):  # a folder automed did not write may hold anything of the user's
        with pytest.raises(ArtifactError, match="never replaces a folder it did not write") as err:
            claim_output(foreign, "cube", overwrite=overwrite)
        assert "not written by automed" in str(err.value) and "choose a new or empty folder" in str(err.value)
    other = tmp_path / "preds"
    other.mkdir()
    mark_output(other, "predictions")
    (other / "x.nii.gz").write_bytes(b"x")
    with pytest.raises(ArtifactError, match=r"an automed output \(predictions\)") as err:
        claim_output(other, "export")
    assert "--overwrite" in str(err.value)
    assert claim_output(other, "export", overwrite=True) == other.resolve()  # automed's own output
    assert claim_output(other, "predictions") == other.resolve()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert claim_output(empty, "export") == empty.resolve()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArtifactError, match="must be a folder"):
        claim_output(tmp_path / "file", "export")
    assert (foreign / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "around",
    ["export", "cube", "report", "metrics", "anonymize", "convert", "grid", "patches", "predictions"],
)
def test_an_output_inside_one_that_is_replaced_whole_is_refused(tmp_path: Path, around: str) -> None:
    """`package --mlcube W/export/cube` was accepted, and the next `automed export W` (which replaces W/export
    whole) removed the cube; the same for any output inside one that a later run replaces whole."""
    outer = tmp_path / "outer"
    outer.mkdir()
    mark_output(outer, around)
    for out in (outer / "cube", outer / "deeper" / "report"):
        with pytest.raises(ArtifactError, match="must not lie inside another automed output") as err:
            claim_output(out, "cube")
        assert f"an automed {around} output" in str(err.value) and f"outside {outer.resolve()}" in str(
            err.value
        )
    assert claim_output(outer, around) == outer.resolve()  # the output itself is still its own earlier output
    assert not (outer / "cube").exists()


def test_outputs_nested_in_older_or_replaced_outputs_are_refused(tmp_path: Path) -> None:
    """An export or cube written before automed marked its outputs is recognised around a new output; replacing an
    output that holds another automed output (nested before this was refused) is refused, not a silent removal;
    explanations, written in place and never cleared, may hold an output."""
    old_export = tmp_path / "W" / "export"
    old_export.mkdir(parents=True)
    (old_export / "export.json").write_text("{}")
    (old_export / "preprocess.json").write_text("{}")
    old_cube = tmp_path / "cube"
    (old_cube / "mlcube").mkdir(parents=True)
    (old_cube / "mlcube" / "mlcube.yaml").write_text("name: x\n")
    for outer, around in ((old_export, "export"), (old_cube, "cube")):
        with pytest.raises(ArtifactError, match=f"an automed {around} output"):
            claim_output(outer / "cube", "cube")
    report = tmp_path / "report"
    (report / "inner").mkdir(parents=True)
    mark_output(report / "inner", "metrics")
    mark_output(report, "report")
    with pytest.raises(ArtifactError, match="must not remove another automed output inside it") as err:
        claim_output(report, "report")
    assert str(report / "inner") in str(err.value) and "metrics" in str(err.value)
    explained = tmp_path / "maps"
    explained.mkdir()
    mark_output(explained, "explanations")
    assert claim_output(explained / "report", "report") == (explained / "report").resolve()


def test_a_replacement_killed_between_its_renames_is_found_again(tmp_path: Path) -> None:
    final = tmp_path / "export"
    with atomic_directory(final) as tmp:
        (tmp / "v1").write_text("1")
    # a kill after `final -> .final.old-PID` and before `tmp -> final` leaves only the hidden earlier folder
    final.rename(tmp_path / ".export.old-12345")
    with pytest.raises(RuntimeError), atomic_directory(final) as tmp:
        raise RuntimeError("killed while building")
    assert (final / "v1").read_text() == "1"  # put back before the new attempt started
    with atomic_directory(final) as tmp:
        (tmp / "v2").write_text("2")
    assert sorted(p.name for p in final.iterdir()) == ["v2"]
    assert not list(tmp_path.glob(".export.*"))


def _img(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))


def test_two_channels_sent_to_a_one_channel_model(tmp_path: Path) -> None:
    for ch in (0, 1):
        _img(tmp_path / "in" / f"pat_{ch:04d}.nii.gz", np.zeros((4, 5, 6), np.float32))
    _img(tmp_path / "in" / "other.nii.gz", np.zeros((4, 5, 6), np.float32))
    with pytest.raises(DatasetError) as err:
        discover(tmp_path / "in", 1)
    (p,) = err.value.problems
    assert p.file.endswith("pat") and "1 channel per case" in p.rule
    assert "pat_0000.nii.gz" in p.value and "pat_0001.nii.gz" in p.value and "trained on" in p.fix
    (tmp_path / "in" / "other.nii.gz").unlink()
    assert [c.case_id for c in discover(tmp_path / "in", 2)] == ["pat"]  # what a two-channel model takes


def test_two_inputs_with_one_output_name(tmp_path: Path) -> None:
    arr = np.zeros((5, 6), np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(tmp_path / "a.png"))
    _img(tmp_path / "a.nii.gz", np.zeros((1, 5, 6), np.float32))
    with pytest.raises(DatasetError) as err:
        discover(tmp_path, 1)
    (p,) = err.value.problems
    assert "own case ID" in p.rule and "a from" in p.value and "rename" in p.fix
    # another file type with the same ID: one map, one review, two table rows for "a" otherwise
    (tmp_path / "a.png").unlink()
    _img(tmp_path / "A.mha", np.zeros((1, 5, 6), np.float32))
    with pytest.raises(DatasetError, match="own case ID"):
        discover(tmp_path, 1)


def test_a_subject_id_cannot_write_outside_the_output(tmp_path: Path) -> None:
    # predict/explain name files by the ID: ../x or an absolute path would land outside OUT
    _img(tmp_path / "img" / "a.nii.gz", np.zeros((4, 5, 6), np.float32))
    (tmp_path / "in.csv").write_text(
        f"SubjectID,Channel_0\n../../escape,img/a.nii.gz\n{tmp_path / 'victim'},img/a.nii.gz\nok,img/a.nii.gz\n"
    )
    with pytest.raises(DatasetError) as err:
        discover(tmp_path / "in.csv", 1)
    bad = [p for p in err.value.problems if "safe file names" in p.rule]
    assert len(bad) == 2 and "'../../escape'" in bad[0].value and "SubjectID" in bad[0].fix
    # a name taken from a file (or a DICOM folder) is one name already: spaces, '+' or umlauts are fine there
    for name in ("1.000000-CT Abdomen-12345", "T1+C", "Müller_01"):
        _img(tmp_path / "named" / f"{name}.nii.gz", np.zeros((4, 5, 6), np.float32))
    assert sorted(c.case_id for c in discover(tmp_path / "named", 1)) == sorted(
        ["1.000000-CT Abdomen-12345", "T1+C", "Müller_01"]
    )


@pytest.fixture()
def trained(small_training: dict[str, Path]) -> dict[str, Path]:
    """The session's small training (tests/conftest.py), read here, never written: ``root``, ``ds`` and ``W``."""
    return small_training


@pytest.mark.slow
def test_export_onto_the_work_dir_is_refused_and_nothing_changes(trained: dict[str, Path]) -> None:
    from automed import api

    before = _tree(trained["root"])
    for out in (trained["W"], trained["root"]):
        with pytest.raises(ArtifactError, match="must not be, or hold"):
            api.export(trained["W"], out, overwrite=True)
    with pytest.raises(ArtifactError, match="must not be, or hold"):
        api.package(trained["W"], trained["W"])
    assert _tree(trained["root"]) == before


@pytest.mark.slow
def test_package_onto_a_foreign_folder_is_refused(trained: dict[str, Path], tmp_path: Path) -> None:
    from automed import api

    foreign = tmp_path / "dist"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    for overwrite in (False, True):
        with pytest.raises(ArtifactError, match="never replaces a folder it did not write"):
            api.package(trained["W"], foreign, overwrite=overwrite)
    assert [p.name for p in foreign.iterdir()] == ["thesis.tex"]


@pytest.mark.slow
def test_predict_into_the_inputs_is_refused_and_nan_is_an_error(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    from automed import api

    images = trained["ds"] / "imagesTr"
    before = _tree(images)
    with pytest.raises(ArtifactError, match="must not be, or hold"):
        api.predict(trained["W"], images, images, show_progress=False)
    with pytest.raises(ArtifactError, match="must not be, or hold"):
        api.predict(trained["W"], images, trained["W"], show_progress=False)
    assert _tree(images) == before
    img = sitk.ReadImage(str(images / "case_000.nii.gz"))
    arr = sitk.GetArrayFromImage(img).astype(np.float32)
    arr[0, 0, :3] = np.nan
    bad = sitk.GetImageFromArray(arr)
    bad.CopyInformation(img)
    sitk.WriteImage(bad, str(tmp_path / "nan.mha"))  # ITK's NIfTI reader turns NaN into 0
    with pytest.raises(DatasetError) as err:
        api.predict(trained["W"], tmp_path / "nan.mha", tmp_path / "P", show_progress=False)
    assert (
        "must be finite" in str(err.value)
        and "3 voxel(s) NaN, infinite" in str(err.value)
        and "--nan-to" in str(err.value)
    )
    assert not (tmp_path / "P").exists()  # a failed run leaves no folder of its own behind
    (out,) = api.predict(trained["W"], tmp_path / "nan.mha", tmp_path / "P", show_progress=False, nan_to=0.0)
    assert out.is_file() and (tmp_path / "P" / OUTPUT_MARKER).is_file()
    assert not list((tmp_path / "P").glob(".*partial*"))
    # earlier predictions are never mixed with new ones: refused, or replaced with --overwrite
    (tmp_path / "P" / "other.mha").write_bytes(b"an earlier run's prediction of another case")
    (tmp_path / "P" / "review").mkdir()
    (tmp_path / "P" / "review" / "other.png").write_bytes(b"an earlier run's review page")
    with pytest.raises(ArtifactError, match=r"earlier predictions.*--overwrite"):
        api.predict(trained["W"], tmp_path / "nan.mha", tmp_path / "P", show_progress=False, nan_to=0.0)
    again = api.predict(
        trained["W"], tmp_path / "nan.mha", tmp_path / "P", show_progress=False, nan_to=0.0, overwrite=True
    )
    assert again == [out] and out.is_file() and not (tmp_path / "P" / "other.mha").exists()
    assert not (tmp_path / "P" / "review").exists()  # not written by this run: gone with its pages
    mine = tmp_path / "mine"  # a folder of the user's: never replaced, --overwrite or not
    mine.mkdir()
    (mine / "manual_seg.nii.gz").write_bytes(b"the user's")
    with pytest.raises(ArtifactError, match="never replaces a folder it did not write"):
        api.predict(trained["W"], tmp_path / "nan.mha", mine, show_progress=False, nan_to=0.0, overwrite=True)
    assert [p.name for p in mine.iterdir()] == ["manual_seg.nii.gz"]


@pytest.mark.slow
def test_continue_predicts_only_the_cases_an_unfinished_run_left_out(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    from automed import api

    images, inputs, out = trained["ds"] / "imagesTr", tmp_path / "in", tmp_path / "P"
    inputs.mkdir()
    for name in ("a", "c"):
        (inputs / f"{name}.nii.gz").write_bytes((images / f"case_00{'ac'.index(name)}.nii.gz").read_bytes())
    img = sitk.ReadImage(str(images / "case_001.nii.gz"))
    arr = sitk.GetArrayFromImage(img).astype(np.float32)
    arr[0, 0, 0] = np.nan
    bad = sitk.GetImageFromArray(arr)
    bad.CopyInformation(img)
    sitk.WriteImage(bad, str(inputs / "b.mha"))
    with pytest.raises(DatasetError, match="must be finite"):  # a plain long run stopped by its second case
        api.predict(trained["W"], inputs, out, show_progress=False)  # (it removed the case it had finished)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["a.nii.gz"]  # kept
    first = (out / "a.nii.gz").stat().st_mtime_ns
    (inputs / "b.mha").unlink()
    (out / ".tmp-c.nii.gz").write_bytes(b"half of c, written when the run was killed")
    done = api.predict(trained["W"], inputs, out, show_progress=False, resume=True)
    assert done == [out / "a.nii.gz", out / "c.nii.gz"] and (out / "a.nii.gz").stat().st_mtime_ns == first
    assert not (out / ".tmp-c.nii.gz").exists()
    with pytest.raises(ArtifactError, match=r"same model and settings.*\['tta'\].*--overwrite instead"):
        api.predict(trained["W"], inputs, out, show_progress=False, resume=True, tta=False)
    with pytest.raises(ConfigError, match=r"--continue keeps the predictions.*--overwrite replaces them"):
        api.predict(trained["W"], inputs, out, show_progress=False, resume=True, overwrite=True)
    with pytest.raises(ArtifactError, match=r"earlier predictions.*or --continue"):
        api.predict(trained["W"], inputs, out, show_progress=False)
    # another image under a finished case's name: its label map is not kept as if predicted from it
    (inputs / "a.nii.gz").write_bytes((images / "case_003.nii.gz").read_bytes())
    (out / "c.nii.gz").unlink()
    with pytest.raises(
        ArtifactError, match=r"only when its input is the one.*1 case\(s\) whose input changed.*: a\. Fix"
    ):
        api.predict(trained["W"], inputs, out, show_progress=False, resume=True)


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    from automed.workdir import locked

    code = (
        "import sys, time; from pathlib import Path; from automed.workdir import locked\n"
        "with locked(Path(sys.argv[1]), 'automed train'):\n"
        "    print('held', flush=True); time.sleep(30)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        refused = pytest.raises(ArtifactError, match="one automed command writes a work dir at a time")
        with refused as err, locked(tmp_path, "automed train --resume"):
            pass
        assert f"PID {holder.pid} (automed train)" in str(err.value) and "another -o" in str(err.value)
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 10
    while True:  # the kernel releases the lock of a killed holder
        try:
            with locked(tmp_path, "automed train --resume"):
                break
        except ArtifactError:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_a_corrupt_checkpoint_names_the_others(tmp_path: Path) -> None:
    import torch

    from automed.train.state import load_checkpoint, save_checkpoint

    save_checkpoint(tmp_path / "checkpoint_best.pt", {"model": {"w": torch.zeros(2)}})
    (tmp_path / "checkpoint_latest.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ArtifactError, match="complete torch file") as err:
        load_checkpoint(tmp_path / "checkpoint_latest.pt")
    assert "checkpoint_best.pt" in str(err.value) and "unreadable" in str(err.value)
    assert load_checkpoint(tmp_path / "checkpoint_best.pt")["model"]["w"].shape == (2,)


def test_mlflow_failures_inside_an_epoch_never_kill_a_fold(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from automed.tasks.registry import TASKS
    from automed.train.state import EpochLog
    from automed.workflow import fold

    monkeypatch.setattr(fold.time, "sleep", lambda s: None)

    class Flaky:
        def __init__(self, failures: int) -> None:
            self.failures, self.logged = failures, 0

        def check_store(self, recheck: bool = False) -> None:  # (a store that answers the retry's check)
            pass

        def found_down(self) -> None:  # (never found down: its failures are MLflow's, retried)
            return None

        def log_metrics(self, run_id: str, metrics: dict[str, float | None], step: int | None = None) -> None:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("store busy")
            self.logged += 1

    log = EpochLog(1, 0.5, 0.4, [0.3], 0.3, 0.3, 0.01, 1.0, 0.0, 10)
    flaky = Flaky(2)
    seg = TASKS.get("segmentation")
    fold.MlflowEpochs(flaky, "run", seg, ["a"]).on_epoch_end(0, log)  # type: ignore[arg-type]
    assert flaky.logged == 1
    down = Flaky(100)
    fold.MlflowEpochs(down, "run", seg, ["a"]).on_epoch_end(0, log)  # type: ignore[arg-type]
    assert down.logged == 0 and "did not take the metrics of epoch 1" in caplog.text


def test_files_a_csv_lists_are_protected_from_the_output(tmp_path: Path) -> None:
    from automed import api

    imgs = tmp_path / "imgs"  # the images a predict CSV lists live here, not beside the CSV
    _img(imgs / "case1.nii.gz", np.zeros((4, 5, 6), np.float32))
    (tmp_path / "csvs").mkdir()
    (tmp_path / "csvs" / "in.csv").write_text(f"SubjectID,Channel_0\ncase1,{imgs / 'case1.nii.gz'}\n")
    (tmp_path / "model").mkdir()  # a model folder (its weights are never read: the output is refused first)
    (tmp_path / "model" / "model.json").write_text("{}")
    with pytest.raises(ArtifactError, match="must not be, or hold"):  # before any model is loaded
        api.predict(tmp_path / "model", tmp_path / "csvs" / "in.csv", imgs, overwrite=True)
    # automed metrics: the references a CSV lists
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / "a.nii.gz").write_bytes(b"reference")
    (tmp_path / "csvs" / "scores.csv").write_text(
        f"SubjectID,Target,Prediction\na,{refs / 'a.nii.gz'},x.nii.gz\n"
    )
    with pytest.raises(ArtifactError, match="must not be, or hold"):
        api.metrics(tmp_path / "csvs" / "scores.csv", refs, overwrite=True)
    assert (refs / "a.nii.gz").read_bytes() == b"reference" and (imgs / "case1.nii.gz").is_file()


def test_a_picture_with_other_channels_is_told_to_convert(tmp_path: Path) -> None:
    rgb = np.zeros((5, 6, 3), np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "x.png"))
    with pytest.raises(DatasetError) as err:
        discover(tmp_path, 1)  # a grayscale model
    (p,) = err.value.problems
    assert "3 channel(s)" in p.value and "grayscale" in p.fix and "4D" not in p.fix


def test_a_metaimage_prediction_is_written_whole_and_listed_with_its_data_file(tmp_path: Path) -> None:
    """``CASE.mhd`` names its data file: both land under their final names (no hidden partial file the header points
    to), both count as written (an --overwrite run's clean-up keeps them), and labels are uint8 as the bundle's."""
    from types import SimpleNamespace

    import SimpleITK as sitk

    from automed.data.io import Geometry
    from automed.workflow.predict_writers import LabelMapWriter

    geo = Geometry((6, 5, 4), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tuple(float(v) for v in np.eye(3).ravel()))
    labels = np.zeros((4, 5, 6), np.int16)
    labels[1:3, 2:4, 2:5] = 2
    writer = LabelMapWriter(tmp_path, [0, 2])
    for suffix in (".mhd", ".nii.gz", ".nhdr"):
        writer.add(
            SimpleNamespace(case_id=f"c{suffix[1:4]}", suffix=suffix),
            geo,
            SimpleNamespace(labels=labels, probabilities=None),
        )
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "cmhd.mhd",
        "cmhd.zraw",
        "cnhd.nhdr",
        "cnhd.raw.gz",
        "cnii.nii.gz",
    ]  # no hidden data file
    assert writer.written_files() == {tmp_path / n for n in names}
    for name in ("cmhd.mhd", "cnii.nii.gz", "cnhd.nhdr"):
        img = sitk.ReadImage(str(tmp_path / name))
        assert img.GetPixelID() == sitk.sitkUInt8 and img.GetSpacing() == (1.0, 1.0, 2.0)
        assert np.array_equal(sitk.GetArrayFromImage(img), labels)


def test_a_work_dir_is_never_a_folder_of_the_users(tmp_path: Path) -> None:
    """fingerprint, plan, preprocess, train and sweep ``-o`` a folder holding the user's files (a plan.json of their
    own, notes in preprocessed/) are refused before anything is written there, lock included; a new, empty or
    earlier work dir (its fingerprint.json), or one holding only automed's lock, is taken."""
    from automed import api

    ds = make_dataset(tmp_path / "data", n_cases=4, shape=(8, 16, 16), seed=4)
    space = Path(__file__).resolve().parents[1] / "search_spaces" / "quick.yaml"
    mine = tmp_path / "mine"
    (mine / "preprocessed" / "3d_fullres").mkdir(parents=True)
    (mine / "preprocessed" / "3d_fullres" / "notes.txt").write_text("keep")
    (mine / "plan.json").write_text("my plan")
    before = _tree(mine)
    calls = [
        lambda: api.fingerprint(ds, mine, show_progress=False),
        lambda: api.plan_dataset(ds, mine, show_progress=False),
        lambda: api.train(ds, mine, epochs=1, show_progress=False),
        lambda: api.sweep(ds, mine, space=space, trials=1, show_progress=False),
    ]
    for call in calls:
        with pytest.raises(ArtifactError, match="never writes among files it did not write") as err:
            call()
        assert "plan.json" in str(err.value)
        assert _tree(mine) == before  # no lock, no fingerprint
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / ".automed.lock").write_text("")  # a killed run's lock: automed's own
    (fresh / ".DS_Store").write_bytes(b"")  # and what an operating system keeps in any folder
    (fresh / "lost+found").mkdir()
    fp, _ = api.fingerprint(ds, fresh, show_progress=False)
    (fresh / "notes.txt").write_text("the user's, beside an earlier work dir")  # an earlier work dir is taken
    assert api.fingerprint(ds, fresh, show_progress=False)[0].hash == fp.hash


def test_pool_workers_end_with_a_killed_command(tmp_path: Path) -> None:
    """``kill -9`` of automed left its worker processes (fingerprint, preprocess, optuna trials, parallel folds)
    running under PID 1, still writing the work dir."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import time\n"
        "from automed.parallel import process_pool\n"
        "def pid(_):\n    import os; return os.getpid()\n"
        "if __name__ == '__main__':\n"
        "    for ctx in ('forkserver', 'spawn'):\n"
        "        pool = process_pool(2, ctx)\n"
        "        print(*pool.map(pid, range(4)), flush=True)\n"
        "    time.sleep(600)\n"
    )
    (tmp_path / "driver.py").write_text(script)
    driver = subprocess.Popen(
        [sys.executable, str(tmp_path / "driver.py")], stdout=subprocess.PIPE, text=True
    )
    assert driver.stdout is not None
    workers = {int(p) for _ in range(2) for p in driver.stdout.readline().split()}
    assert workers and driver.pid not in workers
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        with contextlib.suppress(OSError):  # a zombie (reaped by init later) counts as gone
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
                return False
        return True

    deadline = time.monotonic() + 15
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in workers if alive(p)]


def test_a_model_being_written_or_half_extended_is_not_read(tmp_path: Path) -> None:
    """select, export and predict read a training while another command held its lock (checkpoints changing under
    them), or after a killed --extend (folds at different epochs, model.json and CV from before): refused."""
    import json
    import subprocess
    import sys

    from automed.workdir import locked, refuse_unfinished

    wd = tmp_path / "W"
    wd.mkdir()
    refuse_unfinished(wd)  # nothing in progress
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from automed.workdir import locked\n"
         f"with locked(Path({str(wd)!r}), 'automed train'):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ArtifactError, match=r"in use by PID \d+ \(automed train\)"):
            refuse_unfinished(wd)
    finally:
        holder.kill()
        holder.wait()
    refuse_unfinished(wd)
    with locked(wd, "automed train"):  # this process's own lock (a training registering itself) is no refusal
        refuse_unfinished(wd)
        # ... and it still holds it: another process is refused (a shared lock taken and dropped on a second
        # handle released this process's exclusive one)
        other = subprocess.run(
            [sys.executable, "-c", "from pathlib import Path; from automed.workdir import locked\n"
             f"with locked(Path({str(wd)!r}), 'automed train'):\n    pass"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert other.returncode != 0 and "one automed command writes a work dir at a time" in other.stderr
    (wd / "train_config.json").write_text(json.dumps({"extension": {"epochs": 3, "targets": {"0": 5}}}))
    with pytest.raises(ArtifactError, match=r"complete it: automed train --resume .* --extend 3$") as err:
        refuse_unfinished(wd)
    assert "models:/" not in str(err.value)  # nothing registered: no other way named
    # registered before the extension: that version keeps its own copy of the weights, the way to the model of before
    (wd / "tracking.json").write_text(json.dumps({"registered": {"name": "automed-x", "version": "2"}}))
    with pytest.raises(ArtifactError, match=r"--extend 3; the model as it was before .* models:/automed-x/2"):
        refuse_unfinished(wd)


def test_a_pair_with_a_3d_member_refuses_a_picture(tmp_path: Path) -> None:
    """Only the first member was looked at: a 2D + 3D pair let a picture through to its 3D network."""
    from types import SimpleNamespace as Ns

    from automed.infer.inputs import check_takes

    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((16, 16), np.uint8)), str(tmp_path / "x.png"))
    cases = discover(tmp_path, 1)
    two, three = Ns(spec=Ns(dimension=2)), Ns(spec=Ns(dimension=3))
    check_takes(cases, Ns(members=[two, two]))  # 2D networks take pictures
    for pair in (Ns(members=[two, three]), Ns(model=Ns(members=[two, three]))):  # torch pair, exported pair
        with pytest.raises(DatasetError, match=r"trained on volumes \(3D\)"):
            check_takes(cases, pair)


def test_saved_probabilities_name_the_label_of_each_channel(tmp_path: Path) -> None:
    """With label IDs 0, 1, 4 the third probability channel is label 4: ``CASE.npz`` says so (``labels``)."""
    from types import SimpleNamespace

    from automed.data.io import Geometry
    from automed.workflow.predict_writers import LabelMapWriter

    geo = Geometry((6, 5, 4), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tuple(float(v) for v in np.eye(3).ravel()))
    probs = np.zeros((3, 4, 5, 6), np.float32)
    probs[2] = 1.0
    writer = LabelMapWriter(tmp_path, [0, 1, 4])
    res = SimpleNamespace(labels=np.full((4, 5, 6), 4, np.int16), probabilities=probs)
    writer.add(SimpleNamespace(case_id="c", suffix=".nii.gz"), geo, res)
    with np.load(tmp_path / "c.npz") as z:
        assert z["labels"].tolist() == [0, 1, 4] and np.array_equal(z["probabilities"], probs)
        assert z["labels"][z["probabilities"].argmax(0)].max() == 4


def test_a_training_and_a_sweep_never_share_a_work_dir(tmp_path: Path) -> None:
    """`automed sweep -o TRAINING` and `automed train -o SWEEP` were accepted (both hold a fingerprint.json), and each
    replaced the other's selection/selection.json: a training's own postprocessing evidence, or the sweep's choice."""
    import json

    from automed.workdir_claim import claim_workdir

    fp = json.dumps({"schema_version": 1, "inputs_hash": "x"})
    trained, swept, planned = tmp_path / "T", tmp_path / "S", tmp_path / "P"
    for wd in (trained, swept, planned):
        wd.mkdir()
        (wd / "fingerprint.json").write_text(fp)
    (trained / "train_config.json").write_text("{}")
    (swept / "sweep.json").write_text("{}")
    with pytest.raises(
        ArtifactError, match=r"a training's work dir .* or resume it \(automed train --resume"
    ):
        claim_workdir(trained, "automed sweep")
    with pytest.raises(
        ArtifactError, match=r"a sweep's work dir .* continue the sweep \(automed sweep --resume"
    ):
        claim_workdir(swept, "automed train")
    for wd, command in ((trained, "automed train"), (swept, "automed sweep"), (planned, "automed train"),
                        (planned, "automed sweep")):  # fmt: skip
        claim_workdir(wd, command)  # its own kind again, or a planned work dir: taken as before


def test_a_sweeps_trial_is_told_by_one_rule(tmp_path: Path) -> None:
    """workdir.sweep_of: the one test of "this work dir is a sweep's trial" (the model reader's lock check and
    select's choice of store had each spelt it out, one on the path as given and one resolved)."""
    from automed.workdir import sweep_of

    trial = tmp_path / "S" / "trials" / "t1"
    trial.mkdir(parents=True)
    assert sweep_of(trial) is None  # no sweep.json: a folder that happens to be named trials
    (tmp_path / "S" / "sweep.json").write_text("{}")
    assert sweep_of(trial) == (tmp_path / "S").resolve()
    (tmp_path / "link").symlink_to(trial)
    assert sweep_of(tmp_path / "link") == (tmp_path / "S").resolve()  # reached through a link too
    assert sweep_of(tmp_path / "S") is None
