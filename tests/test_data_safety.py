"""Unsafe input (issue 13): case IDs that are not safe file names, label values beyond int16, broken spacing, huge
headers, the same image under two IDs, symlink loops and CSV encodings. Each is refused by verify with a problem
naming the file, the rule, the value and the fix, and verify writes nothing."""

from __future__ import annotations

import errno
import gzip
import inspect
import json
import math
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from automed import api
from automed.data import verify as verify_module
from automed.data.dataset import load_dataset
from automed.data.paths import access_problem, os_problem
from automed.data.verify import verify
from automed.data.verify_rules import DEFAULT_MAX_VOXELS, LABEL_MAX
from automed.errors import DatasetError, Problem
from automed.testing.synthetic import make_dataset


@pytest.fixture()
def ds(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "ds", n_cases=3, shape=(10, 12, 12), seed=3)


def _img(ds: Path, i: int) -> Path:
    return ds / "imagesTr" / f"case_{i:03d}.nii.gz"


def _lab(ds: Path, i: int) -> Path:
    return ds / "labelsTr" / f"case_{i:03d}.nii.gz"


def _csv(path: Path, rows: list[tuple[str, ...]], header: str = "SubjectID,Channel_0,Label") -> Path:
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


def _refused(dataset: Path, tmp_path: Path, **kw: int) -> list[Problem]:
    """Load and verify ``dataset``: it must be refused with a DatasetError, and nothing under tmp_path may change."""
    before = _snapshot(tmp_path)
    with pytest.raises(DatasetError) as info:
        verify(load_dataset(dataset), show_progress=False, **kw)
    assert _snapshot(tmp_path) == before, "verify must write nothing"
    return info.value.problems


def _has(problems: list[Problem], file: str | Path, rule: str, value: str, fix: str) -> Problem:
    for p in problems:
        if str(file) in p.file and rule in p.rule and value in p.value and fix in p.fix:
            return p
    raise AssertionError(
        f"no problem with file~{file}, rule~{rule!r}, value~{value!r}, fix~{fix!r} in:\n"
        + "\n".join(map(str, problems))
    )


