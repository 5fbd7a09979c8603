"""``automed package MODEL --mlcube OUT``: a cube folder a hospital or MedPerf can run without automed.

Layout (built in ``OUT.tmp`` and renamed when complete; an existing ``OUT`` is only replaced then):

- ``project/``: ``Dockerfile`` (CPU, OpenVINO) and ``Dockerfile.cuda`` (onnxruntime-gpu) rendered from ``docker/``
  templates, their pinned requirements, ``entry.py`` (MLCube and MedPerf conventions), ``predict.py``, ``runtime/``;
- ``mlcube/mlcube.yaml`` and ``mlcube/workspace/{parameters.yaml, additional_files/}``;
- ``container_config.yaml`` (MedPerf) and ``additional_files.tar.gz`` (the weights MedPerf hosts and mounts);
- ``README.md`` and the export's ``MODEL_CARD.md`` for the receiving site.

Weights and ``preprocess.json`` are mounted (``additional_files``), not baked into the image. Both YAML files are
validated against :mod:`automed.package.schemas` before the cube is published.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import string
import sys
import tarfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from automed.artifacts import atomic_directory, mark_output
from automed.errors import ConfigError
from automed.export.bundle import dicom_input_text, readable
from automed.package.schemas import validate_cube
from automed.runtime.options import common_folds
from automed.workdir import ALL_DATA

BASE_IMAGE = "python:3.11.14-slim-bookworm"
TEMPLATES = (
    "Dockerfile.cpu.template",
    "Dockerfile.cuda.template",
    "mlcube.yaml.template",
    "container_config.yaml.template",
)


def templates_dir() -> Path:
    """``docker/`` of the source tree (editable install), else the copy installed under ``share/automed``."""
    src = Path(__file__).resolve().parents[2] / "docker"
    if src.is_dir():
        return src
    return Path(sys.prefix) / "share" / "automed" / "docker"


@dataclass
class PackageResult:
    folder: Path
    image: str
    # the work dir's own export the cube ships (None: --export's, or one made for it)
    export: Path | None = None


def _render(name: str, values: dict[str, str]) -> str:
    path = templates_dir() / name
    if not path.is_file():
        raise ConfigError.single(
            path,
            "the packaging templates must be installed",
            "missing",
            "reinstall automed (docker/ templates)",
        )
    return string.Template(path.read_text()).substitute(values)


def _anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """A tar member without this machine's user and group (they would travel with the cube), nor the time it was
    written (the same model packs into the same bytes)."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def _installed(dist: str) -> bool:
    try:
        metadata.version(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


def _pin(dist: str) -> str:
    return f"{dist}=={metadata.version(dist)}"


IMAGE_REF = re.compile(
    r"(?:[a-z0-9.-]+(?::\d+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
)  # Docker's reference grammar (host[:port]/path[:tag]), lower case


def _image_name(dataset: str) -> str:
    """``automed/<dataset>:0.1.0`` in the letters an image reference allows (ASCII: ``Größe`` is not one)."""
    clean = re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", dataset.lower())).strip("-") or "model"
    return f"automed/{clean}:0.1.0"


def _cuda_image(image: str) -> str:
    """The CUDA variant's name: ``-cuda`` before the tag (a registry's port is not a tag)."""
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        return image[: len(image) - len(last)] + last.replace(":", "-cuda:", 1)
    return image + "-cuda"


def write_cube(bundle: Path, out: Path, meta: dict[str, Any], image: str | None = None) -> PackageResult:
    """Turn an export bundle into a cube folder at ``out`` (see the module docstring)."""
    image = image or _image_name(str(meta["dataset"]))
    if not IMAGE_REF.fullmatch(image):
        raise ConfigError.single("--image", "a container image is a Docker reference: [host[:port]/]name[:tag]",
                                 image, "use lower-case letters, digits, '.', '_', '-' and '/', e.g. "
                                 "registry.example.org/automed/liver:1.0")  # fmt: skip
    with atomic_directory(out) as tmp:  # an earlier cube stays until this one is complete
        project = tmp / "project"
        project.mkdir(parents=True)
        shutil.copytree(bundle / "runtime", project / "runtime", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(bundle / "predict.py", project / "predict.py")
        shutil.copy(bundle / "runtime" / "entry.py", project / "entry.py")
        values = {"BASE_IMAGE": BASE_IMAGE, "THREADS": "2"}
        (project / "Dockerfile").write_text(_render("Dockerfile.cpu.template", values))
        (project / "Dockerfile.cuda").write_text(_render("Dockerfile.cuda.template", values))
        (project / "requirements.txt").write_text(
            "\n".join([_pin("numpy"), _pin("SimpleITK"), _pin("openvino")]) + "\n"
        )
        ort = next((d for d in ("onnxruntime", "onnxruntime-gpu") if _installed(d)), None)
        if ort is None:
            raise ConfigError.single("onnxruntime", "packaging pins the CUDA image's onnxruntime to the one "
                                     "installed here", "not installed", "pip install onnxruntime")  # fmt: skip
        ort_gpu = f"onnxruntime-gpu[cuda,cudnn]=={metadata.version(ort)}"
        (project / "requirements-cuda.txt").write_text(
            "\n".join([_pin("numpy"), _pin("SimpleITK"), ort_gpu]) + "\n"
        )
        weights = tmp / "mlcube" / "workspace" / "additional_files"
        weights.mkdir(parents=True)
        shutil.copytree(bundle / "networks", weights / "networks")
        for f in ("preprocess.json", "export.json"):
            shutil.copy(bundle / f, weights / f)
        (tmp / "mlcube" / "workspace" / "parameters.yaml").write_text(parameters_text(meta))
        desc = (
            f"automed {meta['configuration']} {meta.get('task', 'segmentation')} model for {meta['dataset']}"
        )
        name = image.split("/")[-1].split(":")[0]
        text = {
            k: json.dumps(v) for k, v in (("NAME", name), ("DESCRIPTION", desc), ("IMAGE", image))
        }  # quoted
        (tmp / "mlcube" / "mlcube.yaml").write_text(_render("mlcube.yaml.template", text))
        (tmp / "container_config.yaml").write_text(_render("container_config.yaml.template", text))
        # gzip's header stamps the time too: 0, and no file name
        with (
            (tmp / "additional_files.tar.gz").open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w") as tar,
        ):
            for p in sorted(weights.iterdir()):
                tar.add(p, arcname=p.name, filter=_anonymous)
        (tmp / "README.md").write_text(_readme(image, meta))
        if (bundle / "MODEL_CARD.md").is_file():  # what the receiving site reads before running it
            shutil.copy(bundle / "MODEL_CARD.md", tmp / "MODEL_CARD.md")
        validate_cube(tmp)
        mark_output(tmp, "cube")
        readable(tmp)
    return PackageResult(out, image)


def parameters_text(meta: dict[str, Any]) -> str:
    """The cube's ``parameters.yaml``: runtime, TTA and threads, and, commented out with what they take, ``folds``
    (a pair's: the fold numbers every member holds) and ``step_size`` (the bundle's ``predict.py
    --folds``/``--step-size``, per the export's ``preprocess.json``)."""
    lines = [
        "# automed model parameters (flat key: value)",
        "# runtime: openvino  # or onnx; default: the one the image has (CPU: openvino, CUDA: onnx)",
        _tta_line(meta),
        "threads: 2",
    ]
    held = common_folds(meta)  # a pair: the fold numbers every member holds, taken from each
    if held is not None:
        names = ",".join("all" if int(f) == ALL_DATA else str(f) for f in held)
        which = "these folds of each member" if "members" in meta else "these of the model's folds"
        lines.append(f"# folds: {names}  # only {which} predict (default: all of them)")
    if meta.get("task") not in ("classification", "regression"):  # a segmentation model's sliding window
        own = "each member's own" if "members" in meta else meta.get("inference", {}).get("step", 0.5)
        lines.append(
            f"# step_size: 0.5  # the window moves this fraction of the patch, 0 < S <= 1 (default: {own})"
        )
    return "\n".join(lines) + "\n"


def _tta_line(meta: dict[str, Any]) -> str:
    """``tta:`` as the model predicts (it had said ``true`` for a model whose selection turned mirror TTA off, which
    ``true`` cannot turn on: the bundle only ever drops it)."""
    models = meta.get("members", [meta])
    if any(m.get("inference", {}).get("tta", True) for m in models):
        return "tta: true  # mirror test-time augmentation as the model was selected with; false: one pass, faster"
    return (
        "tta: false  # the model predicts without mirror TTA (its selection's choice); true does not add it"
    )


def _what(meta: dict[str, Any]) -> tuple[str, str, str]:
    """The model line, its inputs/outputs and its evaluation, by task."""
    task = meta.get("task", "segmentation")
    if task in ("classification", "regression"):
        target = meta.get("target", {})
        model = (
            f"Classification model ({meta['configuration']}); classes: {', '.join(target.get('class_names') or [])}."
            if task == "classification"
            else f"Regression model ({meta['configuration']})."
        )
        pictures = len(meta.get("inference", {}).get("patch") or []) == 2
        io_text = (
            "Input: image files (PNG, TIFF, NIfTI, NRRD, MHA; `CASE_0000.*`, `CASE_0001.*` per channel) or DICOM.\n"
            + dicom_input_text(pictures=pictures)
            + "\nOutput: `predictions.csv` (`SubjectID`, `prediction`"
            + (", `probability_<class>` per class)." if task == "classification" else ").")
        )
        evaluation = (
            "`evaluate` compares `predictions.csv` with a reference CSV (`SubjectID` and `target` or `ValueToPredict`):\n"
            + ("accuracy and per-class sensitivity." if task == "classification" else "MAE and RMSE.")
        )
        return model, io_text, evaluation
    labels = ", ".join(f"{k} = {v}" for k, v in sorted(meta["labels"].items(), key=lambda kv: int(kv[0])))
    return (
        f"Segmentation model ({meta['configuration']}). Labels: {labels}.",
        "Input: NIfTI/NRRD/MHA files (`CASE_0000.nii.gz`, `CASE_0001.nii.gz`, ... per channel for multi-channel\n"
        f"models) or DICOM.\n{dicom_input_text()}\nOutput: `CASE.nii.gz` label maps with the input's geometry.",
        "`evaluate` computes Dice against reference labels (same file names).",
    )


def _readme(image: str, meta: dict[str, Any]) -> str:
    model, io_text, evaluation = _what(meta)
    return f"""# {meta["dataset"]}: automed model container

{model} Trained and exported by automed; `MODEL_CARD.md` beside this file gives its data, plan,
cross-validation and intended use.
The container holds inference code only (numpy, SimpleITK, OpenVINO or onnxruntime); the weights and the
pre/post-processing (`additional_files/`) are mounted. It needs no network access, runs as user 1000 and only
reads its inputs.

## Build

    docker build -t {image} project/                               # CPU (OpenVINO)
    docker build -t {_cuda_image(image)} -f project/Dockerfile.cuda project/    # NVIDIA GPU (onnxruntime-gpu)

Pin the base image by digest at your site: `docker pull {BASE_IMAGE}`, then add
`--build-arg BASE_IMAGE=python@sha256:<digest>`.

## Run

MedPerf: register `container_config.yaml` with `additional_files.tar.gz` as the additional files; MedPerf mounts
`/mlcommons/volumes/{{data,parameters,additional_files,predictions}}` and runs the image without arguments.

Plain Docker (what MLCube runs):

    docker run --rm --network none --read-only --tmpfs /tmp \\
      -v $PWD/images:/in:ro -v $PWD/mlcube/workspace:/ws:ro -v $PWD/out:/out \\
      {image} infer --data_path=/in --parameters_file=/ws/parameters.yaml \\
      --additional_files=/ws/additional_files --output_path=/out

{io_text}
{evaluation} `... evaluate --predictions=/out --labels=/labels --parameters_file=/ws/parameters.yaml --output_path=/out/results.yaml`.

`mlcube/workspace/parameters.yaml` (MedPerf: the parameters file) sets `runtime`, `tta`, `threads` and, as the
bundle's `predict.py --folds` and `--step-size` take them, `folds` (e.g. `0,1`: only those of the model's folds;
for a pair, those folds of each member) and `step_size` (0 < S <= 1: the sliding window's step as a fraction of the patch; segmentation only).

Without Docker: `pip install -r project/requirements.txt`, then
`python project/entry.py infer --data_path=IN --parameters_file=mlcube/workspace/parameters.yaml --additional_files=mlcube/workspace/additional_files --output_path=OUT`.
"""
