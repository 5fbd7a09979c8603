"""The standalone bundle an export writes: ``predict.py`` + ``runtime/`` (copied verbatim from
:mod:`automed.runtime`), ``preprocess.json``, the networks, requirements files and a README for the receiving site."""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import automed.runtime as runtime_pkg
from automed.artifacts import write_json_atomic
from automed.export.card import tta_words
from automed.infer.ensemble import EnsemblePredictor
from automed.infer.predictor import Predictor
from automed.runtime.options import common_folds
from automed.workdir import ALL_DATA

PREDICT_PY = '''#!/usr/bin/env python3
"""Predict images with this automed bundle (needs numpy, SimpleITK and onnxruntime or openvino only):

    python predict.py -i INPUT_DIR -o OUTPUT_DIR [--runtime onnx|openvino] [--no-tta] [--threads N]
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from runtime.cli import main  # noqa: E402

raise SystemExit(main(bundle=HERE))
'''


# the README's line on an unfinished run (runtime/cli.py's --continue)
CONTINUE_TEXT = (
    "`--continue` (the same `-o`) takes up an unfinished run: it predicts only the cases whose label maps are not "
    "there yet, and stops if those there came from another bundle or other `--no-tta`, `--folds` or `--step-size` "
    "settings, or from inputs changed since."
)


# the README's line on where predict.py writes (runtime/output.py)
OUTPUT_TEXT = (
    "OUTPUT_DIR lies outside this folder (the folder that is shared, and that the next `automed export` replaces "
    "whole) and is new, empty or one a bundle's `predict.py` wrote; any other is refused before anything is read."
)


def dicom_input_text(*, pictures: bool = False) -> str:
    """The README's sentences on the DICOM layouts and links input discovery reads (``runtime/inputs.py``,
    ``runtime/folders.py``); ``pictures``: a model on 2D pictures, which takes every DICOM file as a case."""
    series = (
        "every DICOM file is a case, a series' slices too"
        if pictures
        else "a folder holding one DICOM series is one case (given itself, or as a sub-folder: a PACS export's "
        "`PATIENT/STUDY/SERIES` is case `PATIENT_STUDY_SERIES`), and single DICOM files (X-rays) are a case each"
    )
    return (
        f"DICOM (one channel): {series}, in the input folder or its sub-folders at any depth (a file in a sub-folder "
        "is case `FOLDER_FILE`); files ending `.dcm`, `.IMA` or `.dicom`, or with no ending (`IM0001`); a CD's "
        "`DICOMDIR` given as the input reads the folder holding it. Endings are matched ignoring letter case. Linked "
        "folders are read, except a link to the input folder or a folder above it (a loop) or to a folder read "
        "already; those, and files that are not read (reports, DICOM segmentations, other files), are named in a "
        "warning. Hidden files are ignored."
    )


def folds_text(folds: list[int] | None, step: float | None = None, *, pair: bool = False) -> str:
    """The README's line on ``predict.py --folds`` and ``--step-size`` (``runtime/options.py``): ``folds`` the fold
    numbers of the networks (a pair: those every member holds; ``None``: not recorded, or none shared), ``step`` the
    bundle's window step (``None``: an image-level bundle, no window)."""
    names = ", ".join("all" if f == ALL_DATA else str(f) for f in folds or [])
    chosen = (
        f"`--folds 0,1` (or `--folds 0 1`) predicts with only those folds of each member ({names})"
        if pair and folds is not None
        else "`--folds` needs fold numbers that every member records and shares; this export has none"
        if pair
        else f"`--folds 0,1` (or `--folds 0 1`) predicts with only those of its folds ({names})"
        if folds is not None
        else "`--folds` needs fold numbers this export did not record (export the model again)"
    )
    own = "each member's own" if pair else str(step)
    window = (
        "there is no `--step-size` (no sliding window)"
        if step is None and not pair
        else f"`--step-size S` (0 < S <= 1) moves the sliding window S x the patch instead of {own}"
    )
    return f"{chosen}; {window}."


def _pin(dist: str) -> str:
    try:
        return f"{dist}=={metadata.version(dist)}"
    except metadata.PackageNotFoundError:
        return dist


def readable(folder: Path) -> None:
    """Files 0644 and folders 0755: the receiving site's container runs as another user than the one who wrote them
    (atomic writes create owner-only temporary files)."""
    for p in [folder, *folder.rglob("*")]:
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)


def copy_runtime(out: Path) -> None:
    """``out/runtime/`` (automed.runtime, copied verbatim) and ``out/predict.py``."""
    src = Path(runtime_pkg.__file__).parent
    dest = out / "runtime"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    for f in sorted(src.glob("*.py")):
        shutil.copy(f, dest / f.name)
    (out / "predict.py").write_text(PREDICT_PY)


@contextmanager
def shipped_model(folder: Path, model_class: str, threads: int | None = None) -> Iterator[tuple[str, Any]]:
    """The written bundle's own model as its ``predict.py`` builds it: ``model_class`` (``module.Class`` of the
    runtime package, the one the exporter wrote the bundle for) from its copy of the runtime package
    (``folder/runtime/``, loaded under a private name for the duration, not automed's installed
    ``automed.runtime``), its ``preprocess.json``, the runtime ``predict.py`` would choose here. Yields (runtime,
    model)."""
    meta = json.loads((folder / "preprocess.json").read_text())
    name = f"_automed_bundle_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(
        name, folder / "runtime" / "__init__.py", submodule_search_locations=[str(folder / "runtime")]
    )
    assert spec is not None and spec.loader is not None
    sys.modules[name] = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(sys.modules[name])
        runtime = importlib.import_module(f"{name}.backends").choose_runtime(None, meta["files"])
        assert runtime is not None, "the exporting environment has neither onnxruntime nor openvino"
        module, cls = model_class.rsplit(".", 1)
        model = getattr(importlib.import_module(f"{name}.{module}"), cls)(
            folder, meta, runtime, threads=threads
        )
        yield runtime, model
    finally:
        for key in [k for k in sys.modules if k == name or k.startswith(f"{name}.")]:
            del sys.modules[key]