def _voxels_read(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files whose voxels verify reads (workers=1 runs in this process)."""
    seen: list[Path] = []
    real = verify_module.read_sitk

    def spy(path: Path) -> sitk.Image:
        seen.append(path)
        return real(path)

    monkeypatch.setattr(verify_module, "read_sitk", spy)
    return seen


# 1. case IDs


@pytest.mark.parametrize("sid", ["../../x", "/abs/path", "a b", "x/y", ".hidden", ".."])
def test_unsafe_subject_id_is_refused(ds: Path, tmp_path: Path, sid: str) -> None:
    csv = _csv(tmp_path / "d.csv", [(sid, _img(ds, 0), _lab(ds, 0)), ("ok", _img(ds, 1), _lab(ds, 1))])
    _has(_refused(csv, tmp_path), csv, "safe file names", repr(sid), "rename the SubjectID")


def test_unsafe_subject_id_stops_the_whole_chain(ds: Path, tmp_path: Path) -> None:
    csv = _csv(tmp_path / "d.csv", [("../../x", _img(ds, 0), _lab(ds, 0)), ("ok", _img(ds, 1), _lab(ds, 1))])
    wd = tmp_path / "W"
    with pytest.raises(DatasetError) as info:
        api.plan_dataset(csv, wd, workers=1, show_progress=False)
    assert not wd.exists() and not (tmp_path / "x").exists() and not (tmp_path.parent / "x.npz").exists()
    _has(info.value.problems, csv, "safe file names", "'../../x'", "rename")


def test_ids_differing_only_in_case(ds: Path, tmp_path: Path) -> None:
    csv = _csv(tmp_path / "d.csv", [("Case1", _img(ds, 0), _lab(ds, 0)), ("case1", _img(ds, 1), _lab(ds, 1))])
    _has(_refused(csv, tmp_path), csv, "differ in more than letter case", "['Case1', 'case1']", "rename one")


def test_unsafe_id_from_nnunet_file_names(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "nn", n_cases=2, shape=(8, 10, 12), layout="nnunetv2", seed=5)
    for f in [root / "imagesTr" / "case_001_0000.nii.gz", root / "labelsTr" / "case_001.nii.gz"]:
        f.rename(f.with_name(f.name.replace("case_001", "case 001")))
    bad = root / "imagesTr" / "case 001_0000.nii.gz"
    _has(_refused(root, tmp_path), bad, "safe file names", "'case 001'", "rename the image")


# 2. label values beyond int16


def test_label_value_beyond_int16(ds: Path, tmp_path: Path) -> None:
    f = _lab(ds, 1)
    src = sitk.ReadImage(str(f))
    arr = sitk.GetArrayFromImage(src).astype(np.uint16)
    arr[0, 0, 0] = 40000
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(src)
    sitk.WriteImage(out, str(f), useCompression=True)
    csv = _csv(tmp_path / "d.csv", [(f"c{i}", _img(ds, i), _lab(ds, i)) for i in range(3)])
    p = _has(_refused(csv, tmp_path), f, f"<= {LABEL_MAX}", "40000", "relabel")
    assert "int16" in p.rule and str(LABEL_MAX) in p.value


def test_declared_label_beyond_int16(ds: Path, tmp_path: Path) -> None:
    meta = json.loads((ds / "dataset.json").read_text())
    meta["labels"]["40000"] = "huge"
    (ds / "dataset.json").write_text(json.dumps(meta))
    _has(_refused(ds, tmp_path), ds / "dataset.json", f"<= {LABEL_MAX}", "40000", "renumber the labels")


# 3. spacing <= 0 or not finite


def _patch_nifti_pixdim(path: Path, axis: int, value: float) -> None:
    """Set NIfTI-1 ``pixdim[axis]`` (float32 at byte 76 + 4 * axis) as stored; SimpleITK refuses to write it."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    assert struct.unpack("<i", raw[:4])[0] == 348
    raw[76 + 4 * axis : 80 + 4 * axis] = struct.pack("<f", value)
    path.write_bytes(gzip.compress(bytes(raw)))


@pytest.mark.parametrize("value", [-1.0, 0.0, math.nan, math.inf])
def test_bad_nifti_spacing(ds: Path, tmp_path: Path, value: float, monkeypatch: pytest.MonkeyPatch) -> None:
    f = _img(ds, 2)
    _patch_nifti_pixdim(f, 1, value)
    read = _voxels_read(monkeypatch)
    problems = _refused(ds, tmp_path)
    _has(problems, f, "spacing must be finite and > 0", str(value), "write the true voxel size")
    assert f not in read, "the spacing is checked from the header, before any voxel is read"


def test_bad_mha_spacing(ds: Path, tmp_path: Path) -> None:
    f = ds / "imagesTr" / "case_000.mha"
    sitk.WriteImage(sitk.ReadImage(str(_img(ds, 0))), str(f))  # uncompressed: the header is text
    raw = f.read_bytes()
    head, sep, rest = raw.partition(b"ElementSpacing = ")
    f.write_bytes(head + sep + b"-2 " + rest.split(b" ", 1)[1])
    meta = json.loads((ds / "dataset.json").read_text())
    meta["training"][0]["image"] = "./imagesTr/case_000.mha"
    (ds / "dataset.json").write_text(json.dumps(meta))
    _has(_refused(ds, tmp_path), f, "image spacing must be finite and > 0", "-2.0", "SetSpacing")


# 4. image size from the header


def _huge_nifti(path: Path, size_xyz: tuple[int, int, int]) -> None:
    """A uint8 NIfTI of zeros written by hand: a few hundred kB of gzip holding ``prod(size_xyz)`` voxels."""
    one = path.with_name("one.nii")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((1, 1, 1), np.uint8)), str(one))
    header = bytearray(one.read_bytes()[:352])
    one.unlink()
    header[40:56] = struct.pack("<8h", 3, *size_xyz, 1, 1, 1, 1)
    z = zlib.compressobj(1, zlib.DEFLATED, 31)  # 31: gzip container
    parts, left, chunk = [z.compress(bytes(header))], math.prod(size_xyz), bytes(1 << 20)
    while left > 0:
        parts.append(z.compress(chunk[: min(left, len(chunk))]))
        left -= len(chunk)
    path.write_bytes(b"".join([*parts, z.flush()]))


