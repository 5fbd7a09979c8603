"""What ``automed predict`` writes: label maps (:class:`LabelMapWriter`), the table of an image-level model
(:class:`TableWriter`), DICOM Segmentations beside them (:class:`DicomSegWriter`) and the review pages
(:class:`ReviewWriter`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automed.errors import DatasetError


def label_values(predictor: Any) -> list[int]:
    """The label value of each class (probability channel) of a segmentation predictor: torch, pair or export."""
    values = getattr(predictor, "label_values", None)
    if values is None:  # an exported bundle's model
        values = getattr(getattr(predictor, "model", None), "label_values", [])
    return [int(v) for v in values]


class ReviewWriter:
    """``OUT/review/``: per case ``<case>.json`` (structures, components, boxes, mean probabilities) and
    ``<case>.png`` (contours), then ``index.html`` (automed.evaluate.review)."""

    def __init__(self, folder: Path, predictor: Any) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.entries = folder, list[dict[str, Any]]()
        self.target = getattr(predictor, "target", None)  # classification, regression: one row per image
        plan = getattr(predictor, "plan", None)
        values = label_values(predictor)
        known = {int(k): str(v) for k, v in plan.labels.items()} if plan is not None else {}
        self.names = {v: known.get(v, str(v)) for v in values if v != 0}
        self.index = {v: i for i, v in enumerate(values)}

    def add(self, case_id: str, channels: Any, geometry: Any, res: Any) -> None:
        from automed.artifacts import write_json_atomic
        from automed.evaluate.review import describe, image_figure, review_figure
        from automed.evaluate.viewing import shown_image

        if self.target is not None:  # the class (and probabilities) or the value, over the image
            row = res.row(self.target)
            write_json_atomic(self.folder / f"{case_id}.json", {"case": case_id, **row})
            picture = image_figure(
                shown_image(channels), case_id, row, geometry.direction, geometry.spacing_zyx
            )
            self._save(case_id, picture)
            summary = ", ".join(
                f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}" for k, v in row.items()
            )
            self.entries.append(
                {"case": case_id, "png": f"{case_id}.png", "json": f"{case_id}.json", "summary": summary}
            )
            return
        found = describe(res.labels, res.probabilities, geometry, self.names, self.index)
        write_json_atomic(self.folder / f"{case_id}.json", {"case": case_id, **found})
        self._save(case_id, review_figure(channels[0], res.labels, self.names, case_id, geometry.direction))
        unit = found["unit"]
        summary = "; ".join(
            f"{n}: {e[f'size_{unit}']:.0f} {unit} in {e['n_components']} component(s)"
            for n, e in found["labels"].items()
        )
        self.entries.append(
            {"case": case_id, "png": f"{case_id}.png", "json": f"{case_id}.json", "summary": summary}
        )

    def _save(self, case_id: str, fig: Any) -> None:
        tmp = self.folder / f".{case_id}.partial.png"
        fig.savefig(tmp, dpi=90, format="png")
        tmp.replace(self.folder / f"{case_id}.png")

    def close(self) -> None:
        from automed.evaluate.review import write_index

        write_index(self.folder, self.entries)

    def written_files(self) -> set[Path]:
        """Every file this run wrote under ``review/``."""
        names = {self.folder / "index.html"}
        return names | {self.folder / e[k] for e in self.entries for k in ("png", "json")}


class DicomSegWriter:
    """The label maps, plus per case ``<case>.seg.dcm``: a DICOM Segmentation over the input series (highdicom)."""

    def __init__(self, inner: Any, cases: list[Any], image_level: bool, labels: dict[int, str]) -> None:
        bad = [c.case_id for c in cases if len(c.images) != 1 or not c.images[0].is_dir()]
        if image_level or bad:
            raise DatasetError.single(
                bad[0] if bad else "the model",
                "--output-format dicom-seg writes segmentations of DICOM series inputs",
                "a classification/regression model"
                if image_level
                else f"{len(bad)} input(s) not a DICOM series folder",
                "pass DICOM series folders to a segmentation model, or use --output-format nifti",
            )
        from automed.data.io import dicom_series_files
        from automed.tools.dicom_seg import series_problems

        # each series' files, found once: checked now (before any prediction), referenced by its SEG later
        self.files = {c.case_id: dicom_series_files(c.images[0]) for c in cases}
        problems = [p for c in cases for p in series_problems(c.images[0], self.files[c.case_id])]
        if problems:
            raise DatasetError(problems, "cannot write DICOM SEG for these inputs")
        self.inner, self.labels = inner, labels
        self.segs: set[Path] = set()

    def add(self, case: Any, geometry: Any, res: Any) -> None:
        from automed.tools.dicom_seg import write_seg

        self.inner.add(case, geometry, res)
        tmp = self.inner.out / f".{case.case_id}.partial.seg.dcm"
        try:
            write_seg(res.labels, self.files[case.case_id], self.labels, tmp)
        except (ValueError, AttributeError, TypeError) as exc:  # highdicom's checks of the source images
            tmp.unlink(missing_ok=True)
            raise DatasetError.single(case.images[0], "a DICOM SEG must be writable over the series",
                                      f"{type(exc).__name__}: {exc}"[:300], "use --output-format nifti") from exc  # fmt: skip
        tmp.replace(self.inner.out / f"{case.case_id}.seg.dcm")
        self.segs.add(self.inner.out / f"{case.case_id}.seg.dcm")

    def close(self) -> list[Path]:
        return list(self.inner.close())

    def written_files(self) -> set[Path]:
        """Every file this run wrote (label maps or table, probabilities, segmentations)."""
        return set(self.inner.written_files()) | self.segs


class LabelMapWriter:
    """A label map per case in its own geometry and format (and ``<case>.npz`` probabilities when asked:
    ``probabilities`` ``(K, z, y, x)`` in the input's array order, ``labels`` the label value of each of the K
    channels, which with label IDs such as 0, 1, 4 is not the channel's index)."""

    def __init__(self, out: Path, label_values: list[int]) -> None:
        self.out, self.written, self.label_values = out, list[Path](), label_values
        self.extra: set[Path] = set()

    def add(self, case: Any, geometry: Any, res: Any) -> None:
        import numpy as np

        from automed.data.io import write_image_atomic
        from automed.runtime.output import write_probabilities

        path = self.out / f"{case.case_id}{case.suffix}"
        labels = res.labels.astype(np.uint8 if res.labels.max(initial=0) < 256 else np.int16)  # as the bundle
        self.extra.update(p for p in write_image_atomic(labels, geometry, path) if p != path)
        if res.probabilities is not None:  # (the bundle's writer: the same file from both)
            write_probabilities(res.probabilities, self.label_values, self.out / f"{case.case_id}.npz")
            self.extra.add(self.out / f"{case.case_id}.npz")
        self.written.append(path)

    def close(self) -> list[Path]:
        return self.written

    def written_files(self) -> set[Path]:
        """Every file this run wrote (label maps and probabilities)."""
        return set(self.written) | self.extra


class TableWriter:
    """An image-level model's predictions: ``predictions.csv`` with ``SubjectID``, ``prediction`` (the class name or
    the value) and, for classification, ``probability_<class>`` per class; written once, when every case is done.
    ``truth`` (case ID -> class) adds a ``truth`` column: a folder-per-class input's class folders
    (:mod:`automed.workflow.predict_truth`)."""

    def __init__(self, out: Path, target: Any, truth: dict[str, str] | None = None) -> None:
        self.out, self.target, self.rows = out, target, list[dict[str, Any]]()
        self.truth = truth

    def add(self, case: Any, geometry: Any, res: Any) -> None:
        known = {} if self.truth is None else {"truth": self.truth.get(case.case_id, "")}
        self.rows.append({"SubjectID": case.case_id, **known, **res.row(self.target)})

    def close(self) -> list[Path]:
        import pandas as pd

        from automed.artifacts import write_bytes_atomic

        path = self.out / "predictions.csv"  # on disk (fsync) before it replaces an earlier table
        write_bytes_atomic(path, pd.DataFrame(self.rows).to_csv(index=False).encode("utf-8"))
        return [path]

    def written_files(self) -> set[Path]:
        return {self.out / "predictions.csv"}
