"""The parsed-dataset model every layout parser produces: :class:`Case` and :class:`Dataset`.

Plain frozen dataclasses, no parsing and no I/O; the parsers live in :mod:`automed.data.json_layouts`,
:mod:`automed.data.csv_layout` and :mod:`automed.data.class_folders`, the dispatch in :mod:`automed.data.dataset`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Layout = Literal["msd", "nnunetv2", "csv", "folders"]
TaskType = Literal["segmentation", "classification", "regression"]


@dataclass(frozen=True)
class Case:
    """One training case: its channel images (one path each, or one 4D file), optional label and target."""

    case_id: str
    images: tuple[Path, ...]
    label: Path | None = None
    value: float | None = None
    group: str | None = None

    @property
    def subject(self) -> str:
        """The grouping key for splits (a patient may own several cases)."""
        return self.group if self.group is not None else self.case_id


@dataclass(frozen=True)
class Dataset:
    """A parsed dataset description.

    Attributes:
        name: dataset name (from ``dataset.json`` or the CSV file name).
        source: the ``dataset.json`` or CSV this was read from (the dataset folder itself for the folder-per-class
            layout); error messages point here.
        layout: ``msd``, ``nnunetv2``, ``csv`` or ``folders`` (one sub-folder of images per class).
        channels: one modality name per channel ("CT", "MRI", "T2", ...); empty when undeclared.
        labels: segmentation: the declared label values and names (background included), or ``None`` when
            undeclared. Classification: class index (``Case.value``) to class name (``{0: "normal", 1: "pneumonia"}``
            for class names, ``{0: "0", 1: "1"}`` for integer classes). ``None`` for regression.
        cases: the training cases, sorted by id.
        images_are_4d: MSD ``tensorImageSize: 4D``: each case has one 4D file holding all channels.
    """

    name: str
    source: Path
    layout: Layout
    channels: tuple[str, ...]
    labels: dict[int, str] | None
    cases: tuple[Case, ...]
    images_are_4d: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def task_type(self) -> TaskType:
        """Segmentation when any case has a label map; else classification when the targets are named classes
        (``labels`` given: class names or class folders, however many) or at most 20 distinct integers; else
        regression when there are targets at all. ``--task`` overrides the choice (``extra["task"]``)."""
        forced = self.extra.get("task")
        if forced in ("segmentation", "classification", "regression"):  # --task (see dataset.with_task)
            return forced  # type: ignore[no-any-return]
        if any(c.label is not None for c in self.cases):
            return "segmentation"
        values = [c.value for c in self.cases if c.value is not None]
        if values and self.labels is not None:
            return "classification"
        if values and all(float(v).is_integer() for v in values) and len(set(values)) <= 20:
            return "classification"
        if values:
            return "regression"
        return "segmentation"

    @property
    def n_channels(self) -> int:
        return len(self.channels)
