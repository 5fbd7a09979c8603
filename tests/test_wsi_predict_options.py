"""``automed predict`` on whole slides refuses, before the model loads, what does not apply to slides or cannot be a
pixel size (`--output-format dicom-seg` had written the slide's TIFFs and no segmentation without a word; `--mpp -1`
was "a slide must be at least as fine as the model's resolution ... model -1", with the fix "use a finer scan")."""

from __future__ import annotations

from pathlib import Path

import pytest

from automed.errors import ConfigError
from automed.workflow.predict_slide_inputs import check_slide_options

SLIDE = Path("/data/s.svs")


def _check(**given: object) -> None:
    options: dict[str, object] = {"review": False, "output_format": "nifti", "mpp": None, "slide_mpp": None}
    check_slide_options(SLIDE, [SLIDE], **{**options, **given})  # type: ignore[arg-type]


def test_dicom_seg_of_a_slide_is_refused_naming_what_a_slide_gets() -> None:
    with pytest.raises(ConfigError, match=r"dicom-seg writes segmentations of DICOM series") as exc:
        _check(output_format="dicom-seg")
    assert "1 whole slide(s)" in str(exc.value) and "S_labels.tif" in str(exc.value)


@pytest.mark.parametrize("option", ["mpp", "slide_mpp"])
@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_a_pixel_size_that_cannot_be_is_refused(option: str, value: float) -> None:
    flag = "--" + option.replace("_", "-")
    with pytest.raises(ConfigError, match=r"a pixel size is a positive number of micrometres") as exc:
        _check(**{option: value})
    assert str(exc.value).count(flag) >= 2  # the option, and the fix


def test_the_settings_of_a_slide_run_pass_and_images_are_not_judged_here() -> None:
    _check(mpp=0.5, slide_mpp=0.25)
    with pytest.raises(ConfigError, match="not whole slides"):
        _check(review=True)
    check_slide_options(SLIDE, None, review=True, output_format="dicom-seg", mpp=-1.0, slide_mpp=None)
