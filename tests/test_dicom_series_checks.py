"""DICOM defects found in a user-level audit: series that automed read into a wrong volume without a word."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from automed.errors import AutomedError


def write_series(
    folder: Path,
    z: list[float],
    *,
    echoes: int = 1,
    uid: str = "1.2.826.0.1.3680043.8.498.1",
    slopes: list[float] | None = None,
    shift: float = 0.0,
) -> Path:
    """A tiny axial MR series: one 8 x 6 slice per position in ``z`` (mm) and echo (stored value ``10 k + echo``
    at the k-th position), each slice with its own RescaleSlope when ``slopes`` gives them, and ``shift`` mm further
    along y than the one before (a gantry-tilted CT's slices)."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for echo in range(1, echoes + 1):
        for k, pos in enumerate(z):
            n += 1
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = MRImageStorage
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = pydicom.Dataset()
            ds.file_meta = meta
            ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
            ds.Modality, ds.PatientID, ds.PatientName = "MR", "P1", "Doe^Jane"
            ds.StudyInstanceUID, ds.SeriesInstanceUID = uid + ".1", uid + ".2"
            ds.FrameOfReferenceUID = uid + ".3"
            ds.SeriesNumber, ds.InstanceNumber, ds.EchoNumbers = 3, n, echo
            ds.ImagePositionPatient = [0.0, k * shift, pos]
            ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
            ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 2.0
            ds.Rows, ds.Columns = 6, 8
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            ds.PixelData = np.full((6, 8), k * 10 + echo, np.uint16).tobytes()
            if slopes is not None:
                ds.RescaleSlope, ds.RescaleIntercept = slopes[k], 0
            ds.save_as(folder / f"{n:03d}.dcm", enforce_file_format=True)
    return folder


def test_a_dicom_series_with_a_missing_slice_is_refused_for_prediction(tmp_path: Path) -> None:
    """`automed predict -i SERIES` read a series with a slice missing as a volume whose slices GDCM spread evenly
    (only ITK's console warning said so): the label map came out up to a slice off. `automed convert` refuses it;
    predict must too, before any model runs."""
    from automed.infer.inputs import discover

    ok = write_series(tmp_path / "ok", [0.0, 2.0, 4.0, 6.0, 8.0])
    assert [c.case_id for c in discover(ok, 1)] == ["ok"]
    gap = write_series(tmp_path / "gap", [0.0, 2.0, 6.0, 8.0, 10.0])  # the slice at 4 mm is missing
    with pytest.raises(AutomedError, match=r"evenly spaced"):
        discover(gap, 1)
    both = tmp_path / "both"
    write_series(both / "a", [0.0, 2.0, 4.0])
    write_series(both / "b", [0.0, 2.0, 6.0, 8.0])
    with pytest.raises(AutomedError, match=r"evenly spaced") as err:  # a folder of series folders too
        discover(both, 1)
    assert "b" in err.value.problems[0].file


def test_a_dicom_series_of_several_volumes_is_refused_for_prediction(tmp_path: Path) -> None:
    """A two-echo series (every position twice) was stacked into one volume of interleaved echoes."""
    from automed.infer.inputs import discover

    echoes = write_series(tmp_path / "echo", [0.0, 2.0, 4.0], echoes=2)
    with pytest.raises(AutomedError, match=r"series folder holds one volume"):
        discover(echoes, 1)


def test_training_refuses_the_series_prediction_refuses(tmp_path: Path) -> None:
    """verify, fingerprint and training read a series with a slice missing (spread evenly: 1.0333 mm instead of 1)
    or two echoes (stacked into one volume at 0.127 mm) without a word, where predict refused the same folders;
    in a segmentation dataset the label map was then blamed ("resample the label onto its image")."""
    from automed.data.dataset import load_dataset
    from automed.data.io import read_header, read_sitk
    from automed.data.verify import verify

    ok = write_series(tmp_path / "ok", [0.0, 2.0, 4.0, 6.0])
    assert read_sitk(ok).GetSize() == (8, 6, 4)
    for folder, rule in (
        (
            write_series(tmp_path / "gap", [0.0, 2.0, 6.0, 8.0]),
            r"must be evenly spaced; found gaps from 2\.000 to 4",
        ),
        (
            write_series(tmp_path / "echo", [0.0, 2.0, 4.0], echoes=2),
            r"must hold one volume; found 2 \(echoes",
        ),
    ):
        for read in (read_sitk, read_header):
            with pytest.raises(AutomedError, match=rule) as err:
                read(folder)
            assert err.value.problems[0].file.endswith(folder.name)
    csv = tmp_path / "cls.csv"
    csv.write_text(f"SubjectID,Channel_0,ValueToPredict\na,{ok},x\nc,{tmp_path / 'gap'},x\n")
    with pytest.raises(AutomedError, match=r"gap: the slices of a volume must be evenly spaced") as err:
        verify(load_dataset(csv), show_progress=False)
    assert [p.file for p in err.value.problems if "evenly spaced" in p.rule] == [str(tmp_path / "gap")]


def test_orientation_noise_does_not_split_a_series_into_volumes(tmp_path: Path) -> None:
    """Orientations were keyed by their text to 3 decimals: -0.0001 and 0.0001 (noise a scanner writes) read
    '-0.000' and '0.000', two volumes, and predict refused the series as several volumes."""
    import pydicom

    from automed.infer.inputs import discover

    series = write_series(tmp_path / "s", [0.0, 2.0, 4.0, 6.0])
    for i, f in enumerate(sorted(series.glob("*.dcm"))):
        ds = pydicom.dcmread(f)
        noise = 1e-4 if i % 2 else -1e-4
        ds.ImageOrientationPatient = [1.0, noise, 0.0, -noise, 1.0, 0.0]
        ds.save_as(f, enforce_file_format=True)
    assert [c.case_id for c in discover(series, 1)] == ["s"]


def test_slices_with_their_own_rescale_slope_keep_their_values(tmp_path: Path) -> None:
    """A PET series (or a CT export) whose slices carry their own RescaleSlope: ITK's series reader cast every slice
    to the first one's pixel type (slope 1: integers), so 21 x 0.5 = 10.5 came out 10 and 41 x 0.25 came out 10 in
    training, prediction, the bundle's runtime and `automed convert`, without a word."""
    import SimpleITK as sitk

    from automed.data.io import read_sitk
    from automed.runtime.io import Case, read_case
    from automed.workflow.convert import convert

    slopes = [1.0, 0.5, 0.25, 3.7]
    series = write_series(tmp_path / "pet", [0.0, 2.0, 4.0, 6.0], slopes=slopes)
    want = np.array([(10 * k + 1) * s for k, s in enumerate(slopes)])
    assert sitk.GetArrayFromImage(read_sitk(series))[:, 0, 0] == pytest.approx(want)
    channels, _ = read_case(Case("pet", (series,), ".nii.gz"))
    assert channels[0, :, 0, 0] == pytest.approx(want, rel=1e-6)
    res = convert(series, tmp_path / "nifti", show_progress=False)
    image = sitk.ReadImage(str(tmp_path / "nifti" / res.series[0]["file"]))
    assert sitk.GetArrayFromImage(image)[:, 0, 0] == pytest.approx(want)
    # a series whose slices share their rescale keeps its pixel type
    plain = write_series(tmp_path / "mr", [0.0, 2.0, 4.0])
    assert read_sitk(plain).GetPixelIDTypeAsString() == "16-bit unsigned integer"


def test_a_series_with_slices_of_another_size_names_the_sizes(tmp_path: Path) -> None:
    """A slice of another size in a series (a scout saved under the series' UID): convert said "found Size: [8, 4,
    1]. Fix: decompress it first", training and predict "found Size: [8, 4, 1]" - neither named the rule or the
    slices."""
    import pydicom

    from automed.data.io import read_sitk
    from automed.workflow.convert import convert

    series = write_series(tmp_path / "mixed", [0.0, 2.0, 4.0])
    odd = sorted(series.iterdir())[1]
    ds = pydicom.dcmread(odd)
    ds.Rows, ds.PixelData = 4, np.zeros((4, 8), np.uint16).tobytes()
    ds.save_as(odd)
    found = "2 slice(s) of 8 x 6, 1 slice(s) of 8 x 4"
    with pytest.raises(AutomedError, match="the slices of one volume share one size") as err:
        convert(series, tmp_path / "nifti", show_progress=False)
    assert err.value.problems[0].value.startswith(found) and "localizer" in err.value.problems[0].fix
    assert not (tmp_path / "nifti").exists()
    with pytest.raises(
        AutomedError, match=re.escape(f"the slices of one series share one size, found {found}")
    ):
        read_sitk(series)


def test_convert_refuses_a_dicom_segmentation_instead_of_stacking_its_frames(tmp_path: Path) -> None:
    """A DICOM SEG beside its series (automed predict --output-format dicom-seg writes one; PACS exports hold them):
    convert wrote it as a volume of its non-empty frames - frames at 0, 2 and 6 mm became slices at 6, 7 and 8 mm -
    a label map on a wrong grid, without a word (two segments on one slice stopped it with ITK's "Zero-valued
    spacing")."""
    from automed.data.io import dicom_series_files
    from automed.tools.dicom_seg import write_seg
    from automed.workflow.convert import convert

    series = write_series(tmp_path / "in" / "series", [0.0, 2.0, 4.0, 6.0])
    labels = np.zeros((4, 6, 8), np.uint8)
    labels[0, 1:3, 2:5] = labels[1, 1:3, 2:5] = labels[3, 1:3, 2:5] = 1
    (tmp_path / "in" / "seg").mkdir()
    write_seg(
        labels, dicom_series_files(series), {0: "background", 1: "lesion"}, tmp_path / "in" / "seg" / "a.dcm"
    )
    with pytest.raises(AutomedError, match="a segmentation's frames are segments, not slices") as err:
        convert(tmp_path / "in", tmp_path / "nifti", show_progress=False)
    assert [(p.file, p.value) for p in err.value.problems] == [("seg/a.dcm", "a DICOM Segmentation")]
    assert not (tmp_path / "nifti").exists()
    assert (
        len(convert(series, tmp_path / "nifti", show_progress=False).series) == 1
    )  # the series alone converts


def test_verify_refuses_a_dicom_segmentation_given_as_a_training_image_or_label(tmp_path: Path) -> None:
    """A DICOM SEG listed as a case's image (a CSV's image column, imagesTr) passed verify: SimpleITK read its
    frames as a volume. Listed as a label it was refused for a spacing of -1 with 'write the true voxel size', a fix
    that does not apply. Each is now refused by name, a file or a series folder holding one, and the fix says what
    to give instead."""
    import shutil

    import SimpleITK as sitk

    from automed.data.dataset import load_dataset
    from automed.data.io import dicom_series_files
    from automed.data.verify import verify
    from automed.tools.dicom_seg import write_seg

    def seg_over(series: Path, out: Path) -> Path:
        labels = np.zeros((len(dicom_series_files(series)), 6, 8), np.uint8)
        labels[:, 1:3, 2:5] = 1
        return write_seg(labels, dicom_series_files(series), {0: "background", 1: "lesion"}, out)

    def label_on(series: Path, out: Path) -> Path:
        ref = sitk.ReadImage(dicom_series_files(series))
        lab = sitk.GetImageFromArray((sitk.GetArrayFromImage(ref) > 5).astype(np.uint8))
        lab.CopyInformation(ref)
        sitk.WriteImage(lab, str(out))
        return out

    a = write_series(tmp_path / "a", [0.0, 1.0, 2.0, 3.0], uid="1.2.826.0.1.3680043.8.498.11")
    b = write_series(tmp_path / "b", [0.0, 1.0, 2.0], uid="1.2.826.0.1.3680043.8.498.12")
    c = write_series(tmp_path / "c", [0.0, 2.0], uid="1.2.826.0.1.3680043.8.498.13")
    seg_a, seg_b = seg_over(a, tmp_path / "a.seg.dcm"), seg_over(b, tmp_path / "b.seg.dcm")
    (tmp_path / "only_seg").mkdir()
    shutil.copy(seg_a, tmp_path / "only_seg" / "SEG0001")
    mixed = write_series(tmp_path / "mixed", [0.0, 1.0, 2.0], uid="1.2.826.0.1.3680043.8.498.14")
    shutil.copy(seg_b, mixed / "seg.dcm")  # a stray segmentation among a series' slices: move it out
    rows = [
        ("img", seg_a, label_on(a, tmp_path / "a.nii.gz")),
        ("folder", tmp_path / "only_seg", tmp_path / "a.nii.gz"),
        ("lab", b, seg_b),
        ("mix", mixed, tmp_path / "a.nii.gz"),
        ("ok", c, label_on(c, tmp_path / "c.nii.gz")),
    ]
    with pytest.raises(AutomedError) as err:
        verify(load_dataset(_csv_of(tmp_path / "d.csv", rows)), show_progress=False)
    seg_class = "a DICOM Segmentation (SOP class 1.2.840.10008.5.1.4.1.1.66.4)"
    by_file = {p.file: p for p in err.value.problems}
    assert len(err.value.problems) == 4 and {f: p.value for f, p in by_file.items()} == {
        str(seg_a): seg_class,
        str(tmp_path / "only_seg"): f"{seg_class}: SEG0001",
        str(seg_b): seg_class,
        str(mixed): f"{seg_class}: seg.dcm",
    }
    stray = by_file[
        str(mixed)
    ]  # the folder is the series: the fix moves the segmentation out, not the folder
    assert "a DICOM Segmentation among them is not a slice" in stray.rule
    assert stray.fix.startswith("move seg.dcm out of the series folder")
    image, folder, label = by_file[str(seg_a)], by_file[str(tmp_path / "only_seg")], by_file[str(seg_b)]
    assert image.rule == folder.rule and image.rule.startswith(
        "a training image must picture the body; a DICOM Segmentation is a label, not an image (SimpleITK reads its "
        "frames, one per segment and slice, as the slices of a volume on a wrong grid)"
    )
    assert image.fix.startswith("give the series it was drawn on as the case's image, and this segmentation, "
                                "converted to a label map on the grid of the series it was drawn on")  # fmt: skip
    assert "highdicom.seg.segread(file).get_volume()" in image.fix and image.fix.endswith("as its label")
    assert label.rule.startswith(
        "a training label must be a label map on its image's voxel grid, not a DICOM Seg"
    )
    assert (
        label.fix.startswith("give this segmentation, converted to a label map")
        and "spacing" not in label.fix
    )
    verify(
        load_dataset(_csv_of(tmp_path / "good.csv", rows[4:])), show_progress=False
    )  # the sound case passes


def _csv_of(path: Path, rows: list[tuple[str, Path, Path]]) -> Path:
    path.write_text("SubjectID,Channel_0,Label\n" + "".join(f"{i},{x},{y}\n" for i, x, y in rows))
    return path


def test_convert_given_one_nifti_file_says_it_needs_no_converting(tmp_path: Path) -> None:
    """`automed convert one.nii.gz` told the user to "move it out" (of the input it is)."""
    import SimpleITK as sitk

    from automed.workflow.convert import convert

    image = tmp_path / "one.nii.gz"
    sitk.WriteImage(sitk.Image(4, 4, 4, sitk.sitkInt16), str(image))
    with pytest.raises(AutomedError) as err:
        convert(image, tmp_path / "out", show_progress=False)
    (p,) = err.value.problems
    assert (p.file, p.value) == ("one.nii.gz", "a NIfTI file") and p.fix.startswith("it is NIfTI already")
    assert not (tmp_path / "out").exists()


def test_a_gantry_tilted_series_is_refused_wherever_it_is_read(tmp_path: Path) -> None:
    """A CT whose slices move 0.73 mm along y from one to the next (5 mm apart: a 20 degree gantry tilt) was read as
    a straight stack: the last slice 2.2 mm from where it was scanned, the slice distance read along the slant (5.32
    instead of 5), by predict, the bundle, training and convert alike, and a DICOM-SEG of it disagreed with its
    NIfTI label map. Refused everywhere, naming the shift and the tilt; a shift below a quarter pixel (rounding)
    is not one."""
    from automed.data.io import read_sitk
    from automed.infer.inputs import discover
    from automed.runtime.io import Case, read_case
    from automed.workflow.convert import convert

    shift = 5.0 * float(np.tan(np.radians(20.0)))
    tilted = write_series(tmp_path / "tilt", [0.0, 5.0, 10.0, 15.0], shift=shift)
    found = re.escape(
        f"shifted up to {3 * shift:.2f} mm across their plane (a gantry tilt of about 20.0 degrees"
    )
    for read in (lambda: discover(tilted, 1), lambda: read_sitk(tilted)):
        with pytest.raises(AutomedError, match=f"stacked along their normal; found slices {found}") as err:
            read()
        assert "dcm2niix" in str(err.value)
    with pytest.raises(SystemExit, match=f"stacked along their normal.*{found}"):
        read_case(Case("tilt", (tilted,), ".nii.gz"))  # the bundle's reader
    with pytest.raises(AutomedError, match=found):
        convert(tilted, tmp_path / "nifti", show_progress=False)
    assert not (tmp_path / "nifti").exists()
    noise = write_series(
        tmp_path / "noise", [0.0, 5.0, 10.0, 15.0], shift=0.001, uid="1.2.826.0.1.3680043.8.498.7"
    )
    assert read_sitk(noise).GetSize() == (8, 6, 4) and len(discover(noise, 1)) == 1


def test_convert_joins_a_series_an_export_split_over_folders(tmp_path: Path) -> None:
    """A series whose slices an export spread over two folders (here alternately) was written as two volumes of
    half its slices at twice its spacing, exit 0, without a word: one series is one volume whatever its folders."""
    import SimpleITK as sitk

    from automed.workflow.convert import convert

    write_series(tmp_path / "in" / "a", [0.0, 5.0, 10.0])
    write_series(tmp_path / "in" / "b", [2.5, 7.5, 12.5])  # the same series UID, its other slices
    res = convert(tmp_path / "in", tmp_path / "out", show_progress=False)
    (series,) = res.series
    image = sitk.ReadImage(str(tmp_path / "out" / series["file"]))
    assert image.GetSize() == (8, 6, 6) and image.GetSpacing()[2] == pytest.approx(2.5)
    assert sitk.GetArrayFromImage(image)[:, 0, 0].tolist() == [1, 1, 11, 11, 21, 21]
    assert image.GetOrigin()[2] == pytest.approx(0.0)
