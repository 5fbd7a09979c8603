"""``fingerprint.json``: schema (version 1), JSON round-trip and content hash.

Per-axis lists are in array order ``(z, y, x)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from automed.artifacts import check_schema_version, content_hash, read_json, write_json_atomic
from automed.config import Strict

SCHEMA_VERSION = 1


class CaseFingerprint(Strict):
    case_id: str
    spacing: list[float]
    shape: list[int]
    shape_after_crop: list[int]
    relative_size_after_crop: float
    label_voxels: dict[str, int]
    component_sizes: dict[str, list[int]]
    value: float | None = None


class IntensityStats(Strict):
    mean: float
    std: float
    median: float
    min: float
    max: float
    percentile_00_5: float
    percentile_99_5: float
    n_samples: int


class ChannelFingerprint(Strict):
    index: int
    declared: str
    modality: str
    modality_reason: str
    foreground: IntensityStats
    raw_min: float
    raw_max: float
    raw_fraction_below_minus_500: float
    integer_valued: bool


class LabelFingerprint(Strict):
    value: int
    name: str
    total_voxels: int
    cases_present: int
    fraction_of_cases: float
    components_per_case_median: float
    components_per_case_max: int
    component_size_median_voxels: float
    component_size_min_voxels: int
    component_size_max_voxels: int


class Fingerprint(Strict):
    schema_version: int = SCHEMA_VERSION
    automed_version: str
    dataset_name: str
    source: str
    layout: str
    task_type: Literal["segmentation", "classification", "regression"]
    task_type_reason: str
    dimension: Literal[2, 3]
    n_cases: int
    n_channels: int
    samples_per_case: int
    seed: int
    inputs_hash: str
    # how inputs_hash stamps the files (extract.INPUTS_VERSION); 1: written before the version was recorded
    inputs_version: int = 1
    median_spacing: list[float]
    median_shape_after_crop: list[int]
    median_relative_size_after_crop: float
    channels: list[ChannelFingerprint]
    labels: list[LabelFingerprint]
    cases: list[CaseFingerprint]
    # classification: class index (a case's ``value`` as a decimal integer, "0", "1", ...) to class name; None for
    # segmentation, regression and fingerprints written before class names were recorded
    class_names: dict[str, str] | None = None
    # SHA-256 over every case's voxels and geometry as read (extract_fingerprint); None: a fingerprint written
    # before it was recorded. One digest for the dataset, none per case: it tells an edit, not which image was used
    voxels_digest: str | None = None
    # patches of whole slides: the micrometres per pixel they were mined at (their mining.json), what a slide is
    # predicted at; recorded here because mining again into the same folder replaces that record. Not hashed: the
    # voxel digest tells new patches already
    slide_mpp: float | None = None
    hash: str = ""

    def compute_hash(self) -> str:
        """Content hash: everything but ``hash``, ``automed_version``, ``source`` and ``inputs_hash`` (paths and
        file times), so a copied, moved or touched dataset with the same content keeps it; the voxel digest counts,
        so an edit does not. ``class_names`` and ``voxels_digest`` count only when set, so earlier fingerprints
        keep the hash they had before those fields existed."""
        exclude = {"hash", "automed_version", "source", "inputs_hash", "inputs_version", "slide_mpp"}
        d = self.model_dump(mode="json", exclude=exclude)
        for key in ("class_names", "voxels_digest"):
            if d.get(key) is None:
                d.pop(key, None)
        return content_hash(d)

    def without_digest(self) -> Fingerprint:
        """This fingerprint as an automed that recorded no voxel digest would have written it."""
        return self.model_copy(update={"voxels_digest": None}).with_hash()

    def with_hash(self) -> Fingerprint:
        return self.model_copy(update={"hash": self.compute_hash()})

    def save(self, path: Path) -> None:
        write_json_atomic(path, self.model_dump(mode="json"))

    @classmethod
    def load(cls, path: Path) -> Fingerprint:
        data = read_json(path, what="fingerprint.json")
        check_schema_version(path, data, SCHEMA_VERSION, what="fingerprint.json")
        return cls.model_validate(data)

    @classmethod
    def slide_mpp_in(cls, folder: Path) -> float | None:
        """The ``slide_mpp`` of ``folder``'s ``fingerprint.json`` (a model's record of it); None without one."""
        path = folder / "fingerprint.json"
        return cls.load(path).slide_mpp if path.is_file() else None

    @property
    def spacings(self) -> list[list[float]]:
        return [c.spacing for c in self.cases]
