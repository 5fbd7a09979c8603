"""automed anonymize / --check / convert on the shared DICOM series (issue 17)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from automed.cli import app
from automed.errors import AutomedError
from automed.workflow.anonymize import anonymize, check_anonymized
from automed.workflow.convert import convert
from tests.conftest import shared

runner = CliRunner()
PHI = (
    "Tarapov",
    "Ivan",
    "OPA135179",
    "OPA5311210",
    "Orthopedic",
    "Kermit",
    "terry ave",
    "19550101",
    "MRC37975",
)


def _by_instance(folder: Path) -> dict[int, pydicom.Dataset]:
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith(".json")]
    return {int(ds.InstanceNumber): ds for ds in (pydicom.dcmread(p) for p in files)}


@pytest.fixture(scope="module")
def knee(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    src = shared("dicom", "knee_mr_phi")
    base = tmp_path_factory.mktemp("knee")
    anonymize(src, base / "anon", key=base / "study.key", show_progress=False)
    return src, base / "anon", base / "study.key"


def test_knee_check_finds_nothing_and_pixels_geometry_unchanged(knee: tuple[Path, Path, Path]) -> None:
    src, anon, key = knee
    assert check_anonymized(anon, src) == []
    before = _by_instance(src)
    after = _by_instance(anon)
    assert sorted(before) == sorted(after)
    for n, a in after.items():
        b = before[n]
        assert np.array_equal(a.pixel_array, b.pixel_array)
        for kw in (
            "ImagePositionPatient",
            "ImageOrientationPatient",
            "PixelSpacing",
            "SliceThickness",
            "Rows",
        ):
            assert a.get(kw) == b.get(kw), kw
        assert a.PatientIdentityRemoved == "YES" and a.LongitudinalTemporalInformationModified == "REMOVED"
        assert not any(e.tag.is_private for e in a.iterall())
        assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    # one study, one series, one frame of reference; every UID keyed; references inside sequences replaced too
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "PatientID"):
        assert len({str(ds.get(kw)) for ds in after.values()}) == 1, kw
    refs_before = {
        n: [r.ReferencedSOPInstanceUID for r in ds.ReferencedImageSequence] for n, ds in before.items()
    }
    from automed.tools.deid_keys import load_key

    k = load_key(key)
    for n, ds in after.items():
        assert [r.ReferencedSOPInstanceUID for r in ds.ReferencedImageSequence] == [
            k.uid(u) for u in refs_before[n]
        ]
        assert ds.SOPInstanceUID == k.uid(before[n].SOPInstanceUID)
    # names carry no PHI; the mapping only in the key file
    names = " ".join(str(p.relative_to(anon)) for p in anon.rglob("*"))
    assert not any(v.lower() in names.lower() for v in PHI)
    assert "OPA135179" in key.read_text()
    assert oct(key.stat().st_mode & 0o777) == "0o600"


def test_report_lists_actions_without_values(knee: tuple[Path, Path, Path]) -> None:
    _, anon, _ = knee
    text = (anon / "deidentification.json").read_text()
    report = json.loads(text)
    attrs = report["dicom"]["attributes"]
    assert attrs["PatientName"] == {"D (pseudonym)": 36}
    assert attrs["InstitutionAddress"] == {"X": 36}
    assert attrs["private attributes"] == {"X": 36}
    assert attrs["ReferencedSOPInstanceUID"] == {"U (keyed)": 36}
    assert report["patients"] == 1
    assert not any(v.lower() in text.lower() for v in PHI)


def test_check_finds_the_originals_identifying_content(knee: tuple[Path, Path, Path]) -> None:
    src, _, _ = knee
    r = runner.invoke(app, ["anonymize", str(src), "--check", "--original", str(src)])
    assert r.exit_code == 1
    for rule in ("PatientName: holds an identifying value", "a private attribute remains", "(0009,1001)"):
        assert rule in r.output
    assert "Tarapov" not in r.output  # findings never print the value


def test_same_key_same_uids_new_key_new_uids(knee: tuple[Path, Path, Path], tmp_path: Path) -> None:
    src, anon, key = knee
    anonymize(src, tmp_path / "again", key=key, show_progress=False)
    anonymize(src, tmp_path / "fresh", show_progress=False)
    first, again, fresh = (_by_instance(p) for p in (anon, tmp_path / "again", tmp_path / "fresh"))
    assert all(first[n].SOPInstanceUID == again[n].SOPInstanceUID for n in first)
    assert first[1].PatientID == again[1].PatientID
    assert all(first[n].SOPInstanceUID != fresh[n].SOPInstanceUID for n in first)


def test_longitudinal_dates_shift_by_one_offset(tmp_path: Path) -> None:
    src = shared("dicom", "knee_mr_phi")
    anonymize(
        src,
        tmp_path / "a",
        options=["retain-longitudinal-modified-dates"],
        key=tmp_path / "k",
        show_progress=False,
    )
    before, after = _by_instance(src), _by_instance(tmp_path / "a")
    shifts = set()
    for n, ds in after.items():
        assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
        for kw in ("StudyDate", "AcquisitionDate", "ContentDate"):
            d0 = np.datetime64(f"{before[n].get(kw)[:4]}-{before[n].get(kw)[4:6]}-{before[n].get(kw)[6:]}")
            d1 = np.datetime64(f"{ds.get(kw)[:4]}-{ds.get(kw)[4:6]}-{ds.get(kw)[6:]}")
            shifts.add(int((d1 - d0).astype(int)))
        assert ds.PatientBirthDate in ("", "00010101")
    assert len(shifts) == 1 and -3650 <= shifts.pop() <= -365
    assert check_anonymized(tmp_path / "a", src) == []


def test_bad_option_did_you_mean(tmp_path: Path) -> None:
    with pytest.raises(AutomedError, match="retain-longitudinal-modified-dates"):
        anonymize(shared("dicom", "knee_mr_phi"), tmp_path / "o", options=["retain-longitudinal-dates"])


def _copy_series(tmp_path: Path, n: int = 4) -> Path:
    src = shared("dicom", "hippo_crop_series", "Study1")
    dst = tmp_path / "in"
    dst.mkdir()
    for p in sorted(src.iterdir())[:n]:
        shutil.copy(p, dst / p.name)
    return dst


@pytest.mark.parametrize(
    "kind", ["not_dicom", "truncated", "cut_before_pixels", "no_pixels", "burned_in_yes", "burned_in_us"]
)
def test_bad_input_is_refused_and_nothing_written(tmp_path: Path, kind: str) -> None:
    src = _copy_series(tmp_path)
    victim = sorted(src.iterdir())[1]
    expect = {
        "not_dicom": "must be a DICOM file",
        "truncated": "truncated",
        # an image cut before its pixels is no "object without pixel data" to move out (review)
        "cut_before_pixels": r"must hold its pixel data; found no pixel data in its \d+ bytes \(the file may be trunc",
        "no_pixels": "no pixel data",
        "burned_in_yes": "BurnedInAnnotation is YES",
        "burned_in_us": "absent for modality US",
    }[kind]
    if kind == "not_dicom":
        (src / "notes.txt").write_text("patient list")
    elif kind == "truncated":
        data = victim.read_bytes()
        victim.write_bytes(data[: len(data) - 500])
    elif kind == "cut_before_pixels":
        data = victim.read_bytes()
        victim.write_bytes(data[: data.index(b"\xe0\x7f\x10\x00")])  # the file ends at the PixelData tag
    else:
        ds = pydicom.dcmread(victim)
        if kind == "no_pixels":
            del ds.PixelData
        elif kind == "burned_in_yes":
            ds.BurnedInAnnotation = "YES"
        else:
            ds.Modality = "US"
        ds.save_as(victim)
    with pytest.raises(AutomedError, match=expect) as exc:
        anonymize(src, tmp_path / "out", show_progress=False)
    assert "nothing was written" in str(exc.value)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no half-built folder left
    if kind.startswith("burned_in"):
        res = anonymize(src, tmp_path / "out", allow_burned_in=True, show_progress=False)
        assert res.files == 4 and "burned-in" in res.warnings[0]
    else:
        with pytest.raises(AutomedError, match=expect):
            convert(src, tmp_path / "conv", show_progress=False)
        assert not (tmp_path / "conv").exists()


def test_output_inside_input_and_key_inside_output_refused(tmp_path: Path) -> None:
    src = _copy_series(tmp_path)
    with pytest.raises(AutomedError, match="must not lie inside the input"):
        anonymize(src, src / "anon", show_progress=False)
    with pytest.raises(AutomedError, match="key file"):
        anonymize(src, tmp_path / "anon", key=tmp_path / "anon" / "k.json", show_progress=False)
    with pytest.raises(AutomedError, match="must not lie inside the input"):
        convert(src, src / "nii", show_progress=False)
    assert len(list(src.iterdir())) == 4  # nothing written into the input


def _volumes(folder: Path) -> list[tuple[tuple[int, ...], tuple[float, ...], tuple[float, ...], np.ndarray]]:
    out = []
    for p in sorted(folder.glob("*.nii.gz")):
        img = sitk.ReadImage(str(p))
        out.append((img.GetSize(), img.GetOrigin(), img.GetDirection(), sitk.GetArrayFromImage(img)))
    return sorted(out, key=lambda v: v[0])


def test_convert_every_series_and_same_volume_after_anonymization(tmp_path: Path) -> None:
    src = shared("dicom", "hippo_crop_series")
    res = convert(src, tmp_path / "before", show_progress=False)
    assert len(res.series) == 3 and {s["files"] for s in res.series} == {32, 35, 40}
    anonymize(src, tmp_path / "anon", show_progress=False)
    convert(tmp_path / "anon", tmp_path / "after", show_progress=False)
    before, after = _volumes(tmp_path / "before"), _volumes(tmp_path / "after")
    assert len(before) == len(after) == 3
    for b, a in zip(before, after, strict=True):
        assert b[:3] == a[:3] and np.array_equal(b[3], a[3])
    # the volume matches SimpleITK's own series reading of the original folder
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(src / "Study1")))
    ref = reader.Execute()
    assert any(np.array_equal(sitk.GetArrayFromImage(ref), v[3]) and ref.GetOrigin() == v[1] for v in before)
    index = json.loads((tmp_path / "before" / "series.json").read_text())
    text = json.dumps(index)
    assert "Thanos" not in text and "PGBM" not in text and "1.2.826" not in text


def test_convert_two_series_in_one_folder(tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(shared("dicom", "knee_mr_phi"), mixed)
    for p in sorted(shared("dicom", "hippo_crop_series", "Study2").iterdir()):
        shutil.copy(p, mixed / f"h{p.name}")
    res = convert(mixed, tmp_path / "out", show_progress=False)
    assert sorted((s["modality"], s["files"]) for s in res.series) == [("MR", 35), ("MR", 36)]
    sizes = sorted(tuple(s["size"]) for s in res.series)
    assert sizes == [(36, 48, 35), (448, 448, 36)]


def test_nifti_header_scrubbed_and_renamed(tmp_path: Path) -> None:
    src = tmp_path / "nii"
    src.mkdir()
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    img = nib.Nifti1Image(data, np.diag([0.5, 0.7, 2.0, 1.0]))
    img.header["descrip"] = b"Smith^John 19800101"
    img.header["aux_file"] = b"MRN123456"
    img.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"PatientName=Smith^John"))
    nib.save(img, src / "Smith_John_T1.nii.gz")
    assert check_anonymized(src) != []
    anonymize(src, tmp_path / "anon", show_progress=False)
    (out,) = (tmp_path / "anon" / "nifti").iterdir()
    assert "smith" not in out.name.lower() and out.name.startswith("ANON")
    back = nib.load(out)
    assert np.array_equal(np.asanyarray(back.dataobj), data)
    assert np.allclose(back.affine, img.affine)
    assert back.header["descrip"].item() == b"" and not back.header.extensions
    assert check_anonymized(tmp_path / "anon", src) == []


def _multiframe(dest: Path) -> Path:
    """Study1 of the hippocampus crops as one legacy-converted enhanced MR file (highdicom): per-frame positions and
    references to the source images inside nested functional-group sequences."""
    import highdicom as hd

    from automed.data.io import dicom_series_files
    from automed.tools.dicom_seg import TYPE2_PATIENT_STUDY

    sources = [pydicom.dcmread(f) for f in dicom_series_files(shared("dicom", "hippo_crop_series", "Study1"))]
    for ds in sources:
        for (
            kw
        ) in TYPE2_PATIENT_STUDY:  # what highdicom copies into the new object; this export leaves some out
            setattr(ds, kw, ds.get(kw, ""))
        ds.AccessionNumber = "ACC778899"
    mf = hd.legacy.LegacyConvertedEnhancedMRImage(
        sources, series_instance_uid=hd.UID(), series_number=7, sop_instance_uid=hd.UID(), instance_number=1
    )
    dest.mkdir(parents=True)
    mf.save_as(dest / "enhanced.dcm")
    return dest


def test_multiframe_converted_with_its_geometry_and_anonymized_at_depth(tmp_path: Path) -> None:
    mf = _multiframe(tmp_path / "mf")
    res = convert(mf, tmp_path / "conv", show_progress=False)
    assert len(res.series) == 1 and res.series[0]["multiframe"] and res.series[0]["size"] == [35, 51, 32]
    (single,) = convert(
        shared("dicom", "hippo_crop_series", "Study1"), tmp_path / "ref", show_progress=False
    ).series
    a, b = (
        sitk.DICOMOrient(sitk.ReadImage(str(p)), "LPS")
        for p in (tmp_path / "conv" / res.series[0]["file"], tmp_path / "ref" / single["file"])
    )
    assert a.GetOrigin() == b.GetOrigin() and a.GetDirection() == b.GetDirection()
    assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))  # the same voxels in space
    anonymize(mf, tmp_path / "anon", show_progress=False)
    assert check_anonymized(tmp_path / "anon", mf) == []
    (out,) = (tmp_path / "anon").rglob("*.dcm")
    text = str(pydicom.dcmread(out))
    assert "Thanos" not in text and "ACC778899" not in text and "1.2.826.0.1.3680043.8.498" not in text


def test_retain_safe_private_keeps_only_the_listed_attributes(tmp_path: Path) -> None:
    src = shared("dicom", "knee_mr_phi")
    safe = tmp_path / "safe.yaml"
    safe.write_text('"SIEMENS MR HEADER": ["0019,08"]\n')
    with pytest.raises(AutomedError, match="go together"):
        anonymize(src, tmp_path / "x", options=["retain-safe-private"], show_progress=False)
    anonymize(src, tmp_path / "a", options=["retain-safe-private"], safe_private=safe, show_progress=False)
    ds = pydicom.dcmread(next((tmp_path / "a").rglob("*.dcm")))
    private = {(e.tag.group, e.tag.element & 0xFF, str(e.value)) for e in ds.iterall() if e.tag.is_private}
    creators = {v for g, el, v in private if el == 0x10}
    assert creators == {"SIEMENS MR HEADER"}
    assert {(g, el) for g, el, _ in private if el != 0x10} == {(0x0019, 0x08)}  # not (0051,xx08): other group
    assert "113111" in {c.CodeValue for c in ds.DeidentificationMethodCodeSequence}
    report = json.loads((tmp_path / "a" / "deidentification.json").read_text())
    assert report["dicom"]["attributes"]["private 0019 SIEMENS MR HEADER 08"] == {"K (safe list)": 36}
    assert check_anonymized(tmp_path / "a", src) == []
