"""The torch-free bundle's README describes the input its model takes."""

from __future__ import annotations

from automed.export.image_level import bundle_input_text


def test_bundle_readme_input_sentence_fits_the_channel_count() -> None:
    one = bundle_input_text(1)
    assert "1 channels" not in one and "CASE_0000" not in one and "one file per case" in one
    assert "`CASE_0000`, `CASE_0001`" in bundle_input_text(3) and "all 3" in bundle_input_text(3)
