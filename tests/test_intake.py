"""Dataset layouts and readers: MSD (3D and 4D), nnU-Net v2, CSV, construct-csv, DICOM, PNG, NRRD/MHA."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from automed import api
from automed.data.cases import read_case
from automed.data.dataset import construct_csv, load_dataset
from automed.data.io import read_image
from automed.errors import DatasetError
from automed.testing.synthetic import make_dataset
from tests.conftest import shared


def test_msd_layout(hippocampus: Path) -> None:
    ds = load_dataset(hippocampus)
    assert ds.layout == "msd" and len(ds.cases) == 60 and ds.channels == ("MRI",)
    assert ds.labels == {0: "background", 1: "Anterior", 2: "Posterior"}
    assert ds.task_type == "segmentation"


def test_mixed_voxel_types_are_read_as_float(hippocampus: Path) -> None:
    ds = load_dataset(hippocampus)
    kinds = {sitk.ReadImage(str(c.images[0])).GetPixelIDTypeAsString() for c in ds.cases[:10]}
    assert len(kinds) > 1  # uint8 and float32 in the real data
    for c in ds.cases[:10]:
        assert read_case(c).channels.dtype == np.float32


def test_msd_4d_multichannel(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "m4", n_cases=3, n_channels=2, layout="msd", shape=(8, 10, 12))
    ds = load_dataset(root)
    assert ds.images_are_4d and ds.n_channels == 2
    api.verify(ds, workers=1, show_progress=False)
    cd = read_case(ds.cases[0], ds.images_are_4d)
    assert cd.channels.shape[0] == 2 and cd.channels.shape[1:] == cd.label.shape  # type: ignore[union-attr]
    fp, _ = api.fingerprint(ds, tmp_path / "W", workers=1, show_progress=False)
    assert fp.n_channels == 2


def test_nnunet_layout_two_channels(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "nn", n_cases=3, n_channels=2, layout="nnunetv2", shape=(8, 10, 12))
    ds = load_dataset(root)
    assert ds.layout == "nnunetv2" and [c.case_id for c in ds.cases] == ["case_000", "case_001", "case_002"]
    assert [p.name for p in ds.cases[0].images] == ["case_000_0000.nii.gz", "case_000_0001.nii.gz"]
    assert ds.labels == {0: "background", 1: "large", 2: "small"}
    api.verify(ds, workers=1, show_progress=False)


def test_csv_relative_paths_and_targets(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", n_cases=4, shape=(8, 10, 12))
    rows = ["SubjectID,PatientID,Channel_0,ValueToPredict"]
    for i in range(4):
        rows.append(f"s{i},p{i // 2},d/imagesTr/case_{i:03d}.nii.gz,{i % 2}")
    (tmp_path / "cls.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(tmp_path / "cls.csv")
    assert ds.cases[0].images[0] == (root / "imagesTr" / "case_000.nii.gz").resolve()
    assert ds.task_type == "classification" and ds.cases[2].group == "p1"
    (tmp_path / "reg.csv").write_text(
        "\n".join(r.replace(",0\n", ",0.25\n") for r in rows[:1])
        + "\n"
        + "\n".join(f"s{i},p{i},d/imagesTr/case_{i:03d}.nii.gz,{i * 0.37}" for i in range(4))
        + "\n"
    )
    reg = load_dataset(tmp_path / "reg.csv")
    assert reg.task_type == "regression"
    fp, _ = api.fingerprint(reg, tmp_path / "W", workers=1, show_progress=False)
    assert fp.task_type == "regression" and fp.labels == []


def test_construct_csv(tmp_path: Path) -> None:
    from automed.errors import DatasetError

    for s in ("sub1", "sub2"):
        d = tmp_path / "tree" / s
        d.mkdir(parents=True)
        for end in ("_t1.nii.gz", "_t2.nii.gz", "_seg.nii.gz"):
            img = sitk.Image([4, 4, 4], sitk.sitkUInt8)
            if end == "_seg.nii.gz":
                img[1, 1, 1] = 1  # a dataset needs foreground somewhere
            sitk.WriteImage(img, str(d / f"{s}{end}"))
    out = construct_csv(tmp_path / "tree", ["_t1.nii.gz", "_t2.nii.gz"], "_seg.nii.gz", tmp_path / "data.csv")
    lines = out.read_text().splitlines()
    assert lines[0] == "SubjectID,Channel_0,Channel_1,Label"
    assert lines[1] == "sub1,tree/sub1/sub1_t1.nii.gz,tree/sub1/sub1_t2.nii.gz,tree/sub1/sub1_seg.nii.gz"
    ds = load_dataset(out)
    assert len(ds.cases) == 2 and ds.n_channels == 2
    api.verify(ds, workers=1, show_progress=False)
    # a CSV already there may be the user's own, edited by hand: replaced only when asked
    out.write_text("SubjectID,Channel_0,ValueToPredict\nsub1,x.nii.gz,3\n")
    with pytest.raises(DatasetError, match="never replaces an existing file") as err:
        construct_csv(tmp_path / "tree", ["_t1.nii.gz"], None, out)
    assert "--overwrite" in err.value.problems[0].fix and "ValueToPredict" in out.read_text()
    construct_csv(tmp_path / "tree", ["_t1.nii.gz"], None, out, overwrite=True)
    assert out.read_text().splitlines()[0] == "SubjectID,Channel_0"
    with pytest.raises(DatasetError, match=re.escape("writes a .csv file")):
        construct_csv(tmp_path / "tree", ["_t1.nii.gz"], None, tmp_path / "tree")
    # hidden folders and files are no subjects or images; a file both a channel and the label is refused
    (tmp_path / "tree" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "tree" / "sub1" / ".sub1_t1.nii.gz").write_bytes(b"x")
    construct_csv(tmp_path / "tree", ["_t1.nii.gz"], "_seg.nii.gz", out, overwrite=True)
    assert len(out.read_text().splitlines()) == 3
    with pytest.raises(
        DatasetError, match=r"each ending names one channel or the label; found \['_seg.nii.gz'\] given"
    ):
        construct_csv(
            tmp_path / "tree", ["_seg.nii.gz"], "_seg.nii.gz", out, overwrite=True
        )  # one clear error
    with pytest.raises(DatasetError, match="never two of them"):  # endings that both match one file
        construct_csv(tmp_path / "tree", ["t1.nii.gz"], "_t1.nii.gz", out, overwrite=True)
    with pytest.raises(DatasetError, match="at least one channel ending"):
        construct_csv(tmp_path / "tree", ["", " "], None, out, overwrite=True)


def test_construct_csv_reports_ambiguous_endings(tmp_path: Path) -> None:
    from automed.errors import DatasetError

    d = tmp_path / "tree" / "s1"
    d.mkdir(parents=True)
    for name in ("a_t1.nii.gz", "b_t1.nii.gz"):
        (d / name).write_bytes(b"")
    with pytest.raises(DatasetError, match=re.escape("exactly one file ending in '_t1.nii.gz'")):
        construct_csv(tmp_path / "tree", ["_t1.nii.gz"], None, tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


def test_dicom_series_is_sorted_by_position() -> None:
    series = shared("dicom", "hippo_crop_series", "Study1")
    arrs, geo = read_image(series)
    assert arrs[0].shape[0] == len(list(series.glob("*.dcm")))
    # slice positions increase along the volume: the origin is the first slice's position
    import pydicom

    zs = sorted(
        float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2])
        for f in series.glob("*.dcm")
    )
    assert geo.origin[2] == pytest.approx(min(zs), abs=1e-3) or geo.origin[2] == pytest.approx(
        max(zs), abs=1e-3
    )
    assert geo.spacing[2] == pytest.approx(abs(zs[1] - zs[0]), rel=1e-3)


def test_dicom_folder_as_a_csv_channel(tmp_path: Path) -> None:
    knee = shared("dicom", "knee_mr_phi")
    (tmp_path / "d.csv").write_text(f"SubjectID,Channel_0\nknee,{knee}\n")
    fp, _ = api.fingerprint(tmp_path / "d.csv", tmp_path / "W", workers=1, show_progress=False)
    assert fp.cases[0].shape[0] == 36 or 36 in fp.cases[0].shape


def test_png_2d_dataset(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = ["SubjectID,Channel_0,Label"]
    for i in range(4):
        img = (rng.random((32, 40)) * 200).astype(np.uint8)
        lab = np.zeros((32, 40), np.uint8)
        lab[8:20, 10:30] = 1
        sitk.WriteImage(sitk.GetImageFromArray(img), str(tmp_path / f"i{i}.png"))
        sitk.WriteImage(sitk.GetImageFromArray(lab), str(tmp_path / f"l{i}.png"))
        rows.append(f"c{i},i{i}.png,l{i}.png")
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    res = api.plan_dataset(tmp_path / "d.csv", tmp_path / "W", workers=1, show_progress=False)
    assert res.fingerprint.dimension == 2
    assert list(res.plan.configurations) == ["2d"]
    assert res.plan.configurations["2d"].network.dimension == 2
    with np.load(tmp_path / "W" / "preprocessed" / "2d" / "c0.npz") as z:
        assert z["data"].shape == (1, 1, 32, 40)


def test_rgb_png_gives_three_channels(tmp_path: Path) -> None:
    rgb = sitk.GetImageFromArray(np.zeros((16, 16, 3), np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(tmp_path / "x.png"))
    arrs, geo = read_image(tmp_path / "x.png")
    assert len(arrs) == 3 and arrs[0].shape == (1, 16, 16) and geo.dimension == 2


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_nrrd_and_mha(tmp_path: Path, suffix: str) -> None:
    img = sitk.GetImageFromArray(np.arange(60, dtype=np.float32).reshape(3, 4, 5))
    img.SetSpacing((0.5, 0.6, 2.0))
    sitk.WriteImage(img, str(tmp_path / f"x{suffix}"))
    arrs, geo = read_image(tmp_path / f"x{suffix}")
    assert arrs[0].shape == (3, 4, 5) and geo.spacing_zyx == pytest.approx((2.0, 0.6, 0.5))


def test_fingerprint_is_deterministic_across_workers(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", n_cases=5, shape=(10, 14, 12))
    a, _ = api.fingerprint(root, tmp_path / "A", workers=1, show_progress=False)
    b, _ = api.fingerprint(root, tmp_path / "B", workers=2, show_progress=False)
    assert a.hash == b.hash
    assert json.loads((tmp_path / "A" / "fingerprint.json").read_text())["hash"] == a.hash


def test_fingerprint_contents(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", n_cases=4, shape=(16, 20, 20), shape_jitter=0)
    fp, _ = api.fingerprint(root, tmp_path / "W", workers=1, sample_budget=4000, show_progress=False)
    assert fp.samples_per_case == 1000
    assert fp.channels[0].foreground.n_samples == 4000  # equal weight per case, bounded budget
    c = fp.cases[0]
    assert c.shape == [16, 20, 20] and c.relative_size_after_crop < 1.0  # the body region is cropped
    assert all(s <= t for s, t in zip(c.shape_after_crop, c.shape, strict=True))
    lab = {x.value: x for x in fp.labels}
    assert lab[1].cases_present == 4 and lab[1].components_per_case_median == 1
    assert lab[2].component_size_max_voxels < lab[1].component_size_max_voxels
    st = fp.channels[0].foreground
    assert st.percentile_00_5 <= st.median <= st.percentile_99_5 and st.min <= st.percentile_00_5
    assert fp.compute_hash() == fp.hash


def test_nnunet_ignore_label_is_refused_not_trained_as_a_structure(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "nn", n_cases=3, layout="nnunetv2", shape=(8, 10, 12))
    meta = json.loads((root / "dataset.json").read_text())
    meta["labels"]["ignore"] = 3  # nnU-Net v2: unannotated voxels, left out of the loss
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError) as err:
        load_dataset(root)
    (p,) = err.value.problems
    assert "'ignore' label" in p.rule and "would train and score it as a structure" in p.rule
    assert p.value == "ignore: 3" and "remove 'ignore' from 'labels'" in p.fix
