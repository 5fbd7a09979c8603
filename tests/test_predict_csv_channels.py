"""A prediction CSV's named channel columns must be the training's, in its order: the images are stacked in column
order, so ``Channel_T2,Channel_T1`` for a model trained on ``Channel_T1,Channel_T2`` would swap its inputs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from automed.workflow.predict_channels import channel_order_problem


def test_named_columns_in_another_order_or_unknown_are_named_with_the_fix() -> None:
    csv = Path("in.csv")
    swapped = channel_order_problem(csv, ["T2", "T1"], ["T1", "T2"])
    assert swapped is not None and "trained on, in its order (T1, T2)" in swapped.rule
    assert swapped.value == "columns Channel_T2, Channel_T1 (the same channels in another order)"
    assert swapped.fix == "order the columns as Channel_T1,Channel_T2"
    other = channel_order_problem(csv, ["FLAIR", "T1"], ["T1", "T2"])
    assert other is not None and other.value == "columns Channel_FLAIR, Channel_T1"
    assert "name the columns Channel_T1,Channel_T2" in other.fix and "Channel_0, Channel_1" in other.fix


def test_the_training_order_and_positional_columns_pass() -> None:
    csv = Path("in.csv")
    assert channel_order_problem(csv, ["T1", "T2"], ["T1", "T2"]) is None
    assert channel_order_problem(csv, ["t1", "t2"], ["T1", "T2"]) is None  # names are case-insensitive
    assert channel_order_problem(csv, ["", ""], ["T1", "T2"]) is None  # Channel_0, Channel_1: by position
    assert channel_order_problem(csv, ["T2", "T1"], ["", ""]) is None  # a training that named none
    assert channel_order_problem(csv, ["T1"], ["MRI"]) is None  # one channel: no order to get wrong


def _csv(folder: Path, first: str, second: str) -> Path:
    for name in ("a0.nii.gz", "a1.nii.gz"):
        (folder / name).write_bytes(b"")
    csv = folder / f"{first}_{second}.csv"
    csv.write_text(
        f"SubjectID,Channel_{first},Channel_{second}\na,{folder / 'a0.nii.gz'},{folder / 'a1.nii.gz'}\n"
    )
    return csv


def _bundle(folder: Path, names: list[str]) -> Path:
    import json

    folder.mkdir(parents=True)
    (folder / "channels.json").write_text(json.dumps({"schema_version": 1, "channels": names}))
    return folder


def test_registered_and_pair_bundles_carry_the_channel_names(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A registered model's bundle and a pair's (an ``automed select`` folder's ``model_bundle``) have no
    fingerprint: the check was skipped for them, so a CSV with swapped columns fed the network swapped images.
    Their ``channels.json`` now gives the names (a pair's: its first member's)."""
    import json

    from automed.errors import DatasetError
    from automed.registry_model import channel_names
    from automed.workflow.predict_channels import check_csv_channels

    single = _bundle(tmp_path / "registered", ["T1", "T2"])
    sel = tmp_path / "sel"
    _bundle(sel / "model_bundle" / "member_0", ["T1", "T2"])
    _bundle(sel / "model_bundle" / "member_1", ["T1", "T2"])
    members = [{"folder": "member_0"}, {"folder": "member_1"}]
    (sel / "model_bundle" / "ensemble.json").write_text(json.dumps({"members": members}))
    assert channel_names(single) == ["T1", "T2"]
    assert channel_names(sel / "model_bundle") == channel_names(sel) == ["T1", "T2"]
    swapped = _csv(tmp_path, "T2", "T1")
    for model in (single, sel / "model_bundle", sel):
        with pytest.raises(DatasetError, match=r"in its order \(T1, T2\)") as err:
            check_csv_channels(swapped, model)
        assert "order the columns as Channel_T1,Channel_T2" in str(err.value)
    check_csv_channels(_csv(tmp_path, "T1", "T2"), single)  # the training's order passes
    # a bundle registered before bundles carried the names: nothing to check against, taken as before, and said
    assert channel_names(tmp_path / "old") is None
    with caplog.at_level(logging.WARNING, logger="automed"):
        check_csv_channels(swapped, tmp_path / "old")
    assert (
        "records no channel names" in caplog.text and "Channel_T2, Channel_T1 is not checked" in caplog.text
    )


def test_a_bundle_records_its_training_channel_names(tmp_path: Path) -> None:
    """``write_channel_names`` (called for every bundle written for registration, a pair's members included)
    copies the fingerprint's declared names in network order; a work dir without a fingerprint writes none."""
    from automed import api
    from automed.registry_model import CHANNELS_FILE, channel_names, write_channel_names
    from automed.testing.synthetic import make_dataset

    work, bundle = tmp_path / "W", tmp_path / "B"
    bundle.mkdir()
    write_channel_names(work, bundle)
    assert not (bundle / CHANNELS_FILE).exists()
    ds = make_dataset(tmp_path / "d", n_cases=2, n_channels=2, layout="msd", shape=(4, 8, 8), seed=1)
    api.fingerprint(ds, work, workers=1, show_progress=False)
    write_channel_names(work, bundle)
    assert channel_names(bundle) == channel_names(work) == ["MRI0", "MRI1"]
