"""A PACS or CD export nests its DICOM series as PATIENT/STUDY/SERIES/files: a series two levels deep or more was
named as not read instead of predicted, in ``automed predict`` and the bundle alike. Each folder under the input, at
any depth, is read for DICOM by the rule of the input's sub-folders: one holding a series is a case, its ID the
relative path's parts joined by ``_``; single-file DICOM are a case each. A sub-folder that is a link to the input
or a folder above it (a loop), or to a folder read already (its cases twice), is not followed and named."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from automed.errors import DatasetError
from automed.infer.inputs import discover
from automed.runtime.folders import sub_folders
from automed.runtime.inputs import find_cases
from tests.conftest import shared, two_series_folder
from tests.test_dicom_xray_folders import xray_dicom


def _series(dest: Path, ending: str = ".dcm") -> None:
    dest.mkdir(parents=True)
    for f in shared("dicom", "hippo_crop_series", "Study1").glob("*.dcm"):
        shutil.copy(f, dest / f"IM{int(f.stem):04d}{ending}")


def _both(
    root: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> tuple[list[str], str]:
    """The case IDs predict and the bundle find under ``root`` (the same, or the test fails) and predict's warning
    (the bundle's, printed, the same)."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="automed"):
        found = [c.case_id for c in discover(root, 1)]
    said = " | ".join(r.getMessage() for r in caplog.records)
    capsys.readouterr()
    assert sorted(c.case_id for c in find_cases(root, 1)) == found
    assert said in capsys.readouterr().err
    return found, said


def test_a_pacs_export_gives_a_case_per_series_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "IN"
    _series(root / "patient1" / "study1" / "series1")
    _series(root / "patient1" / "study1" / "series2", ".IMA")
    _series(root / "patient2" / "study1" / "1.2.840.99", "")  # folders and files named by UID, no ending
    (root / "patient3" / "xr").mkdir(parents=True)
    for i in range(2):
        xray_dicom(root / "patient3" / "xr" / f"IM000{i}", i)
    (root / "patient1" / "notes.txt").write_text("contrast at 2 min")
    (root / "patient1" / "DICOMDIR").write_bytes(b"\x00" * 132)  # a CD's index: not named
    (root / "patient2" / "old").mkdir()
    (root / "patient2" / "old" / "a.nii.gz").write_bytes(b"\x00" * 10)  # sub-folders are read for DICOM only
    found, said = _both(root, caplog, capsys)
    assert found == [
        "patient1_study1_series1",
        "patient1_study1_series2",
        "patient2_study1_1.2.840.99",
        "patient3_xr_IM0000",
        "patient3_xr_IM0001",
    ]
    assert "2 not read: patient1/notes.txt, patient2/old/ (" in said
    cases = {c.case_id: c for c in discover(root, 1)}
    assert cases["patient1_study1_series1"].images == (root / "patient1" / "study1" / "series1",)
    assert cases["patient3_xr_IM0001"].images == (root / "patient3" / "xr" / "IM0001",)


def test_folders_joining_to_one_case_id_are_refused(tmp_path: Path) -> None:
    _series(tmp_path / "a_b" / "c")
    _series(tmp_path / "a" / "b_c")
    with pytest.raises(
        DatasetError, match=r"every input must have its own case ID.*a_b_c from \['a/b_c', 'a_b/c'\]"
    ):
        discover(tmp_path, 1)
    with pytest.raises(SystemExit, match=r"both would write the prediction a_b_c\.nii\.gz; rename one"):
        find_cases(tmp_path, 1)


def test_two_series_in_one_deep_folder_are_refused(tmp_path: Path) -> None:
    two_series_folder(tmp_path / "p1" / "s1" / "mixed")
    with pytest.raises(DatasetError, match=r"mixed.*exactly one DICOM series"):
        discover(tmp_path, 1)


def test_links_that_loop_or_repeat_a_folder_are_not_followed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "IN"
    _series(root / "p1" / "mr")
    _series(tmp_path / "elsewhere" / "ct")  # a link out of the input to a folder of its own: read
    (root / "p1" / "up").symlink_to("..")  # the input folder: a loop
    (root / "above").symlink_to(tmp_path)  # a folder above the input: a loop
    (root / "p1" / "mr_again").symlink_to("mr")  # a folder read already
    (root / "a_first").symlink_to(root / "p1")  # sorts before p1, which keeps its own name
    (root / "ext").symlink_to(tmp_path / "elsewhere")
    (root / "ext2").symlink_to(root / "ext")  # the same folder as ext
    (tmp_path / "elsewhere" / "ct" / "back").symlink_to(root)  # back into the input from outside it
    _series(root / "ct0")
    (root / "ct1").symlink_to("ct0")  # one level deep too: ct0 was predicted twice, as ct0 and ct1
    found, said = _both(root, caplog, capsys)
    assert found == ["ct0", "ext_ct", "p1_mr"]  # each once, and the walk ended
    assert said.startswith(
        f"{root}: 7 not read: a_first/ (the same folder as p1/, read once there), above/ (a link"
    )
    assert "ext/ct/back/ (a link to the input folder" in said  # inside a series folder, named too
    loop = "a link to the input folder or a folder above it: not followed, it would loop"
    assert sub_folders(root)[1] == {
        root / "a_first": "the same folder as p1/, read once there",
        root / "above": loop,
        root / "ct1": "the same folder as ct0/, read once there",
        root / "ext2": "the same folder as ext/, read once there",
        root / "p1" / "mr_again": "the same folder as p1/mr/, read once there",
        root / "p1" / "up": loop,
        root / "ext" / "ct" / "back": loop,
    }


def test_a_cds_dicomdir_given_as_the_input_reads_its_folder(tmp_path: Path) -> None:
    """A viewer opens a CD by its DICOMDIR (the index, no image): given as the input it was refused as unreadable,
    'replace the corrupt file'. It stands for the CD's folder: DICOM/PA000000/ST000000/SE000000/IM000000."""
    cd = tmp_path / "cd"
    _series(cd / "DICOM" / "PA000000" / "ST000000" / "SE000000", "")
    (cd / "DICOMDIR").write_bytes(b"\x00" * 128 + b"DICM" + b"\x00" * 64)
    for given in (cd, cd / "DICOMDIR", cd / "dicomdir"):
        if given.name == "dicomdir":
            (cd / "DICOMDIR").rename(given)
        assert [c.case_id for c in discover(given, 1)] == ["DICOM_PA000000_ST000000_SE000000"]
        assert [c.case_id for c in find_cases(given, 1)] == ["DICOM_PA000000_ST000000_SE000000"]


def test_a_folder_that_cannot_be_listed_is_named_not_a_traceback(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A sub-folder without read permission (another user's export on a shared disk; the tests run as any user,
    so the permission error is simulated) is named with why, beside the cases read."""
    _series(tmp_path / "IN" / "p1" / "mr")
    (tmp_path / "IN" / "p2" / "locked").mkdir(parents=True)
    listing = Path.iterdir

    def iterdir(self: Path):  # type: ignore[no-untyped-def]
        if self.name == "locked":
            raise PermissionError(13, "Permission denied", str(self))
        return listing(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    found, said = _both(tmp_path / "IN", caplog, capsys)
    assert found == ["p1_mr"]
    assert "1 not read: p2/locked/ (cannot be listed: Permission denied) (" in said
    (
        tmp_path / "IN" / "p1" / "mr" / "locked"
    ).mkdir()  # in a series folder given itself: a PermissionError before
    found, said = _both(tmp_path / "IN" / "p1" / "mr", caplog, capsys)
    assert found == ["mr"]
    assert "1 not read: locked/ (cannot be listed) (" in said


def test_a_dicom_segmentation_is_no_case(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A DICOM Segmentation holds pixels but no picture of the body: predict's own CASE.seg.dcm in an output folder
    inside the input, or one a PACS export holds beside its images, was predicted as an X-ray ('pred_mr.seg'). It is
    named as not read, wherever it is, and refused when given alone."""
    import numpy as np

    from automed.data.io import dicom_series_files, read_image
    from automed.tools.dicom_seg import write_seg

    root = tmp_path / "IN"
    _series(root / "p1" / "mr")
    files = dicom_series_files(root / "p1" / "mr")
    image = read_image(root / "p1" / "mr")[0][0]
    (root / "pred").mkdir()
    seg = write_seg(
        (image > image.mean()).astype(np.uint8), files, {1: "hippo"}, root / "pred" / "mr.seg.dcm"
    )
    shutil.copy(seg, root / "top.seg.dcm")
    (root / "xr").mkdir()
    xray_dicom(root / "xr" / "IM0001", 0)
    shutil.copy(seg, root / "xr" / "SEG0001")  # beside X-rays, no ending
    found, said = _both(root, caplog, capsys)
    assert found == ["p1_mr", "xr_IM0001"]
    assert said.startswith(
        f"{root}: 3 not read: pred/, top.seg.dcm (a DICOM Segmentation, no image), xr/SEG0001 (a DICOM Segmentation"
    )
    with pytest.raises(
        DatasetError, match=r"top\.seg\.dcm: an input must be an image; found a DICOM Segmentation"
    ):
        discover(root / "top.seg.dcm", 1)
    with pytest.raises(
        SystemExit, match=r"top\.seg\.dcm: an input must be an image, found a DICOM Segmentation"
    ):
        find_cases(root / "top.seg.dcm", 1)


def test_a_dose_grid_beside_x_rays_is_no_case(tmp_path: Path) -> None:
    import pydicom

    for i in range(2):
        xray_dicom(tmp_path / f"IM000{i}.dcm", i)
    dose = pydicom.dcmread(tmp_path / "IM0001.dcm")
    dose.file_meta.MediaStorageSOPClassUID = dose.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.2"  # RT Dose
    dose.save_as(tmp_path / "IM0001.dcm", enforce_file_format=True)
    assert [c.case_id for c in discover(tmp_path, 1)] == ["IM0000"]
    assert [c.case_id for c in find_cases(tmp_path, 1)] == ["IM0000"]


def test_folders_on_a_share_without_inode_numbers_are_told_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some network and Windows shares give every file inode 0: told apart by device and inode, every folder there
    would be 'the same folder' as the first. Their resolved paths tell them apart; a loop is still not followed."""
    import os

    _series(tmp_path / "IN" / "p1" / "mr")
    _series(tmp_path / "IN" / "p2" / "mr")
    (tmp_path / "IN" / "p2" / "up").symlink_to("..")
    stat = Path.stat

    def no_inode(self: Path, **kw: bool) -> os.stat_result:
        st = stat(self, **kw)
        return os.stat_result((st.st_mode, 0, *tuple(st)[2:]))

    monkeypatch.setattr(Path, "stat", no_inode)
    folders, skipped = sub_folders(tmp_path / "IN")
    assert [f.relative_to(tmp_path / "IN").as_posix() for f in folders] == ["p1", "p1/mr", "p2", "p2/mr"]
    assert list(skipped) == [tmp_path / "IN" / "p2" / "up"]


def test_an_input_folder_larger_than_an_export_is_refused_not_read_to_its_end(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``automed predict -i ~`` by mistake walked the whole home tree (every folder also scanned for DICOM) before
    saying 'no images found'. Past the folder limit (entries: a thousand times it) discovery stops and says why and
    how to go on; ``AUTOMED_MAX_INPUT_FOLDERS`` raises it for an export that large."""
    from automed.runtime.folders import MAX_FOLDERS, MAX_FOLDERS_VAR

    assert MAX_FOLDERS >= 10_000  # a PACS export is tens to a few thousand folders
    (tmp_path / "in").mkdir()
    xray_dicom(tmp_path / "in" / "a.dcm", 0)
    for p in range(3):  # PATIENT/STUDY/SERIES: 1 + 3 + 6 + 12 folders
        for s in range(2):
            for k in range(2):
                (tmp_path / "in" / f"p{p}" / f"s{s}" / f"se{k}").mkdir(parents=True)
    root = tmp_path / "in"
    monkeypatch.setenv(MAX_FOLDERS_VAR, "21")
    rule = (
        r"at most 21 folders or 21000 files and folders in all; found 22 folder\(s\) and \d+ entries so far"
    )
    with pytest.raises(SystemExit, match=rf"{root}: an input folder holds images or DICOM .*{rule}"):
        find_cases(root, 1)
    with pytest.raises(DatasetError, match=rf"{rule} .* set AUTOMED_MAX_INPUT_FOLDERS to more than 21"):
        discover(root, 1)
    monkeypatch.setenv(MAX_FOLDERS_VAR, "22")
    assert _both(root, caplog, capsys)[0] == ["a"]
    monkeypatch.setenv(MAX_FOLDERS_VAR, "1")  # entries: 1,001 files in one folder, past 1 x 1,000
    (tmp_path / "flat").mkdir()
    for i in range(1001):
        (tmp_path / "flat" / f"n{i}.txt").write_text("")
    with pytest.raises(
        SystemExit, match=r"found 1 folder\(s\) and 1001 entries so far \(discovery stopped at \./\)"
    ):
        find_cases(tmp_path / "flat", 1)
    monkeypatch.setenv(MAX_FOLDERS_VAR, "many")
    with pytest.raises(DatasetError, match=r"positive whole number.*'many'.*or unset it for 10000"):
        discover(root, 1)
