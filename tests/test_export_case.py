"""``automed export --case``: a mistyped parity case is named by its option before the model is loaded (it read
"the input must exist ... Fix: pass a folder, a DICOM folder or a CSV", predict's words for ``-i``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from automed import api
from automed.errors import ConfigError


def test_a_missing_parity_case_is_named_by_its_option(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"--case: the parity case must exist.*nope\.png.*leave --case out"
    ) as err:
        api.export(tmp_path / "work", tmp_path / "E", case=tmp_path / "nope.png")
    assert "a CSV" not in str(err.value) and not (tmp_path / "E").exists()


def test_a_parity_case_under_the_home_folder_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--case=~/c.nii.gz`` reaches automed unexpanded (the shell expands no ``~`` after ``=``): it was refused as
    missing though it exists; the model is what is missing here."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "c.nii.gz").write_bytes(b"")
    with pytest.raises(Exception) as err:
        api.export(tmp_path / "work", tmp_path / "E", case="~/c.nii.gz")
    assert "--case" not in str(err.value) and "work" in str(err.value)


@pytest.mark.slow
def test_a_parity_case_with_nan_voxels_is_refused_before_the_export(
    small_training: dict[str, Path], tmp_path: Path
) -> None:
    """A parity case holding NaN ran the whole export, then blamed the model ("exported models must match torch ...
    max |dp| nan ... report this model") and left a parity-failed record (review finding)."""
    import shutil

    import numpy as np
    import SimpleITK as sitk

    from automed.errors import DatasetError

    root = tmp_path / "copy"
    shutil.copytree(small_training["root"], root)  # nothing may be written in the shared work dir
    image = sitk.ReadImage(str(root / "data" / "imagesTr" / "case_000.nii.gz"))
    values = sitk.GetArrayFromImage(image).astype(np.float32)
    values[0, 0, :16] = np.nan
    bad = sitk.GetImageFromArray(values)
    bad.CopyInformation(image)
    sitk.WriteImage(bad, str(tmp_path / "nan.mha"))  # (ITK's NIfTI reader turns NaN into 0)
    before = sorted(p.name for p in (root / "W").iterdir())
    with pytest.raises(DatasetError, match=r"parity case's voxels must be finite.*16 NaN.*another --case"):
        api.export(root / "W", tmp_path / "E", case=tmp_path / "nan.mha", show_progress=False)
    assert not (tmp_path / "E").exists() and sorted(p.name for p in (root / "W").iterdir()) == before


@pytest.mark.slow
def test_parity_runs_on_what_predict_takes_or_the_export_is_refused(
    small_training: dict[str, Path], tmp_path: Path
) -> None:
    """A 2D picture as a 3D model's --case passed 'parity' (predict and the bundle refuse it), and a work dir without
    its splits.json exported with no check at all, said as "parity did not pass" (review findings)."""
    import shutil

    import numpy as np
    import SimpleITK as sitk

    from automed.errors import AutomedError

    root = tmp_path / "copy"
    shutil.copytree(small_training["root"], root)
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((24, 24), np.uint8)), str(tmp_path / "slice.png"))
    with pytest.raises(AutomedError, match="trained on volumes"):
        api.export(root / "W", tmp_path / "E", case=tmp_path / "slice.png", show_progress=False)
    (root / "W" / "splits.json").unlink()
    with pytest.raises(ConfigError, match=r"--case: an export is checked against torch on a real case"):
        api.export(root / "W", tmp_path / "E", show_progress=False)
    assert not (tmp_path / "E").exists()


@pytest.mark.slow
def test_an_export_folder_exported_again_from_another_model_is_not_used(
    small_training: dict[str, Path], tmp_path: Path
) -> None:
    """W0 and W1 exported into one folder: `automed predict W0` ran W1's networks (with W0's settings) through its
    link, which compared W0's weights with its own record only (review finding): now torch predicts W0."""
    import shutil

    from automed.export.link import usable_export
    from automed.export.link import write_link as link_to

    root = tmp_path / "copy"
    shutil.copytree(small_training["root"], root)
    shutil.copytree(root / "W", root / "W1")
    api.export(root / "W", root / "E", show_progress=False)
    assert usable_export(root / "W")[0] == root / "E"
    state = root / "W1" / "train" / "3d_fullres" / "fold_0" / "checkpoint_final.pt"
    state.write_bytes(state.read_bytes() + b"\0")  # other weights (a digest is all the link compares)
    record = json.loads((root / "E" / "export.json").read_text())
    link_to(root / "W1", root / "E", record)  # as `automed export W1 -o E` leaves them
    record["checkpoints"] = json.loads((root / "W1" / "export_link.json").read_text())["checkpoints"]
    (root / "E" / "export.json").write_text(json.dumps(record))
    folder, why = usable_export(root / "W")
    assert folder is None and "holds another model's weights" in why


@pytest.mark.slow
def test_a_sweeps_trial_checks_parity_on_its_sweeps_split(
    small_training: dict[str, Path], tmp_path: Path
) -> None:
    """A fully cross-validated trial (SWEEP/trials/KEY, exported as a training is) has no splits.json of its own:
    its parity case comes from its sweep's split (the export would otherwise be refused for want of --case)."""
    import shutil

    from automed.export.export import first_validation_case

    trial = tmp_path / "S" / "trials" / "k1"
    trial.mkdir(parents=True)
    shutil.copy(small_training["W"] / "train_config.json", trial)
    assert first_validation_case(trial) is None
    shutil.copy(small_training["W"] / "splits.json", tmp_path / "S")
    (tmp_path / "S" / "sweep.json").write_text("{}")
    case = first_validation_case(trial)
    assert case is not None
    assert case[0] == json.loads((small_training["W"] / "splits.json").read_text())["folds"][0]["val"][0]
