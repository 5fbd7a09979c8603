"""The standalone bundle's ``predict.py --folds`` and ``--step-size`` (automed/runtime/options.py): only folds the
bundle holds, a step in (0, 1] for a sliding window, both refused before anything is written, and recorded for
``--continue``. The networks are stand-ins here; test_export runs the real ones."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import SimpleITK as sitk

from automed.export.bundle import folds_text
from automed.runtime import cli
from automed.runtime.options import OptionError, checked_step, common_folds, parse_folds, with_folds

FILES = {"onnx": ["networks/onnx/fold_0.onnx", "networks/onnx/fold_1.onnx", "networks/onnx/fold_2.onnx"]}


def _meta(**extra: Any) -> dict[str, Any]:
    return {"inference": {"step": 0.5, "tta": True}, "files": {k: list(v) for k, v in FILES.items()}, **extra}


def test_folds_are_comma_separated_spaced_or_repeated() -> None:
    assert parse_folds(None) is None
    assert parse_folds(["0,2"]) == parse_folds(["0", "2"]) == parse_folds(["2", "0, 2"]) == [0, 2]
    assert parse_folds(["all"]) == [-1]
    with pytest.raises(OptionError, match=r"fold numbers .* found 'fold_0'; write e.g. --folds 0,1"):
        parse_folds(["fold_0"])


def test_folds_narrow_the_networks_to_those_folds_in_file_order() -> None:
    meta = _meta(folds=[1, 3, 4])  # a selection kept three of five folds: file k is not fold k
    got = with_folds(meta, [1, 4], Path("B/preprocess.json"))
    assert got["files"]["onnx"] == ["networks/onnx/fold_0.onnx", "networks/onnx/fold_2.onnx"]
    assert got["folds"] == [1, 4] and meta["files"] == FILES  # the bundle's own meta is left as it was
    assert with_folds(meta, None, Path("B")) is meta


def test_a_fold_the_bundle_lacks_is_refused_naming_those_it_holds() -> None:
    with pytest.raises(OptionError) as err:
        with_folds(_meta(folds=[1, 3, 4]), [0, 1], Path("B/preprocess.json"))
    text = str(err.value)
    assert text.startswith("B/preprocess.json: ") and "holds (1, 3, 4)" in text
    assert "found --folds 0, 1 (no fold 0)" in text and "drop --folds" in text


def test_folds_are_refused_for_a_bundle_that_does_not_record_them() -> None:
    with pytest.raises(OptionError, match=r"found none recorded .* `automed export`"):
        with_folds(_meta(), [0], Path("B"))


def _pair(first: list[int] | None, second: list[int] | None) -> dict[str, Any]:
    """A pair's preprocess.json: member k's networks under member_k/, the top-level list holding both."""
    members = []
    for k, (cfg, folds) in enumerate((("3d_fullres", first), ("3d_lowres", second)), start=1):
        files = [f"networks/member_{k}/onnx/fold_{i}.onnx" for i in range(len(folds or [0, 1, 2]))]
        members.append(
            {
                "configuration": cfg,
                **({} if folds is None else {"folds": folds}),
                **_meta(),
                "files": {"onnx": files},
            }
        )
    return {
        "members": members,
        "inference": {},
        "files": {"onnx": [f for m in members for f in m["files"]["onnx"]]},
    }


def test_a_pairs_folds_take_the_same_fold_numbers_from_each_member() -> None:
    """A pair's bundle records each member's folds; ``--folds`` was refused for it ("each member would need its own
    folds"). Its members were trained on the same splits: fold 1 is fold 1 of each, wherever its file is."""
    meta = _pair([0, 1, 2], [1, 2])  # the second kept two of three folds: its file 0 is fold 1
    got = with_folds(meta, [1], Path("B/preprocess.json"))
    assert [m["files"]["onnx"] for m in got["members"]] == [
        ["networks/member_1/onnx/fold_1.onnx"],
        ["networks/member_2/onnx/fold_0.onnx"],
    ]
    assert [m["folds"] for m in got["members"]] == [[1], [1]]
    assert got["files"]["onnx"] == [
        "networks/member_1/onnx/fold_1.onnx",
        "networks/member_2/onnx/fold_0.onnx",
    ]
    assert meta["members"][0]["folds"] == [0, 1, 2]  # the bundle's own meta is left as it was
    assert with_folds(meta, None, Path("B")) is meta
    assert common_folds(meta) == [1, 2] and common_folds(_meta(folds=[0, 2])) == [0, 2]
    assert common_folds(_pair([0], [1])) is None and common_folds(_pair([0], None)) is None


def test_a_pairs_folds_refuse_the_member_that_lacks_one_by_name() -> None:
    with pytest.raises(OptionError) as err:
        with_folds(_pair([0, 1, 2], [1, 2]), [0, 1], Path("B/preprocess.json"))
    text = str(err.value)
    assert text.startswith("B/preprocess.json: ") and "member 2 (3d_lowres) of this pair holds (1, 2)" in text
    assert "found --folds 0, 1 (no fold 0); pass some of 1, 2 (those every member holds)" in text
    with pytest.raises(
        OptionError, match=r"member 1 \(3d_fullres\) of this pair holds \(0\); .* share no fold"
    ):
        with_folds(_pair([0], [1]), [1], Path("B"))
    with pytest.raises(
        OptionError, match=r"'folds' of member 2 \(3d_lowres\) of this pair\); found none recorded"
    ):
        with_folds(_pair([0, 1], None), [0], Path("B"))


@pytest.mark.parametrize("step", [0.0, -0.5, 1.5])
def test_a_step_outside_0_to_1_is_refused(step: float) -> None:
    with pytest.raises(OptionError, match=rf"0 < step <= 1; found {step}; pass e.g. 0.5"):
        checked_step(step, _meta(), Path("B"))


def test_a_step_is_taken_by_segmentation_and_refused_without_a_window() -> None:
    assert checked_step(1.0, _meta(), Path("B")) == 1.0 and checked_step(None, _meta(), Path("B")) is None
    for task in ("classification", "regression"):
        assert (
            with_folds(_meta(task=task, folds=[0, 1, 2]), [2], Path("B"))["files"]["onnx"]
            == FILES["onnx"][2:]
        )
        with pytest.raises(OptionError, match=r"image-level model .* drop --step-size"):
            checked_step(0.5, _meta(task=task), Path("B"))


class _Model:
    """A stand-in for the bundle's networks: what it was built with, and an empty label map per case."""

    built: ClassVar[list[tuple[dict[str, Any], dict[str, Any]]]] = []

    def __init__(self, root: Path, meta: dict[str, Any], runtime: str, **kw: Any) -> None:
        self.built.append((meta, kw.get("overrides") or {}))
        self.n_channels, self.dimension, self.tta = 1, 3, True
        self.label_values = np.asarray([0, 4], dtype=np.int16)

    def predict(
        self, channels: np.ndarray, spacing: list[float], probabilities: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        probs = np.stack(
            [np.full(channels.shape[1:], 0.75, np.float32), np.full(channels.shape[1:], 0.25, np.float32)]
        )
        return np.zeros(channels.shape[1:], dtype=np.int16), (probs if probabilities else None)

    def size_note(self, shape: Any, spacing: Any) -> None:  # the image's size is the right one here
        return None


@pytest.fixture
def bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    root = tmp_path / "bundle"
    root.mkdir()
    (root / "preprocess.json").write_text(json.dumps(_meta(folds=[0, 1, 2])))
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a", "b"):
        sitk.WriteImage(
            sitk.GetImageFromArray(np.ones((3, 4, 4), np.float32)), str(inputs / f"{name}.nii.gz")
        )
    _Model.built = []
    monkeypatch.setattr(cli, "BundleModel", _Model)
    monkeypatch.setattr(cli, "_runtime", lambda *a: "onnx")
    return {"root": root, "in": inputs, "out": tmp_path / "out"}


def test_predict_py_refuses_bad_folds_and_steps_before_writing_anything(bundle: dict[str, Path]) -> None:
    args = ["-i", str(bundle["in"]), "-o", str(bundle["out"])]
    with pytest.raises(SystemExit, match=r"holds \(0, 1, 2\); found --folds 5"):
        cli.main([*args, "--folds", "5"], bundle=bundle["root"])
    with pytest.raises(SystemExit, match=r"0 < step <= 1; found 0\.0"):
        cli.main([*args, "--step-size", "0"], bundle=bundle["root"])
    assert not bundle["out"].exists() and not _Model.built  # no folder made, no network loaded


def test_predict_py_runs_the_chosen_folds_and_step_and_continues_only_with_them(
    bundle: dict[str, Path],
) -> None:
    args = ["-i", str(bundle["in"]), "-o", str(bundle["out"]), "--folds", "0", "2", "--step-size", "0.25"]
    assert cli.main(args, bundle=bundle["root"]) == 0
    meta, overrides = _Model.built[0]
    assert meta["files"]["onnx"] == [FILES["onnx"][0], FILES["onnx"][2]] and overrides == {"step": 0.25}
    record = json.loads((bundle["out"] / cli.RECORD).read_text())
    assert record["folds"] == [0, 2] and record["step"] == 0.25
    (bundle["out"] / "b.nii.gz").unlink()  # the run was killed before its second case
    for other in (["--folds", "0,2"], ["--folds", "1", "--step-size", "0.25"], ["--step-size", "0.25"]):
        other_args = ["-i", str(bundle["in"]), "-o", str(bundle["out"]), "--continue", *other]
        with pytest.raises(SystemExit, match=r"same --no-tta, --folds and --step-size settings"):
            cli.main(other_args, bundle=bundle["root"])
    assert cli.main([*args, "--continue"], bundle=bundle["root"]) == 0
    assert (bundle["out"] / "b.nii.gz").is_file()
    # a retrained model exported with the same settings: the same preprocess.json, other weights
    (bundle["out"] / "b.nii.gz").unlink()
    (bundle["root"] / "networks" / "onnx").mkdir(parents=True)
    (bundle["root"] / "networks" / "onnx" / "fold_0.onnx").write_bytes(b"retrained")
    with pytest.raises(SystemExit, match=r"same --no-tta, --folds and --step-size settings"):
        cli.main([*args, "--continue"], bundle=bundle["root"])


def test_predict_py_saves_probabilities_as_automed_predict_does(bundle: dict[str, Path]) -> None:
    """``--save-probabilities`` (automed predict had it, the bundle not): ``CASE.npz`` with ``probabilities`` (K, z, y,
    x) and ``labels`` (the label value of each channel); recorded for ``--continue``; an ``--overwrite`` run without it
    removes the earlier run's .npz files."""
    args = ["-i", str(bundle["in"]), "-o", str(bundle["out"])]
    assert cli.main([*args, "--save-probabilities"], bundle=bundle["root"]) == 0
    with np.load(bundle["out"] / "a.npz") as z:
        assert z["probabilities"].shape == (2, 3, 4, 4) and z["labels"].tolist() == [0, 4]
        assert np.allclose(z["probabilities"][0], 0.75)
    assert json.loads((bundle["out"] / cli.RECORD).read_text())["save_probabilities"] is True
    (bundle["out"] / "b.nii.gz").unlink()
    (bundle["out"] / "b.npz").unlink()
    with pytest.raises(SystemExit, match=r"same --no-tta, --folds and --step-size settings"):
        cli.main([*args, "--continue"], bundle=bundle["root"])  # without it: other settings
    assert cli.main([*args, "--continue", "--save-probabilities"], bundle=bundle["root"]) == 0
    assert (bundle["out"] / "b.npz").is_file()
    with pytest.raises(SystemExit, match=r"already holds a.nii.gz, b.nii.gz, a.npz, b.npz"):
        cli.main([*args, "--save-probabilities"], bundle=bundle["root"])
    assert cli.main([*args, "--overwrite"], bundle=bundle["root"]) == 0
    assert sorted(p.name for p in bundle["out"].iterdir()) == [cli.RECORD, "a.nii.gz", "b.nii.gz"]
    (bundle["root"] / "preprocess.json").write_text(json.dumps(_meta(task="classification")))
    with pytest.raises(SystemExit, match=r"predictions.csv holds its class probabilities already"):
        cli.main([*args, "-o", str(bundle["out"] / "x"), "--save-probabilities"], bundle=bundle["root"])


def test_predict_py_runs_a_pairs_chosen_folds_and_refuses_a_member_without_them(
    bundle: dict[str, Path],
) -> None:
    (bundle["root"] / "preprocess.json").write_text(json.dumps(_pair([0, 1], [0, 1])))
    args = ["-i", str(bundle["in"]), "-o", str(bundle["out"]), "--folds", "1"]
    assert cli.main(args, bundle=bundle["root"]) == 0
    meta, _ = _Model.built[0]
    assert [m["files"]["onnx"] for m in meta["members"]] == [
        ["networks/member_1/onnx/fold_1.onnx"],
        ["networks/member_2/onnx/fold_1.onnx"],
    ]
    assert json.loads((bundle["out"] / cli.RECORD).read_text())["folds"] == [1]
    (bundle["root"] / "preprocess.json").write_text(json.dumps(_pair([0, 1], [0])))
    with pytest.raises(SystemExit, match=r"member 2 \(3d_lowres\) of this pair holds \(0\); found --folds 1"):
        cli.main([*args, "-o", str(bundle["out"] / "x")], bundle=bundle["root"])
    assert len(_Model.built) == 1 and not (bundle["out"] / "x").exists()


def test_the_readme_line_names_the_folds_and_step_the_bundle_takes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    accepted = set(re.findall(r"--[a-z-]+", capsys.readouterr().out))
    assert set(re.findall(r"--[a-z-]+", folds_text([0], 0.5))) == {"--folds", "--step-size"} <= accepted
    line = folds_text([0, 1, -1], 0.5)
    assert "its folds (0, 1, all)" in line and "instead of 0.5" in line
    assert "there is no `--step-size`" in folds_text([0], None)
    pair = folds_text([0, 1], None, pair=True)
    assert "only those folds of each member (0, 1)" in pair and "instead of each member's own" in pair
    assert "every member records and shares; this export has none" in folds_text(None, None, pair=True)
    assert "did not record" in folds_text(None, 0.5)


def test_a_torch_pair_and_an_exported_pair_refuse_a_missing_fold_by_one_rule(tmp_path: Path) -> None:
    """`automed predict SEL --folds` on a pair's torch bundle checked its members' folds in its own words ("--folds on
    a pair predicts with those folds of each member ... member 2 (3d_fullres, member_1) holds 1, 2, no fold 0"), the
    exported pair's predict.py in others; both now say the runtime's rule, found and fix, each naming its member."""
    from automed.errors import ConfigError
    from automed.train.config import TrainConfig
    from automed.train.meta import ModelMeta, ResolvedTraining
    from automed.workflow.predict_bundle import pair_predictor

    (tmp_path / "ensemble.json").write_text(json.dumps({"members": [{"folder": "m0"}, {"folder": "m1"}]}))
    for name, folds in (("m0", [0, 1, 2]), ("m1", [1, 2])):
        (tmp_path / name).mkdir()
        ModelMeta(dataset="d", configuration="3d_lowres" if name == "m1" else "3d_fullres", folds=folds,
                  config=TrainConfig(), plan_hash="p", labels={},
                  resolved=ResolvedTraining(patch_size=[8, 8, 8], batch_size=2, foreground_oversample=0.33),
                  ).save(tmp_path / name / "model.json")  # fmt: skip
    with pytest.raises(ConfigError) as torch_err:
        pair_predictor(
            tmp_path, None, str(tmp_path), folds=[0, 1], step=None
        )  # refused before any weight loads
    with pytest.raises(OptionError) as export_err:
        with_folds(_pair([0, 1, 2], [1, 2]), [0, 1], Path("B/preprocess.json"))
    (p,) = torch_err.value.problems
    assert p.file == str(tmp_path / "m1")  # the member at fault
    assert p.rule == "--folds chooses among the folds member 2 (3d_lowres, m1) of this pair holds (1, 2)"
    assert (p.value, p.fix) == (export_err.value.found, export_err.value.fix)
    assert p.value == "--folds 0, 1 (no fold 0)"
    assert (
        p.fix == "pass some of 1, 2 (those every member holds), or drop --folds to predict with all of them"
    )
    assert export_err.value.rule == p.rule.replace(", m1", "") and export_err.value.member == 1
    with pytest.raises(ConfigError, match=r"member 1 \(3d_fullres, m0\) of this pair .*\(no fold 5\)"):
        pair_predictor(tmp_path, None, str(tmp_path), folds=[5], step=None)


def test_predict_py_overwrite_replaces_only_what_a_bundle_wrote(bundle: dict[str, Path]) -> None:
    out = bundle["out"]
    out.mkdir()
    mine = out / "a.nii.gz"  # a file of the user's that happens to carry a prediction's name
    mine.write_bytes(b"the user's own label map")
    args = ["-i", str(bundle["in"]), "-o", str(out), "--overwrite"]
    with pytest.raises(SystemExit, match=r"holds a\.nii\.gz without it: files of yours, not replaced"):
        cli.main(args, bundle=bundle["root"])
    assert mine.read_bytes() == b"the user's own label map"
    mine.unlink()
    assert (
        cli.main(args[:-1], bundle=bundle["root"]) == 0
    )  # the bundle's own predictions, marked by its record
    assert (out / cli.RECORD).is_file() and mine.is_file()
    with pytest.raises(SystemExit, match=r"already holds a\.nii\.gz, b\.nii\.gz; .*--overwrite"):
        cli.main(args[:-1], bundle=bundle["root"])
    assert cli.main(args, bundle=bundle["root"]) == 0  # a rerun (the cube's) replaces them


def test_a_failed_overwrite_leaves_a_mix_that_continue_refuses(
    bundle: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """predict.py --overwrite --no-tta wrote its record before predicting, then failed on the second case: the
    folder held one no-TTA and one TTA map under a no-TTA record, and --continue --no-tta accepted it as finished
    (review finding). While replacing, the record now matches no run; the settings are written once all cases are."""
    args = ["-i", str(bundle["in"]), "-o", str(bundle["out"])]
    assert cli.main(args, bundle=bundle["root"]) == 0  # TTA
    calls = {"n": 0}

    def fail_on_the_second(
        self: _Model, channels: np.ndarray, spacing: list[float], probabilities: bool = False
    ) -> tuple[np.ndarray, None]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed")
        return np.ones(channels.shape[1:], dtype=np.int16), None

    monkeypatch.setattr(_Model, "predict", fail_on_the_second)
    with pytest.raises(RuntimeError, match="killed"):
        cli.main([*args, "--overwrite", "--no-tta"], bundle=bundle["root"])
    record = json.loads((bundle["out"] / cli.RECORD).read_text())
    assert record["replacing"] is True and record["tta"] is False
    for tta in ([], ["--no-tta"]):
        with pytest.raises(SystemExit, match=r"--continue adds to label maps of this bundle with the same"):
            cli.main([*args, "--continue", *tta], bundle=bundle["root"])
    assert cli.main([*args, "--overwrite", "--no-tta"], bundle=bundle["root"]) == 0  # a rerun finishes it
    assert json.loads((bundle["out"] / cli.RECORD).read_text()) == {
        k: v for k, v in record.items() if k != "replacing"
    }


def test_continue_keeps_a_finished_case_only_from_the_same_input(bundle: dict[str, Path]) -> None:
    """Another image under a finished case's name had been kept as if its label map were predicted from it."""
    args = ["-i", str(bundle["in"]), "-o", str(bundle["out"])]
    assert cli.main(args, bundle=bundle["root"]) == 0
    (bundle["out"] / "b.nii.gz").unlink()  # the run was killed before its second case
    sitk.WriteImage(
        sitk.GetImageFromArray(np.full((5, 6, 6), 2.0, np.float32)), str(bundle["in"] / "a.nii.gz")
    )
    with pytest.raises(
        SystemExit, match=r"only when its input is the one it was predicted from; the input of a "
    ):
        cli.main([*args, "--continue"], bundle=bundle["root"])
    assert not (bundle["out"] / "b.nii.gz").exists()
    assert cli.main([*args, "--overwrite"], bundle=bundle["root"]) == 0  # the way out it names


def test_continue_over_a_damaged_record_and_no_predictions_predicts(bundle: dict[str, Path]) -> None:
    """A record cut short by a kill before any prediction: --continue had crashed with a bare JSONDecodeError."""
    bundle["out"].mkdir()
    (bundle["out"] / cli.RECORD).write_text('{"bundle": ')
    args = ["-i", str(bundle["in"]), "-o", str(bundle["out"]), "--continue"]
    assert cli.main(args, bundle=bundle["root"]) == 0
    assert (bundle["out"] / "a.nii.gz").is_file() and (bundle["out"] / "b.nii.gz").is_file()
