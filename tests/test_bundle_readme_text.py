"""The torch-free bundle's README describes the input its model takes and how to take up an unfinished run."""

from __future__ import annotations

import re

import pytest

from automed.export.image_level import bundle_input_text


def test_bundle_readme_input_sentence_fits_the_channel_count() -> None:
    one = bundle_input_text(1)
    assert "1 channels" not in one and "CASE_0000" not in one and "one file per case" in one
    assert "`CASE_0000`, `CASE_0001`" in bundle_input_text(3) and "all 3" in bundle_input_text(3)


def test_bundle_readme_continue_line_names_options_predict_py_has(capsys: pytest.CaptureFixture[str]) -> None:
    """The README described predict.py's options but not --continue (taking up an unfinished run); its line names
    only options the bundle's predict.py accepts."""
    from automed.export.bundle import CONTINUE_TEXT
    from automed.runtime.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    accepted = set(re.findall(r"--[a-z-]+", capsys.readouterr().out))
    named = set(re.findall(r"--[a-z-]+", CONTINUE_TEXT))
    assert "--continue" in named and named <= accepted, named - accepted
