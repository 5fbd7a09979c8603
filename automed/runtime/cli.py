"""The bundle's entry point: ``python predict.py -i INPUT -o OUTPUT [--runtime onnx|openvino]``.

Needs numpy, SimpleITK and onnxruntime or openvino only. Reads ``preprocess.json`` (the plan's pre/post-processing
and the inference settings automed chose) next to ``predict.py``, runs every fold network (of every member, for a pair;
``--folds``: only those of a training's folds, the same fold numbers of each member for a pair, :mod:`.options`) on
every case with the Gaussian sliding window and mirror TTA, and writes label maps in each input's geometry
(``CASE.nii.gz``); a classification or regression bundle writes ``predictions.csv`` (one row per case) instead.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from .backends import RUNTIME_MODULES, choose_runtime
from .folders import file_suffix, folder_fix, symbolic_links
from .grid import channel_grid_mismatch
from .image_model import ImageBundleModel
from .inputs import find_cases
from .io import UNUSABLE, read_case, spacing_zyx, unusable_voxels, write_labels
from .model import BundleModel
from .options import OptionError, checked_step, parse_folds, with_folds
from .output import RECORD as RECORD
from .output import (
    TABLE,
    changed_inputs,
    earlier_predictions,
    input_stamps,
    older_bundle_table,
    refuse_export_place,
    refuse_foreign_folder,
    same_settings,
    write_probabilities,
)
from .truth import folder_truth


def _runtime(runtime: str | None, meta: dict[str, Any], device: str = "cpu") -> str:
    if device == "cuda":  # OpenVINO runs on the CPU here: CUDA is onnxruntime-gpu's
        if runtime == "openvino":
            raise SystemExit(
                "--device cuda runs the ONNX networks (onnxruntime-gpu); drop --runtime openvino"
            )
        if "onnx" not in meta["files"]:
            raise SystemExit(
                f"--device cuda runs ONNX networks; this bundle has {sorted(meta['files'])} only"
            )
        runtime = "onnx"
    chosen = choose_runtime(runtime, meta["files"])
    if chosen is None:
        if runtime and runtime not in meta["files"]:
            raise SystemExit(
                f"--runtime {runtime}: this bundle has {sorted(meta['files'])}; choose one of them"
            )
        if runtime:
            package = "onnxruntime-gpu" if device == "cuda" else RUNTIME_MODULES[runtime]
            raise SystemExit(f"--runtime {runtime} is not installed here: pip install {package}")
        raise SystemExit("install onnxruntime or openvino (see requirements-*.txt in the bundle)")
    return chosen


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"a whole number of at least 1, not {text!r}")
    return n


def main(argv: list[str] | None = None, bundle: Path | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Predict images with this automed bundle (no torch, no automed)."
    )
    ap.add_argument(
        "-i", "--input", required=True, type=Path, help="folder of images, one image, or a DICOM folder"
    )
    ap.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        help="folder for the label maps (or predictions.csv of a classification or regression model)",
    )
    ap.add_argument(
        "--runtime", choices=["onnx", "openvino"], help="default: openvino if installed, else onnx"
    )
    ap.add_argument("--no-tta", action="store_true", help="skip mirror test-time augmentation (faster)")
    ap.add_argument(
        "--overwrite", action="store_true", help="replace predictions already in the output folder"
    )
    ap.add_argument(
        "--continue",
        dest="resume",
        action="store_true",
        help="continue an unfinished run into the output folder: predict only the cases whose label maps are not "
        "there yet (the same bundle, --no-tta, --folds and --step-size only)",
    )
    ap.add_argument(
        "--folds",
        nargs="+",
        action="extend",
        metavar="FOLD",
        help="predict with only these of the bundle's folds (nnU-Net's -f): --folds 0,1 or --folds 0 1 (all: the "
        "all-data model; a pair: those folds of each member); default: every fold it holds",
    )
    ap.add_argument(
        "--step-size",
        type=float,
        default=None,
        help="segmentation: the sliding window moves this fraction of the patch, 0 < S <= 1 (nnU-Net's "
        "-step_size); default: the bundle's own (preprocess.json)",
    )
    ap.add_argument("--threads", type=_positive, default=None, help="CPU threads for the runtime")
    ap.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="cuda: onnxruntime-gpu's CUDA provider"
    )
    ap.add_argument(
        "--save-probabilities",
        action="store_true",
        help="segmentation: also write CASE.npz, 'probabilities' (K, z, y, x) in the input's array order before "
        "postprocessing and 'labels' the label value of each channel (as automed predict --save-probabilities)",
    )
    ap.add_argument(
        "--nan-to",
        type=float,
        default=None,
        help="value for NaN/infinite input voxels, and for those beyond +-1e15 ('no data' markers) (default: refuse "
        "such inputs with an error)",
    )
    args = ap.parse_args(argv)
    if args.resume and args.overwrite:
        raise SystemExit(
            "--continue keeps the label maps an earlier run wrote, --overwrite replaces them; drop one"
        )
    inp, outp = args.input.resolve(), args.output.resolve()
    if outp == inp or outp in inp.parents:
        raise SystemExit(
            f"{args.output}: the output folder must not be, or hold, the input {args.input} (predictions would "
            "mix with or replace the images); choose another -o"
        )
    if not inp.exists():  # before any network is loaded
        raise SystemExit(
            f"{args.input}: the input does not exist; pass a folder of images, an image or a DICOM folder"
        )
    if outp.is_file():
        raise SystemExit(f"{args.output}: the output must be a folder, not a file; choose another -o")
    suffix = file_suffix(outp)
    if suffix is not None and not outp.is_dir():  # -o preds.csv would become a folder named preds.csv
        raise SystemExit(
            f"{args.output}: the output is a folder (predictions are written inside it), found a {suffix} file "
            f"name; {folder_fix(args.output, suffix)}"
        )
    if inp.is_dir() and inp in outp.parents:
        raise SystemExit(
            f"{args.output}: the output folder must lie outside the input folder {args.input} (a later run over "
            "the input would find the predictions among the images); choose an -o beside it"
        )
    links = symbolic_links(outp)
    if links:  # a prediction or the record written through one would replace a file elsewhere
        raise SystemExit(
            f"{args.output}: the output folder must not hold symbolic links (predictions would be written through "
            f"them into other folders); found {', '.join(str(p.relative_to(outp)) for p in links[:3])}; remove "
            "them or choose another -o"
        )
    root = bundle or Path(sys.argv[0]).resolve().parent
    # never in the bundle (the folder that is shared, replaced whole by the next export), nor among the user's files
    refuse_export_place(args.output, outp, root)
    refuse_foreign_folder(args.output, outp)
    meta = json.loads((root / "preprocess.json").read_text())
    try:  # before any network loads or output is written
        folds = parse_folds(args.folds)
        meta = with_folds(meta, folds, root / "preprocess.json")
        step = checked_step(args.step_size, meta, root / "preprocess.json")
    except OptionError as exc:
        raise SystemExit(str(exc)) from None
    runtime = _runtime(args.runtime, meta, args.device)
    image_level = meta.get("task") in ("classification", "regression")
    if image_level and args.save_probabilities:
        raise SystemExit(
            "--save-probabilities writes a segmentation's probability maps; this bundle's predictions.csv holds "
            "its class probabilities already: drop --save-probabilities"
        )
    model: Any = (
        ImageBundleModel(root, meta, runtime, threads=args.threads, device=args.device)
        if image_level
        else BundleModel(
            root,
            meta,
            runtime,
            threads=args.threads,
            device=args.device,
            overrides={} if step is None else {"step": step},
        )
    )
    if args.no_tta:
        model.tta = False
    cases = find_cases(args.input.resolve(), model.n_channels, len(model.shape) if image_level else None)
    truth, warning = (  # a folder-per-class input (IN/<class>/<images>): each image's class beside its prediction
        folder_truth(args.input.resolve(), [(c.case_id, c.paths[0]) for c in cases], model.target["kind"],
                     list(model.target.get("class_names", [])))
        if image_level
        else (None, None)
    )  # fmt: skip
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    for case in cases:  # every case before any prediction is written
        if (off_grid := channel_grid_mismatch(case.paths)) is not None:
            raise SystemExit(off_grid)
    planned = ["predictions.csv"] if image_level else [f"{c.case_id}{c.suffix}" for c in cases]
    if args.save_probabilities:
        planned += [f"{c.case_id}.npz" for c in cases]
    taken = [n for n in planned if (outp / n).exists()]
    settings = {
        "bundle": _bundle_digest(root),
        "tta": model.tta,
        # only when given: a record of an earlier bundle (or run) without them stays continuable
        **({} if folds is None else {"folds": folds}),
        **({} if step is None else {"step": step}),
        **({"save_probabilities": True} if args.save_probabilities else {}),
        "inputs": input_stamps([(c.case_id, list(c.paths)) for c in cases]),
    }
    if args.resume:
        if image_level:
            raise SystemExit(
                "--continue takes up label maps case by case; this bundle writes one predictions.csv"
            )
        record = outp / RECORD
        try:  # (a damaged record is no record: refused below when there are predictions to continue)
            before = json.loads(record.read_text()) if record.is_file() else None
        except (OSError, ValueError):
            before = None
        if taken and not (isinstance(before, dict) and same_settings(before, settings)):
            raise SystemExit(
                f"{args.output}: --continue adds to label maps of this bundle with the same --no-tta, --folds and "
                f"--step-size settings ({json.dumps({k: v for k, v in settings.items() if k != 'inputs'})}), and "
                f"{RECORD} there says otherwise (or is missing); predict into a new folder, or pass --overwrite "
                "instead of --continue"
            )
        finished = [c.case_id for c in cases if f"{c.case_id}{c.suffix}" in taken]
        changed = changed_inputs(before, settings["inputs"], finished) if isinstance(before, dict) else []
        if changed:  # another image under a finished case's name had been taken for it
            raise SystemExit(
                f"{args.output}: --continue keeps a finished case only when its input is the one it was predicted "
                f"from; the input of {', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''} changed since "
                "(another file, size or modification time); predict into a new folder, or pass --overwrite instead"
            )
        cases = [c for c in cases if f"{c.case_id}{c.suffix}" not in taken]  # (its .npz is written before it)
        taken = []
    held = f"{', '.join(taken[:5])}{' ...' if len(taken) > 5 else ''}"
    if taken and not args.overwrite:  # an earlier run's predictions are replaced only when asked
        raise SystemExit(f"{args.output}: already holds {held}; choose an empty folder or pass --overwrite")
    older = taken == [TABLE] and older_bundle_table(outp)  # a bundle's table from before the record
    if taken and not (outp / RECORD).is_file() and not older:  # the user's files, never this bundle's: kept
        raise SystemExit(
            f"{args.output}: --overwrite replaces predictions a bundle wrote there ({RECORD} marks them), and this "
            f"folder holds {held} without it: files of yours, not replaced; choose an empty folder"
        )
    # --overwrite replaces the bundle's earlier run whole, as automed predict does: its predictions of cases this
    # run does not predict go when it has finished (they had stayed, recorded as made with the new settings, and
    # --continue or the cube's evaluate took them)
    stale = earlier_predictions(outp, set(planned)) if args.overwrite and (outp / RECORD).is_file() else []
    created = not args.output.exists()
    args.output.mkdir(parents=True, exist_ok=True)
    # the bundle's predictions are here (what --overwrite may replace) and the settings --continue checks; while
    # earlier ones are replaced one by one, a record no run matches: a failed run leaves a mix --continue refuses
    replacing = {**settings, "replacing": True} if taken or stale else settings
    (outp / RECORD).write_text(json.dumps(replacing) + "\n")
    try:
        _predict(args, model, cases, truth, image_level)
    except BaseException:
        if created and [p.name for p in outp.iterdir()] == [
            RECORD
        ]:  # refused before writing anything: no trace
            (outp / RECORD).unlink()
            args.output.rmdir()
        raise
    for old in stale:
        old.unlink(missing_ok=True)
    if stale:
        print(f"warning: --overwrite removed {len(stale)} earlier prediction(s) this run did not write: "
              f"{', '.join(p.name for p in stale[:5])}{' ...' if len(stale) > 5 else ''}", file=sys.stderr, flush=True)  # fmt: skip
    (outp / RECORD).write_text(json.dumps(settings) + "\n")  # every case predicted with these settings
    return 0


def _predict(args: argparse.Namespace, model: Any, cases: list[Any], truth: dict[str, str] | None,
             image_level: bool) -> None:  # fmt: skip
    """Every case in turn (each refused input stops the run with its reason), then a table model's CSV."""
    rows: list[dict[str, Any]] = []
    for i, case in enumerate(cases, 1):
        t0 = time.perf_counter()
        channels, ref = read_case(case)
        bad = unusable_voxels(channels)
        if bad.any():
            if args.nan_to is None:
                raise SystemExit(
                    f"{case.paths[0]}: image voxels must be finite intensities, found {int(bad.sum())} {UNUSABLE}; "
                    "fix the image or pass --nan-to VALUE"
                )
            channels[bad] = args.nan_to
        if channels.shape[0] != model.n_channels:
            raise SystemExit(
                f"{case.paths[0]}: the model needs {model.n_channels} channel(s), found {channels.shape[0]}"
            )
        volume = channels.shape[1] > 1  # (C, z, y, x): more than one slice
        # an image-level model takes what it was trained on; a 3D segmentation network no picture (a 2D one
        # predicts volumes slice by slice)
        wants = (len(model.shape) == 3) if image_level else (model.dimension == 3 or volume)
        if volume != wants:
            raise SystemExit(
                f"{case.paths[0]}: the model was trained on "
                f"{'volumes (3D)' if wants else 'pictures or single slices (2D)'}, this is a "
                f"{'volume' if volume else 'picture or single slice'}; predict with a model trained on images "
                "like this one"
            )
        if image_level:
            row, note = model.predict_noted(channels, spacing_zyx(ref))
            if note:  # the network saw only part of this image (centre-cropped), as automed predict warns
                print(f"warning: {case.case_id}: {note}", file=sys.stderr, flush=True)
            rows.append(
                {
                    "SubjectID": case.case_id,
                    **({} if truth is None else {"truth": truth[case.case_id]}),
                    **row,
                }
            )
        else:
            labels, probabilities = model.predict(channels, spacing_zyx(ref), args.save_probabilities)
            if note := model.size_note(channels.shape[1:], spacing_zyx(ref)):  # as automed predict warns
                print(f"warning: {case.case_id}: {note}", file=sys.stderr, flush=True)
            if probabilities is not None:  # before the label map: --continue takes a case up by its label map
                write_probabilities(probabilities, model.label_values, args.output / f"{case.case_id}.npz")
            write_labels(labels, ref, args.output / f"{case.case_id}{case.suffix}")
        print(f"[{i}/{len(cases)}] {case.case_id}: {time.perf_counter() - t0:.1f} s", flush=True)
    if image_level:
        write_table(rows, args.output / "predictions.csv")


def write_table(rows: list[dict[str, Any]], path: Path) -> None:
    """``predictions.csv`` (``SubjectID``, ``truth`` for a folder-per-class input, ``prediction``,
    ``probability_<class>``), replaced atomically."""
    tmp = path.with_name(f".{path.name}.partial")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["SubjectID", "prediction"])
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def _bundle_digest(root: Path) -> str:
    """What makes this bundle's label maps: its ``preprocess.json`` and its networks' bytes (a retrained model
    exported with the same settings has the same ``preprocess.json``)."""
    h = hashlib.sha256((root / "preprocess.json").read_bytes())
    for f in sorted(p for p in (root / "networks").rglob("*") if p.is_file()):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]
