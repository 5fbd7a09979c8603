"""``automed predict --review``: structures, components and boxes per input (JSON), contour pictures (PNG) and one
self-contained index page."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from automed.data.io import Geometry
from automed.evaluate.review import describe, review_figure, write_index


def test_components_boxes_volumes_and_mean_probabilities() -> None:
    labels = np.zeros((6, 10, 12), np.int16)
    labels[1:3, 2:4, 2:5] = 1  # 12 voxels
    labels[4:6, 7:9, 8:10] = 1  # 8 voxels, a second component
    labels[2:4, 6:8, 1:2] = 2
    probs = np.zeros((3, *labels.shape), np.float32)
    probs[1][labels == 1] = 0.8
    probs[2][labels == 2] = 0.6
    direction = (-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)  # x flipped
    geo = Geometry((12, 10, 6), (0.5, 1.0, 2.0), (10.0, 20.0, 30.0), direction)
    found = describe(labels, probs, geo, {1: "liver", 2: "lesion"}, {0: 0, 1: 1, 2: 2})
    liver = found["labels"]["liver"]
    assert found["unit"] == "mm3" and liver["n_components"] == 2
    assert liver["size_mm3"] == pytest.approx(20 * 0.5 * 1.0 * 2.0)
    big, small = liver["components"]
    assert big["voxels"] == 12 and big["bbox_voxel_zyx"] == [[1, 2, 2], [2, 3, 4]]
    # voxels z 1..2, y 2..3, x 2..4 with their extents (half a voxel beyond the centres): x = 10 - x * 0.5 (flipped:
    # the index corner x=2 is the physical maximum), y = 20 + y * 1.0, z = 30 + z * 2.0
    assert big["bbox_physical_xyz_mm"] == [
        pytest.approx([7.75, 21.5, 31.0]),
        pytest.approx([9.25, 23.5, 35.0]),
    ]
    assert big["mean_probability"] == pytest.approx(0.8) and small["voxels"] == 8
    assert found["labels"]["lesion"]["components"][0]["mean_probability"] == pytest.approx(0.6)
    flat = describe(labels[:1] * 0 + (labels[2:3] == 2), None, geo, {1: "x"}, {})
    assert flat["unit"] == "mm2" and flat["labels"]["x"]["size_mm2"] == pytest.approx(2 * 0.5 * 1.0)


def test_picture_and_index_page(tmp_path: Path) -> None:
    labels = np.zeros((8, 16, 16), np.int16)
    labels[2:6, 4:10, 5:11] = 1
    fig = review_figure(np.random.default_rng(0).random((8, 16, 16)), labels, {1: "organ", 2: "absent"}, "c1")
    assert len(fig.axes) == 3  # three orthogonal slices through the one label found
    fig.savefig(tmp_path / "c1.png")
    page = write_index(
        tmp_path, [{"case": "c1", "png": "c1.png", "json": "c1.json", "summary": "organ: 1 <x>"}]
    )
    text = page.read_text()
    assert 'src="c1.png"' in text and "organ: 1 &lt;x&gt;" in text
    odd = write_index(
        tmp_path, [{"case": "c#1", "png": "c#1 50%.png", "json": "c#1 50%.json", "summary": ""}]
    )
    assert 'src="c%231%2050%25.png"' in odd.read_text()  # '#' and '%' had cut or changed the link
    assert "<script" not in text and not re.search(r"(src|href)=\"https?:", text)


@pytest.mark.skipif(
    __import__("shutil").which("chromium") is None, reason="Debian's chromium is not installed here"
)
def test_review_index_opens_in_headless_chromium(tmp_path: Path) -> None:
    from tests.test_report import headless_chromium, page_requests

    labels = np.zeros((8, 16, 16), np.int16)
    labels[2:6, 4:10, 5:11] = 1
    review_figure(np.ones((8, 16, 16)), labels, {1: "organ"}, "c1").savefig(tmp_path / "c1.png")
    page = write_index(tmp_path, [{"case": "c1", "png": "c1.png", "json": "c1.json", "summary": "organ"}])
    log = headless_chromium(page.as_uri(), tmp_path / "shot.png")
    assert "INFO:CONSOLE" not in log and not page_requests(log)


def test_a_review_shows_a_rotated_volume_as_a_viewer_does() -> None:
    """Each label's three slices are shown as a viewer shows them (axial: anterior up, the patient's right on the
    left; coronal and sagittal: head up), whatever the image's direction: an image stored rotated in-plane and head
    to foot was drawn in voxel order, rotated and upside down. The titles name the image's own voxel index."""
    import SimpleITK as sitk

    rng = np.random.default_rng(1)
    image = rng.random((6, 8, 10))
    labels = np.zeros((6, 8, 10), dtype=np.uint8)
    labels[1:3, 2:5, 6:9] = 1  # centre z=1.5 (rounded 2), y=3, x=7 in the image's own grid
    direction = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # x index runs posterior, y right, z down

    def lps(a: np.ndarray) -> np.ndarray:
        img = sitk.GetImageFromArray(a)
        img.SetDirection(direction)
        return sitk.GetArrayFromImage(sitk.DICOMOrient(img, "LPS"))

    fig = review_figure(image, labels, {1: "organ"}, "c1", direction)
    shown = [np.asarray(ax.images[0].get_array()) for ax in fig.axes]
    viewed, viewed_labels = lps(image), lps(labels)
    centre = [round(float(c)) for c in np.argwhere(viewed_labels == 1).mean(axis=0)]
    for axis in range(3):
        assert np.array_equal(shown[axis], np.take(viewed, centre[axis], axis=axis)), axis
    titles = [ax.get_title() for ax in fig.axes]
    assert (
        titles[0] == f"organ z={5 - centre[0]}"
    )  # the viewed axial slice is the image's z, counted from its end
    assert {t.split()[1][0] for t in titles} == {"z", "y", "x"}
    plain = review_figure(image, labels, {1: "organ"}, "c1")  # no direction: voxel order, as before
    assert np.array_equal(np.asarray(plain.axes[0].images[0].get_array()), image[2])
