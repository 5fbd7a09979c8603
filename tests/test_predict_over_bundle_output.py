"""``automed predict -o P`` where the model's exported bundle (``predict.py``) had written ``P``: refused as "a
folder automed did not write" even with --overwrite, though the bundle is automed's own (its record
``.bundle-predict.json`` marks the folder). Now it is an earlier prediction output: refused without --overwrite,
replaced with it. And --overwrite says which of the earlier files it removed (it had removed them without a word)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from automed.artifacts import claim_output, unmarked_kind
from automed.errors import ArtifactError
from automed.runtime.output import RECORD


def _bundle_output(folder: Path) -> Path:
    folder.mkdir()
    (folder / RECORD).write_text('{"bundle": "abc", "tta": true}\n')
    (folder / "old_case.nii.gz").write_bytes(b"the bundle's prediction of another case")
    return folder


def test_a_bundles_predictions_inside_another_are_never_removed_with_it(tmp_path: Path) -> None:
    """``results/`` and ``results/run2/`` both written by the bundle (its predict.py takes ``-o results/run2``):
    replacing ``results`` with --overwrite would have removed ``run2`` (review finding), as an automed output inside
    it is never removed."""
    results = _bundle_output(tmp_path / "results")
    _bundle_output(results / "run2")
    with pytest.raises(ArtifactError, match=r"must not remove another automed output inside it.*predictions"):
        claim_output(results, "predictions", overwrite=True)
    with pytest.raises(ArtifactError, match="must not lie inside another automed output"):
        claim_output(results / "run2" / "new", "predictions")


def test_a_staged_runs_warning_names_only_what_it_did_not_write_anew(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Whole slides are written into a hidden folder and moved in once finished: the files of the same names in the
    earlier output are removed to make room, and were listed as "not written by this run" (review finding)."""
    from automed.artifacts import mark_output
    from automed.workflow.predict_output import into_output

    out = tmp_path / "P"
    out.mkdir()
    mark_output(out, "predictions")
    for name in ("s1_labels.tif", "s1_probabilities.npz", "s9_labels.tif"):
        (out / name).write_bytes(b"an earlier run's")

    def run(dest: Path) -> list[Path]:
        written = [dest / "s1_labels.tif", dest / "s1_probabilities.npz"]
        for p in written:
            p.write_bytes(b"this run's")
        return written

    with caplog.at_level(logging.WARNING, logger="automed"):
        into_output(out, run)
    assert (out / "s1_labels.tif").read_bytes() == b"this run's" and not (out / "s9_labels.tif").exists()
    (said,) = [r.getMessage() for r in caplog.records if "--overwrite: removed" in r.getMessage()]
    assert "removed 1 earlier prediction" in said and said.endswith(": s9_labels.tif"), said


def test_a_bundle_written_folder_is_a_predictions_output(tmp_path: Path) -> None:
    out = _bundle_output(tmp_path / "P")
    assert unmarked_kind(out) == "predictions"
    assert claim_output(out, "predictions") == out.resolve()
    with pytest.raises(ArtifactError, match="only with --overwrite"):  # another kind: only when asked
        claim_output(out, "explanations")
    mine = tmp_path / "mine"  # without the record: the user's folder, never replaced
    mine.mkdir()
    (mine / "old_case.nii.gz").write_bytes(b"the user's")
    with pytest.raises(ArtifactError, match="never replaces a folder it did not write"):
        claim_output(mine, "predictions", overwrite=True)


@pytest.mark.slow
def test_predict_replaces_a_bundles_predictions_only_with_overwrite_and_lists_what_it_removed(
    small_training: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from automed import api

    out = _bundle_output(tmp_path / "P")
    image = small_training["ds"] / "imagesTr" / "case_000.nii.gz"
    with pytest.raises(ArtifactError, match=r"earlier predictions.*--overwrite"):
        api.predict(small_training["W"], image, out, show_progress=False)
    assert sorted(p.name for p in out.iterdir()) == [RECORD, "old_case.nii.gz"]  # untouched
    with caplog.at_level(logging.WARNING, logger="automed"):
        (written,) = api.predict(small_training["W"], image, out, show_progress=False, overwrite=True)
    assert written.is_file() and not (out / "old_case.nii.gz").exists() and not (out / RECORD).exists()
    said = [r.getMessage() for r in caplog.records if "--overwrite: removed" in r.getMessage()]
    assert len(said) == 1 and "1 earlier prediction file(s)" in said[0] and "old_case.nii.gz" in said[0], said
    assert RECORD not in said[0]  # the bundle's record is no file of the user's


@pytest.mark.slow
def test_a_failed_overwrite_leaves_a_mix_that_continue_refuses(
    small_training: dict[str, Path], tmp_path: Path
) -> None:
    """predict --overwrite --no-tta replaced a_000, then failed on b_000 (a NaN voxel): the folder held a no-TTA and
    a TTA map under the earlier TTA record, and --continue accepted it as finished (review finding). The record
    goes when replacing starts and comes back when it has finished."""
    import numpy as np
    import SimpleITK as sitk

    from automed import api
    from automed.errors import DatasetError

    image = sitk.ReadImage(str(small_training["ds"] / "imagesTr" / "case_000.nii.gz"))
    inputs = tmp_path / "in"
    inputs.mkdir()
    sitk.WriteImage(image, str(inputs / "a_000.mha"))
    values = sitk.GetArrayFromImage(image).astype(np.float32)
    values[0, 0, :4] = np.nan
    bad = sitk.GetImageFromArray(values)
    bad.CopyInformation(image)
    sitk.WriteImage(bad, str(inputs / "b_000.mha"))
    out = tmp_path / "P"
    api.predict(small_training["W"], inputs, out, show_progress=False, nan_to=0.0)
    with pytest.raises(DatasetError, match="must be finite"):
        api.predict(small_training["W"], inputs, out, show_progress=False, overwrite=True, tta=False)
    for tta in (True, False):
        with pytest.raises(ArtifactError, match="no record of the model that wrote them"):
            api.predict(
                small_training["W"], inputs, out, show_progress=False, resume=True, nan_to=0.0, tta=tta
            )
    api.predict(small_training["W"], inputs, out, show_progress=False, overwrite=True, tta=False, nan_to=0.0)
    assert (out / ".automed-predict.json").is_file()