def test_image_too_large_is_refused_from_its_header(
    ds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "big.nii.gz"
    _huge_nifti(big, (1000, 1000, 100))
    assert big.stat().st_size < 1_000_000
    csv = _csv(tmp_path / "d.csv", [("big", big), ("ok", _img(ds, 0))], header="SubjectID,Channel_0")
    read = _voxels_read(monkeypatch)
    p = _has(
        _refused(csv, tmp_path, max_voxels=10_000_000),
        big,
        "at most 10,000,000 voxels",
        "100,000,000 voxels",
        "crop or downsample",
    )
    assert f"{DEFAULT_MAX_VOXELS:,}" in p.rule and "24 GB" in p.rule, "the message states the default"
    assert big not in read, "the size is checked from the header, before any voxel is read"


def test_default_max_voxels_is_the_documented_one() -> None:
    assert inspect.signature(verify).parameters["max_voxels"].default == DEFAULT_MAX_VOXELS == 500_000_000
    assert "500 million" in (verify.__doc__ or "")


# 5. the same image under two IDs


def test_same_image_under_two_ids(ds: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy_of_case_000.nii.gz"
    shutil.copy(_img(ds, 0), copy)
    rows = [("A", _img(ds, 0), _lab(ds, 0)), ("B", copy, _lab(ds, 0)), ("C", _img(ds, 1), _lab(ds, 1))]
    p = _has(
        _refused(_csv(tmp_path / "d.csv", rows), tmp_path),
        copy,
        "same image under two case IDs",
        "case 'B' has the same voxels as case 'A'",
        "remove the duplicate case",
    )
    assert str(_img(ds, 0)) in p.value


def test_same_image_of_one_patient_is_allowed(ds: Path, tmp_path: Path) -> None:
    rows = [("A", "p1", _img(ds, 0), _lab(ds, 0)), ("B", "p1", _img(ds, 0), _lab(ds, 0))]
    csv = _csv(tmp_path / "d.csv", rows, header="SubjectID,PatientID,Channel_0,Label")
    assert verify(load_dataset(csv), show_progress=False).n_cases == 2


def test_same_blank_image_is_only_a_warning(
    ds: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blank = [tmp_path / "blank0.nii.gz", tmp_path / "blank1.nii.gz"]
    ref = sitk.ReadImage(str(_img(ds, 0)))
    for f in blank:
        img = sitk.GetImageFromArray(np.zeros(sitk.GetArrayFromImage(ref).shape, np.float32))
        img.CopyInformation(ref)
        sitk.WriteImage(img, str(f), useCompression=True)
    csv = _csv(tmp_path / "d.csv", [("A", blank[0], _lab(ds, 0)), ("B", blank[1], _lab(ds, 0))])
    with caplog.at_level("WARNING", logger="automed"):
        rep = verify(load_dataset(csv), show_progress=False)
    _has(list(rep.warnings), blank[1], "blank", "case 'B' has the same voxels as case 'A'", "right files")
    assert "blank" in caplog.text


def test_one_blank_image_is_warned_about_too(ds: Path, tmp_path: Path) -> None:
    """Only two cases sharing a blank image were named: a single all-zero image with its label map went through."""
    f = _img(ds, 1)
    ref = sitk.ReadImage(str(f))
    img = sitk.GetImageFromArray(np.zeros(sitk.GetArrayFromImage(ref).shape, np.float32))
    img.CopyInformation(ref)
    sitk.WriteImage(img, str(f), useCompression=True)
    rep = verify(load_dataset(ds), show_progress=False)
    (w,) = [w for w in rep.warnings if "blank" in w.value]
    _has([w], f, "an image to learn from", "case 'case_001' is blank", "right files")


def test_an_image_given_as_its_own_label_is_refused(ds: Path, tmp_path: Path) -> None:
    """A CSV whose Label column named the image (a column mix-up) planned a segmentation of 215 labels."""
    csv = _csv(tmp_path / "d.csv", [("A", _img(ds, 0), _img(ds, 0)), ("B", _img(ds, 1), _lab(ds, 1))])
    with pytest.raises(DatasetError) as err:
        verify(load_dataset(csv), show_progress=False)
    _has(
        err.value.problems, _img(ds, 0), "label map is its own file", "given as the label", "columns mixed up"
    )


# 6. symlink loops and unreadable paths


def test_symlink_loop_as_csv_channel(ds: Path, tmp_path: Path) -> None:
    loop = tmp_path / "loop.nii.gz"
    loop.symlink_to(loop.name)
    csv = _csv(tmp_path / "d.csv", [("A", "loop.nii.gz", _lab(ds, 0)), ("B", _img(ds, 1), _lab(ds, 1))])
    _has(_refused(csv, tmp_path), loop, "must be readable", "symlink loop", "point the path at the real file")


def test_symlink_loop_in_dataset_json(ds: Path, tmp_path: Path) -> None:
    f = _img(ds, 1)
    f.unlink()
    f.symlink_to(f.name)
    _has(_refused(ds, tmp_path), f, "every listed image must be readable", "symlink loop", "readlink")


def test_symlink_loop_as_the_dataset(tmp_path: Path) -> None:
    loop = tmp_path / "d.csv"
    loop.symlink_to(loop.name)
    _has(_refused(loop, tmp_path), "d.csv", "must be readable", "symlink loop", "point the path")


def test_permission_denied_is_a_problem(tmp_path: Path) -> None:
    p = os_problem(tmp_path / "a.nii.gz", PermissionError(errno.EACCES, "Permission denied"), "image")
    assert p.file.endswith("a.nii.gz") and "readable" in p.rule and "permission denied" in p.value
    assert "chmod" in p.fix
    if os.geteuid() != 0:  # root reads everything
        f = tmp_path / "locked.nii.gz"
        f.write_bytes(b"x")
        f.chmod(0)
        found = access_problem(f, "image")
        assert found is not None and "permission denied" in found.value


# 7. CSV encoding and delimiter


def test_csv_with_byte_order_mark(ds: Path, tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    text = "SubjectID,Channel_0,Label\n" + "".join(f"c{i},{_img(ds, i)},{_lab(ds, i)}\n" for i in range(3))
    csv.write_text(text, encoding="utf-8-sig")
    assert csv.read_bytes().startswith(b"\xef\xbb\xbf")
    loaded = load_dataset(csv)
    assert [c.case_id for c in loaded.cases] == ["c0", "c1", "c2"]
    assert verify(loaded, show_progress=False).n_cases == 3


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_csv_with_other_delimiter(ds: Path, tmp_path: Path, delimiter: str) -> None:
    csv = tmp_path / "d.csv"
    rows = [("SubjectID", "Channel_0", "Label"), ("c0", str(_img(ds, 0)), str(_lab(ds, 0)))]
    csv.write_text("".join(delimiter.join(r) + "\n" for r in rows))
    _has(_refused(csv, tmp_path), csv, "separated by commas", repr(delimiter), "commas between columns")


def test_csv_not_utf8(tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    csv.write_bytes("SubjectID,Channel_0\nJos\xe9,a.nii.gz\n".encode("latin-1"))
    _has(_refused(csv, tmp_path), csv, "must be UTF-8", "\\xe9", "CSV UTF-8")