def python_needed() -> str:
    """The Python the pinned requirements install on: this one's minor version or newer (the pins are this
    machine's versions, and e.g. numpy 2.3+ needs 3.11)."""
    return f"Python {sys.version_info.major}.{sys.version_info.minor}+"


def write_requirements(out: Path, files: dict[str, list[str]]) -> None:
    """``requirements-onnx.txt`` / ``requirements-openvino.txt`` pinned to the versions the export was checked with."""
    base = [_pin("numpy"), _pin("SimpleITK")]
    if "onnx" in files:
        (out / "requirements-onnx.txt").write_text("\n".join([*base, _pin("onnxruntime")]) + "\n")
    if "openvino" in files:
        (out / "requirements-openvino.txt").write_text("\n".join([*base, _pin("openvino")]) + "\n")


def _member_meta(
    predictor: Predictor, files: dict[str, list[str]], ov_precision: str, folds: list[int] | None
) -> dict[str, Any]:
    return {
        "configuration": predictor.configuration,
        # the training's fold numbers of the networks, in file order (predict.py --folds); absent when unknown
        **({} if folds is None else {"folds": list(folds)}),
        "spec": predictor.spec.to_json(),
        "inference": {
            "patch": list(predictor.patch),
            "n_classes": predictor.cfg.network.n_classes,
            "step": predictor.step,
            "tta": predictor.tta,
            "mirrors": predictor.mirrors,
            "openvino_precision": ov_precision,
            "postprocessing": predictor.postprocessing,
        },
        "files": files,
    }


def all_files(member_files: list[dict[str, list[str]]]) -> dict[str, list[str]]:
    """Every training's network files per runtime, in member order."""
    return {k: [f for m in member_files for f in m[k]] for k in member_files[0]}


def write_bundle(
    predictor: Predictor | EnsemblePredictor,
    out: Path,
    member_files: list[dict[str, list[str]]],
    ov_precision: str,
    folds: list[list[int]] | None = None,
) -> None:
    """Make ``out`` (which already holds the exported networks, one file list per training) runnable without torch
    or automed; ``folds``: each training's fold numbers of those networks, when known."""
    each: list[list[int] | None] = list(folds) if folds else [None] * len(member_files)
    copy_runtime(out)
    plan = predictor.plan
    meta: dict[str, Any]
    if isinstance(predictor, EnsemblePredictor):
        members = [
            _member_meta(p, f, ov_precision, k)
            for p, f, k in zip(predictor.members, member_files, each, strict=True)
        ]
        for m in members:
            m["inference"]["postprocessing"] = []  # the pair's own postprocessing applies after averaging
        files = all_files(member_files)
        meta = {
            "schema_version": 1,
            "dataset": plan.dataset_name,
            "labels": plan.labels,
            "configuration": " + ".join(m["configuration"] for m in members),
            "members": members,
            "inference": {
                "combine": "mean of the members' probabilities in the input geometry",
                "openvino_precision": ov_precision,
                "postprocessing": predictor.postprocessing,
            },
            "files": files,
        }
        settings = (
            f"{len(members)} trainings ({meta['configuration']}), each with its own preprocessing, patch and one "
            "network per cross-validation fold; their probabilities are averaged in the input geometry, then the "
            "pair's postprocessing applies"
        )
    else:
        meta = {
            "schema_version": 1,
            "dataset": plan.dataset_name,
            "labels": plan.labels,
            **_member_meta(predictor, member_files[0], ov_precision, each[0]),
        }
        files = member_files[0]
        settings = (
            f"patch {list(predictor.patch)}, window step {predictor.step}, mirror TTA "
            f"{tta_words(predictor)}, one network per cross-validation fold, probabilities averaged"
        )
    write_json_atomic(out / "preprocess.json", meta)
    write_requirements(out, files)
    if isinstance(predictor, EnsemblePredictor):
        options = folds_text(common_folds(meta), None, pair=True)
    else:
        options = folds_text(each[0], predictor.step)
    labels = ", ".join(f"{k} = {v}" for k, v in sorted(plan.labels.items(), key=lambda kv: int(kv[0])))
    (out / "README.md").write_text(
        f"""# automed model: {plan.dataset_name} ({meta["configuration"]})

Runs without torch or automed. Set-up ({python_needed()}): `pip install -r requirements-onnx.txt` (or
`requirements-openvino.txt`). Then

    python predict.py -i INPUT_DIR -o OUTPUT_DIR [--runtime onnx|openvino] [--no-tta] [--threads N]

{OUTPUT_TEXT} {CONTINUE_TEXT} {options}

Input: a folder of images (NIfTI, NRRD, MHA; one file per case, or `CASE_0000`, `CASE_0001`, ... per channel when the
model has {plan.n_channels} channels), one image, or DICOM. {dicom_input_text()} Output: one label map per case,
`CASE.nii.gz` (or the input's ending), with the input's size, spacing, origin and direction. Labels: {labels}.
`--save-probabilities` also writes `CASE.npz`: `probabilities` (K, z, y, x) in the input's array order, before
postprocessing, and `labels`, the label value of each of the K channels.

`preprocess.json` holds the pre/post-processing (transpose, crop, normalization, resampling) and the inference
settings ({settings}). OpenVINO runs in {ov_precision}. `export.json` has the parity check against the trained torch
model and the latency table.
"""
    )
