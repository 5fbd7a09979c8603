"""Named channel columns of a CSV given to ``automed predict`` against those the model was trained on.

A CSV's images are stacked in column order. A training CSV with ``Channel_T1,Channel_T2`` declared which image is
which (``fingerprint.json`` keeps the names); a prediction CSV with ``Channel_T2,Channel_T1``, or with a channel the
model never saw (``Channel_FLAIR``), would feed the network the wrong images in each input position, silently.
Positional columns (``Channel_0``, ``Channel_1``) on either side declare nothing and are taken in order. The names
travel with the model (:func:`automed.registry_model.channel_names`): a work dir's fingerprint, a registered model's
or a pair's bundle (``channels.json``)."""

from __future__ import annotations

import logging
from pathlib import Path

from automed.errors import DatasetError, Problem

log = logging.getLogger("automed")


def channel_order_problem(csv: Path, given: list[str], trained: list[str]) -> Problem | None:
    """A problem when a model of several channels and every column are named and the names differ (order or
    names). One channel has no order to get wrong: a column named otherwise (``Channel_T1`` for a model whose
    dataset said ``MRI``) is taken."""
    if len(trained) < 2 or not all(given) or not all(trained) or len(given) != len(trained):
        return None
    if [g.casefold() for g in given] == [t.casefold() for t in trained]:
        return None
    wanted = ",".join(f"Channel_{t}" for t in trained)
    same_set = sorted(g.casefold() for g in given) == sorted(t.casefold() for t in trained)
    return Problem(
        str(csv),
        "a CSV's named channel columns must be those the model was trained on, in its order "
        f"({', '.join(trained)}): its images are stacked in column order",
        f"columns {', '.join(f'Channel_{g}' for g in given)}"
        + (" (the same channels in another order)" if same_set else ""),
        f"order the columns as {wanted}"
        if same_set
        else f"name the columns {wanted} for the images of those channels (or Channel_0, Channel_1, ... to give "
        "them by position)",
    )


def check_csv_channels(input_path: str | Path, model: Path) -> None:
    """Refuse a prediction CSV whose named channel columns are not the training's, in order (see the module);
    ``model``: a training work dir, an ``automed select`` folder or a (downloaded registered) bundle. A model that
    records no names (a bundle written before bundles carried them) is not checked, and a warning says so when the
    CSV names several channels."""
    csv = Path(input_path)
    if not (csv.is_file() and csv.suffix.lower() == ".csv"):
        return
    from automed.data.dataset import load_csv
    from automed.registry_model import channel_names

    trained, given = channel_names(model), list(load_csv(csv).channels)
    if trained is None:
        if len(given) > 1 and all(given):
            log.warning(
                "%s: the model records no channel names (a bundle written before automed recorded them), so the "
                "order of the columns %s is not checked: they are stacked as they stand; register the training "
                "again (`automed select WORKDIR -o OUT`) or predict with its work dir to have them checked",
                csv,
                ", ".join(f"Channel_{g}" for g in given),
            )
        return
    problem = channel_order_problem(csv, given, trained)
    if problem is not None:
        raise DatasetError([problem], f"cannot predict {csv}")
