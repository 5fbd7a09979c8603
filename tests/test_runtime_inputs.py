"""The exported bundle's own input checks (automed/runtime, no automed imports there) refuse what `automed predict`
refuses: several DICOM series in one folder, a second channel file for a one-channel model, two inputs writing one
prediction, an output folder that is or holds the inputs, non-finite voxels (unless --nan-to)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from automed.runtime.inputs import find_cases
from automed.runtime.io import Case, read_case
from tests.conftest import shared, two_series_folder


def _img(path: Path, value: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 5, 6), value, np.float32)), str(path))
    return path


def test_two_dicom_series_in_one_folder(tmp_path: Path) -> None:
    """Refused when the cases are found, before any is predicted: found when read, a second series stopped a batch
    at its turn (the input folder itself, or any of its series folders)."""
    mixed = two_series_folder(tmp_path / "in" / "p1" / "mixed")
    shutil.copytree(shared("dicom", "hippo_crop_series", "Study1"), tmp_path / "in" / "p0")
    for root in (mixed, tmp_path / "in"):
        with pytest.raises(
            SystemExit, match=r"mixed: an image folder must hold exactly one DICOM series, found 2;"
        ):
            find_cases(root, 1)
    with pytest.raises(SystemExit, match=r"exactly one DICOM series, found 2 .*its own folder"):
        read_case(Case("mixed", (mixed,), ".nii.gz"))
    (one,) = find_cases(shared("dicom", "hippo_crop_series", "Study1"), 1)
    assert read_case(one)[0].shape[0] == 1


def test_second_channel_for_a_one_channel_model(tmp_path: Path) -> None:
    _img(tmp_path / "pat_0000.nii.gz")
    _img(tmp_path / "pat_0001.nii.gz")
    with pytest.raises(SystemExit, match=r"second channel file beside pat_0000\.nii\.gz.*takes 1 channel"):
        find_cases(tmp_path, 1)
    assert [c.case_id for c in find_cases(tmp_path, 2)] == ["pat"]


def test_two_inputs_with_one_prediction_name(tmp_path: Path) -> None:
    _img(tmp_path / "a.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 6), np.uint8)), str(tmp_path / "a.png"))
    with pytest.raises(SystemExit, match=r"both would write the prediction a\.nii\.gz"):
        find_cases(tmp_path, 1)


def test_bundle_cli_refuses_output_into_inputs_and_nan(tmp_path: Path) -> None:
    from automed.runtime import cli

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "preprocess.json").write_text('{"files": {"onnx": []}}')
    inputs = tmp_path / "in"
    _img(inputs / "a.nii.gz")
    for out in (inputs, tmp_path):
        with pytest.raises(SystemExit, match="must not be, or hold, the input"):
            cli.main(["-i", str(inputs), "-o", str(out)], bundle=bundle)
    assert sorted(p.name for p in inputs.iterdir()) == ["a.nii.gz"]


def test_the_bundle_reads_every_image_type_automed_reads(tmp_path: Path) -> None:
    """A model trained on JPEG, BMP or single DICOM files predicts them from its bundle too (its reader had fewer
    endings than automed's and answered 'no images found')."""
    from automed.data.io import IMAGE_SUFFIXES
    from automed.runtime.io import SUFFIXES

    assert set(SUFFIXES) == set(IMAGE_SUFFIXES)
    pic = np.arange(30, dtype=np.uint8).reshape(5, 6)
    for name in ("a.jpg", "b.bmp", "c.png"):
        sitk.WriteImage(sitk.GetImageFromArray(pic), str(tmp_path / name))
    _img(tmp_path / "d.nhdr")
    cases = find_cases(tmp_path, 1)
    assert [(c.case_id, c.suffix) for c in cases] == [
        ("a", ".nii.gz"),
        ("b", ".nii.gz"),
        ("c", ".nii.gz"),
        ("d", ".nhdr"),
    ]
    assert read_case(cases[1])[0].shape == (1, 1, 5, 6)  # a grey-palette BMP is one channel (ITK expands it)
    from automed.data.io import read_header, read_image

    assert read_header(tmp_path / "b.bmp").components == 1 and len(read_image(tmp_path / "b.bmp")[0]) == 1
    rgb = np.stack([pic, pic // 2, pic // 3], axis=-1)
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "e.bmp"))
    assert read_header(tmp_path / "e.bmp").components == 3


def test_a_dicom_series_is_one_channel_for_a_two_channel_model() -> None:
    from automed.errors import DatasetError
    from automed.infer.inputs import discover

    series = shared("dicom", "hippo_crop_series", "Study1")
    with pytest.raises(DatasetError, match="needs 2 channels per case; a DICOM series folder is one"):
        discover(series, 2)
    with pytest.raises(DatasetError, match="needs 2 channels per case; a DICOM series folder is one"):
        discover(series.parent, 2)
    assert len(discover(series, 1)) == 1


def test_two_files_of_one_channel_are_refused_not_one_dropped(tmp_path: Path) -> None:
    from automed.errors import DatasetError
    from automed.infer.inputs import discover

    _img(tmp_path / "x_0000.nii.gz")
    _img(tmp_path / "x_0000.nrrd")
    with pytest.raises(
        DatasetError, match=r"one file per channel of a case.*x_0000\.nii\.gz and x_0000\.nrrd"
    ):
        discover(tmp_path, 1)


def test_a_case_missing_or_beyond_the_models_channels_names_the_files(tmp_path: Path) -> None:
    """The message read "found found [0]" and told to add missing files when a case had one too many."""
    from automed.errors import DatasetError
    from automed.infer.inputs import discover

    _img(tmp_path / "a_0000.nii.gz")
    with pytest.raises(DatasetError) as missing:
        discover(tmp_path, 2)
    text = str(missing.value)
    assert "found found" not in text and "found channels [0]" in text and "add a_0001.nii.gz" in text
    for c in (1, 2):
        _img(tmp_path / f"a_000{c}.nii.gz")
    with pytest.raises(DatasetError, match=r"remove or move a_0002\.nii\.gz \(the model takes 2 channel"):
        discover(tmp_path, 2)


def test_a_4d_or_vector_file_for_a_one_channel_model_is_named(tmp_path: Path) -> None:
    from automed.errors import DatasetError
    from automed.infer.inputs import discover

    four = sitk.JoinSeries([sitk.GetImageFromArray(np.zeros((4, 5, 6), np.float32))] * 2)
    sitk.WriteImage(four, str(tmp_path / "four_0000.nii.gz"))
    with pytest.raises(DatasetError, match=r"a CASE_XXXX file holds one channel.*2 channels"):
        discover(tmp_path, 1)  # was a ValueError deep in preprocessing
    (tmp_path / "four_0000.nii.gz").rename(tmp_path / "four.nii.gz")
    with pytest.raises(DatasetError, match=r"needs 1 channel\(s\) per case.*2 channel\(s\) in the file"):
        discover(tmp_path / "four.nii.gz", 1)  # one file as the input


def test_one_file_named_case_0000_writes_the_case_name_as_a_folder_does(tmp_path: Path) -> None:
    from automed.infer.inputs import discover

    _img(tmp_path / "aniso_0000.nii.gz")
    (one,) = discover(tmp_path / "aniso_0000.nii.gz", 1)
    (from_folder,) = discover(tmp_path, 1)
    assert one.case_id == from_folder.case_id == "aniso"
    assert [c.case_id for c in find_cases(tmp_path / "aniso_0000.nii.gz", 1)] == ["aniso"]  # the bundle too


def test_a_dicom_file_named_like_an_image_beside_it_is_refused_not_dropped(tmp_path: Path) -> None:
    """The bundle kept one of a.nii.gz and a DICOM file named a (both case a) and dropped the other unseen, and
    predicted A and a.dcm into A.nii.gz and a.nii.gz, one file on macOS and Windows; predict refuses both."""
    from tests.test_dicom_xray_folders import xray_dicom

    _img(tmp_path / "one" / "a.nii.gz")
    xray_dicom(tmp_path / "one" / "a", 0)
    with pytest.raises(SystemExit, match=r"one/a and .*one/a\.nii\.gz: both would be case a .*rename one"):
        find_cases(tmp_path / "one", 1)
    (tmp_path / "two").mkdir()
    xray_dicom(tmp_path / "two" / "A", 0)
    xray_dicom(tmp_path / "two" / "a.dcm", 1)
    with pytest.raises(SystemExit, match=r"both would write the prediction (A|a)\.nii\.gz; rename one"):
        find_cases(tmp_path / "two", 1)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ("localizer", r"must hold one volume, found 2 \(echoes, temporal positions or orientations"),
        (
            "missing",
            r"must be evenly spaced, found gaps from .* \(a slice missing\?\); add the missing files",
        ),
        ("duplicate", r"must lie at distinct positions, found 1 repeated; remove the duplicate files"),
    ],
)
def test_a_series_that_is_not_one_volume_is_refused_by_the_bundle(
    tmp_path: Path, change: str, said: str
) -> None:
    """automed predict refuses a series holding a localizer's other orientation, a missing slice or a slice twice
    (pydicom header checks); the torch-free bundle read it as one volume on a wrong grid, silently."""
    import shutil

    import pydicom

    series = tmp_path / "mr"
    shutil.copytree(shared("dicom", "hippo_crop_series", "Study1"), series)
    files = sorted(series.glob("*.dcm"), key=lambda f: int(f.stem))
    if change == "localizer":
        ds = pydicom.dcmread(files[0])
        ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        ds.save_as(files[0])
    elif change == "missing":
        files[len(files) // 2].unlink()
    else:
        ds = pydicom.dcmread(files[1])
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(series / "again.dcm")
    (case,) = find_cases(series, 1)
    with pytest.raises(SystemExit, match=said):
        read_case(case)


def test_channel_files_off_the_first_ones_grid_are_named(tmp_path: Path) -> None:
    from automed.runtime.grid import channel_grid_mismatch

    first = _img(tmp_path / "pat_0000.nii.gz")
    same = _img(tmp_path / "pat_0001.nii.gz", 2.0)
    assert channel_grid_mismatch([first, same]) is None
    assert channel_grid_mismatch([first]) is None
    changes = {
        "origin": lambda img: img.SetOrigin((5.0, 0.0, 0.0)),
        "spacing": lambda img: img.SetSpacing((1.0, 1.0, 3.0)),
        "direction": lambda img: img.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, -1)),
    }
    for what, change in changes.items():
        img = sitk.ReadImage(str(same))
        change(img)
        sitk.WriteImage(img, str(tmp_path / "pat_0002.nii.gz"))
        found = channel_grid_mismatch([first, tmp_path / "pat_0002.nii.gz"])
        assert found is not None and f"channel {what} must equal that of pat_0000.nii.gz" in found
        assert "resample pat_0002.nii.gz onto pat_0000.nii.gz" in found
    sitk.WriteImage(
        sitk.GetImageFromArray(np.zeros((4, 5, 7), np.float32)), str(tmp_path / "pat_0002.nii.gz")
    )
    found = channel_grid_mismatch([first, tmp_path / "pat_0002.nii.gz"])
    assert (
        found is not None
        and "channel size must equal that of pat_0000.nii.gz (6, 5, 4), found (7, 5, 4)" in found
    )


