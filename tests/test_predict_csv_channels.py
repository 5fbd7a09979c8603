"""A prediction CSV's named channel columns must be the training's, in its order: the images are stacked in column
order, so ``Channel_T2,Channel_T1`` for a model trained on ``Channel_T1,Channel_T2`` would swap its inputs."""

from __future__ import annotations

from pathlib import Path

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