def test_a_headers_data_file_is_read_with_it_not_named_unread(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``d.raw`` beside a predicted ``d.mhd`` (and ``n.raw`` beside ``n.nhdr``) had been named "not read"."""
    import logging

    import numpy as np
    import SimpleITK as sitk

    from automed.infer.inputs import discover

    for name in ("d.mhd", "n.nhdr"):
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6), np.float32)), str(tmp_path / name))
    (tmp_path / "stray.raw").write_bytes(b"\0" * 8)
    assert {p.name for p in tmp_path.iterdir()} >= {"d.raw", "n.raw"}
    with caplog.at_level(logging.WARNING):
        cases = discover(tmp_path, 1, None)
    assert sorted(c.case_id for c in cases) == ["d", "n"]
    said = " ".join(caplog.text.split())
    assert "1 not read: stray.raw" in said and "d.raw" not in said and "n.raw" not in said


def test_a_4d_file_of_more_volumes_than_the_model_takes_says_to_keep_its_volume(tmp_path: Path) -> None:
    """Its fix had been "store all channels in one 4D file", which it was."""
    from automed.errors import DatasetError
    from automed.infer.inputs import discover

    two = sitk.JoinSeries([sitk.GetImageFromArray(np.zeros((4, 5, 6), np.float32))] * 2)
    sitk.WriteImage(two, str(tmp_path / "two.nii.gz"))
    with pytest.raises(DatasetError) as err:
        discover(tmp_path, 1, None)
    said = " ".join(str(err.value).split())
    assert (
        "found 2 channel(s) in the file" in said and "keep the 1 volume(s) the model was trained on" in said
    )
    assert "store all channels in one 4D file" not in said
