"""The Python API: one function per stage. The CLI is a thin layer over these.

dataset -> :func:`verify` -> :func:`fingerprint` (fingerprint.json) -> :func:`plan` (plan.json) ->
:func:`preprocess` (preprocessed/<configuration>/ + splits.json). :func:`plan_dataset` runs them in order.
Each stage writes one artifact atomically and is skipped when its inputs are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automed.data.dataset import Dataset, load_dataset
from automed.data.splits import write_splits
from automed.data.verify import VerifyReport
from automed.data.verify import verify as _verify
from automed.errors import ArtifactError, ConfigError
from automed.evaluate.summary import score
from automed.fingerprint.extract import DEFAULT_SAMPLE_BUDGET, extract_fingerprint, inputs_hash
from automed.fingerprint.schema import Fingerprint
from automed.parallel import default_workers
from automed.plan.planner import make_plan
from automed.plan.preset import Preset, load_preset
from automed.plan.schema import Plan
from automed.plan.variants import effective_plan
from automed.preprocess.pipeline import preprocess as _preprocess
from automed.train.config import TrainConfig

FINGERPRINT_FILE = "fingerprint.json"
PLAN_FILE = "plan.json"
SPLITS_FILE = "splits.json"


def _workers(workers: int | None) -> int:
    return default_workers() if workers is None else max(1, workers)


def _dataset(dataset: str | Path | Dataset) -> Dataset:
    return dataset if isinstance(dataset, Dataset) else load_dataset(dataset)


def verify(
    dataset: str | Path | Dataset, *, workers: int | None = None, show_progress: bool = True
) -> VerifyReport:
    """Check a dataset and raise :class:`automed.errors.DatasetError` listing every problem. Writes nothing."""
    return _verify(_dataset(dataset), workers=_workers(workers), show_progress=show_progress)


def fingerprint(
    dataset: str | Path | Dataset,
    workdir: str | Path,
    *,
    workers: int | None = None,
    seed: int = 1234,
    sample_budget: int = DEFAULT_SAMPLE_BUDGET,
    force: bool = False,
    show_progress: bool = True,
) -> tuple[Fingerprint, bool]:
    """Write ``WORKDIR/fingerprint.json``. Returns it and whether it was reused (inputs unchanged)."""
    ds = _dataset(dataset)
    out = Path(workdir) / FINGERPRINT_FILE
    per_case = max(1, sample_budget // max(1, len(ds.cases)))
    if out.is_file() and not force:
        try:
            old = Fingerprint.load(out)
        except Exception:
            old = None
        if old is not None and old.inputs_hash == inputs_hash(ds, per_case, seed):
            return old, True
    fp = extract_fingerprint(
        ds, workers=_workers(workers), seed=seed, sample_budget=sample_budget, show_progress=show_progress
    )
    fp.save(out)
    return fp, False


def plan(
    workdir: str | Path,
    *,
    preset: str | Path | Preset = "default",
    device: str | None = None,
    memory_gb: float | None = None,
    calibrate: bool = False,
) -> Plan:
    """Write ``WORKDIR/plan.json`` from ``WORKDIR/fingerprint.json`` and a preset."""
    wd = Path(workdir)
    fp = Fingerprint.load(wd / FINGERPRINT_FILE)
    pre = preset if isinstance(preset, Preset) else load_preset(preset)
    result = make_plan(fp, pre, device=device, memory_gb=memory_gb)
    if calibrate:
        from automed.plan.calibrate import calibrate as _calibrate

        dev = device or pre.memory.device
        old_path = wd / PLAN_FILE
        old = Plan.load(old_path) if _stored_plan_hash(old_path) else None
        if (
            old is not None
            and old.calibration is not None
            and old.calibration.device == dev
            and old.fingerprint_hash == fp.hash
            and old.preset_hash == result.preset_hash
        ):
            cal = old.calibration
        else:
            name = (
                "3d_fullres" if "3d_fullres" in result.configurations else next(iter(result.configurations))
            )
            cal = _calibrate(result.configurations[name], dev)
        result = make_plan(fp, pre, device=device, memory_gb=memory_gb, memory_factor=cal.factor)
        result = result.model_copy(update={"calibration": cal}).with_hash()
    out = wd / PLAN_FILE
    if _stored_plan_hash(out) != result.hash:
        result.save(out)
    return result


def _stored_plan_hash(path: Path) -> str | None:
    """Hash of the plan on disk, or ``None`` when there is none or it is unreadable (it is then rewritten)."""
    try:
        return Plan.load(path).hash if path.is_file() else None
    except Exception:
        return None


def preprocess(
    dataset: str | Path | Dataset,
    workdir: str | Path,
    *,
    configurations: list[str] | None = None,
    folds: int = 5,
    split_seed: int = 12345,
    workers: int | None = None,
    show_progress: bool = True,
    train_configs: list[TrainConfig] | None = None,
) -> dict[str, str]:
    """Write the preprocessed cache and ``splits.json`` for the plan in ``WORKDIR``.

    ``train_configs``: also write the caches their overrides need (a normalization override has its own)."""
    ds = _dataset(dataset)
    wd = Path(workdir)
    p = Plan.load(wd / PLAN_FILE)
    fp = Fingerprint.load(wd / FINGERPRINT_FILE)
    if fp.hash != p.fingerprint_hash or inputs_hash(ds, fp.samples_per_case, fp.seed) != fp.inputs_hash:
        raise ArtifactError.single(
            wd / FINGERPRINT_FILE,
            "the dataset, fingerprint.json and plan.json must belong together",
            "the dataset changed since it was fingerprinted (or the plan is from another fingerprint)",
            "run `automed plan DATASET -o WORKDIR`, which refreshes every stage",
        )
    status = _preprocess(
        p, ds, wd, configurations=configurations, workers=_workers(workers), show_progress=show_progress
    )
    for tc in train_configs or []:
        variant = effective_plan(p, tc)
        if variant is not p:
            status.update(
                _preprocess(
                    variant,
                    ds,
                    wd,
                    configurations=[tc.configuration],
                    workers=_workers(workers),
                    show_progress=show_progress,
                )
            )
    write_splits(ds, wd / SPLITS_FILE, folds, split_seed)
    return status


@dataclass
class PlanResult:
    workdir: Path
    fingerprint: Fingerprint
    plan: Plan
    fingerprint_reused: bool
    preprocessed: dict[str, str] = field(default_factory=dict)


def plan_dataset(
    dataset: str | Path,
    workdir: str | Path,
    *,
    preset: str | Path = "default",
    device: str | None = None,
    memory_gb: float | None = None,
    calibrate: bool = False,
    run_preprocess: bool = True,
    configurations: list[str] | None = None,
    folds: int = 5,
    workers: int | None = None,
    show_progress: bool = True,
) -> PlanResult:
    """verify -> fingerprint -> plan -> preprocess (what ``automed plan`` runs). Nothing is written if verify fails."""
    ds = _dataset(dataset)
    pre = load_preset(preset)
    verify(ds, workers=workers, show_progress=show_progress)
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    fp, reused = fingerprint(ds, wd, workers=workers, show_progress=show_progress)
    p = plan(wd, preset=pre, device=device, memory_gb=memory_gb, calibrate=calibrate)
    res = PlanResult(wd, fp, p, reused)
    if run_preprocess:
        res.preprocessed = preprocess(
            ds, wd, configurations=configurations, folds=folds, workers=workers, show_progress=show_progress
        )
    return res


def train(
    dataset: str | Path | None,
    workdir: str | Path,
    *,
    config: str | Path | None = None,
    configuration: str | None = None,
    epochs: int | None = None,
    budget: str | float | None = None,
    folds: int = 5,
    only_folds: list[int] | None = None,
    device: str | None = None,
    tracking_uri: str | None = None,
    register: bool = True,
    resume: bool = False,
    extend: int = 0,
    preset: str | None = None,
    workers: int | None = None,
    parallel_folds: int = 1,
    show_progress: bool = True,
) -> Any:
    """Train every fold of a configuration within a budget, validate, summarise CV and register the ensemble."""
    from automed.train.config import TrainConfig, load_train_config
    from automed.train.run import TrainOptions, train_dataset

    cfg = load_train_config(config) if config else TrainConfig()
    auto = configuration is None and "configuration" not in cfg.model_fields_set
    updates: dict[str, Any] = {"configuration": configuration} if configuration else {}
    if epochs is not None:
        updates["epochs"] = epochs
    cfg = cfg.model_copy(update=updates)
    opts = TrainOptions(
        folds=folds,
        only_folds=only_folds,
        budget_s=parse_duration(budget),
        device=device,
        tracking_uri=tracking_uri,
        register=register,
        workers=workers,
        preset=preset,
        parallel_folds=parallel_folds,
        auto_configuration=auto,
    )
    return train_dataset(
        dataset or "", workdir, cfg, opts, resume=resume, extend=extend, show_progress=show_progress
    )


def sweep(
    dataset: str | Path | None,
    workdir: str | Path,
    *,
    space: str | Path | None = None,
    grid: str | Path | None = None,
    config: str | Path | None = None,
    trials: int = 8,
    budget: str | float | None = None,
    folds: int = 5,
    promote: int = 2,
    screen: bool = True,
    sampler: str = "tpe",
    scheduler: str = "asha",
    engine: str = "ray",
    ray_address: str | None = None,
    trial_resources: str = "cpu=1,gpu=0",
    seed: int = 0,
    tracking_uri: str | None = None,
    preset: str | None = None,
    device: str | None = None,
    workers: int | None = None,
    resume: bool = False,
    show_progress: bool = True,
) -> Any:
    """Search training configs over folds (screen on fold 0 with ASHA, promote the best to full CV)."""
    from automed.registry import check_choice
    from automed.sweep.runner import SweepOptions, parse_resources, sweep_dataset
    from automed.train.config import load_train_config

    check_choice(sampler, ["tpe", "random"], what="the sampler", where="--sampler")
    check_choice(scheduler, ["asha", "none"], what="the scheduler", where="--scheduler")
    opts = SweepOptions(
        space=str(space) if space else None,
        grid=str(grid) if grid else None,
        trials=trials,
        budget_s=parse_duration(budget),
        folds=folds,
        promote=promote,
        screen=screen,
        sampler=sampler,
        scheduler=scheduler,
        engine=engine,
        ray_address=ray_address,
        trial_resources=parse_resources(trial_resources),
        seed=seed,
        tracking_uri=tracking_uri,
        preset=preset,
        device=device,
        workers=workers,
    )
    base = load_train_config(config) if config else None
    return sweep_dataset(dataset, workdir, opts, base_config=base, resume=resume, show_progress=show_progress)


def grid(base: str | Path, strategy: str | Path, output: str | Path) -> Any:
    """Write one training config YAML per distinct combination of a grid strategy (and ``grid.csv``)."""
    from automed.sweep.grid import write_grid

    return write_grid(Path(base), Path(strategy), Path(output))


def export(
    model: str | Path,
    output: str | Path | None = None,
    *,
    formats: str = "onnx,openvino",
    case: str | Path | None = None,
    ov_precision: str = "auto",
    repeats: int = 1,
    tracking_uri: str | None = None,
) -> Any:
    """Export a trained model's fold networks to ONNX / OpenVINO and check parity and latency on a real case.

    ``model`` is a work dir, a ``models:/`` URI or an ``automed select`` folder (its choice: one training, or a pair
    exported as one bundle that averages both). ``output`` defaults to ``MODEL/export`` for a folder.
    ``ov_precision`` ``auto`` is bf16 on CPUs with native bf16 (AVX512-BF16/AMX, the same rule as torch's autocast
    in automed) and f32 elsewhere. Exporting a folder links the export to it (``export_link.json``), so
    ``automed predict MODEL`` then runs it instead of torch. A failed parity check keeps any earlier export.
    """
    from automed.artifacts import atomic_directory, write_json_atomic
    from automed.data.cases import read_case
    from automed.data.dataset import Case
    from automed.export.bundle import readable
    from automed.export.card import model_card, pair_card
    from automed.export.export import export_predictor, first_validation_case, parity_failures, parse_formats
    from automed.export.link import write_link
    from automed.export.mlflow_attach import attach_export
    from automed.infer.ensemble import EnsemblePredictor
    from automed.infer.inputs import discover
    from automed.registry import check_choice
    from automed.train.device import cpu_has_native_bf16

    fmts = parse_formats(formats)
    check_choice(
        ov_precision, ["auto", "f32", "bf16", "f16"], what="the OpenVINO precision", where="--ov-precision"
    )
    if ov_precision == "auto":
        ov_precision = "bf16" if cpu_has_native_bf16() else "f32"
    is_uri = str(model).startswith("models:/")
    if output is None:
        if is_uri:
            raise ConfigError.single(
                "--output", "exporting a registered model needs an output folder", "none", "pass -o DIR"
            )
        output = Path(model) / "export"
    if not is_uri:
        model = model_dir(Path(model))
    predictor = _load_predictor(model, tracking_uri, runtime="torch")
    pair = isinstance(predictor, EnsemblePredictor)
    sample = None
    if case is not None:
        found = discover(case, predictor.plan.n_channels)
        c = found[0]
        cd = read_case(Case(c.case_id, c.images), c.is_4d)
        sample = (c.case_id, cd.channels, cd.geometry)
    elif not is_uri:
        sample = first_validation_case(pair_workdirs(Path(model))[0] if pair else Path(model))
    final = Path(output)
    workdir = None if is_uri else Path(model)
    with atomic_directory(final) as tmp:  # a failed export leaves the earlier one (and its link) in place
        res = export_predictor(predictor, tmp, fmts, sample, ov_precision=ov_precision, repeats=repeats)
        failed = parity_failures(res.report)
        if failed:
            kept = final.with_name(f"{final.name}.parity-failed.json")
            write_json_atomic(kept, res.report)
            raise ConfigError.single(
                kept,
                "exported models must match torch within the documented thresholds",
                "; ".join(failed),
                "report this model with that file; predict with the torch model meanwhile (an earlier export, if "
                "any, is unchanged)",
            )
        if isinstance(predictor, EnsemblePredictor):
            card = pair_card(predictor, res.report, workdir)
        else:
            card = model_card(predictor, res.report, workdir)
        (tmp / "MODEL_CARD.md").write_text(card)
        readable(tmp)
    res.folder = final
    res.report["registered"] = attach_export(final, res.report, card, str(model), tracking_uri)
    write_json_atomic(final / "export.json", res.report)
    readable(final)
    if workdir is not None:
        res.report["link"] = write_link(workdir, final, res.report)
    return res


def package(
    model: str | Path,
    mlcube: str | Path,
    *,
    export_dir: str | Path | None = None,
    image: str | None = None,
    tracking_uri: str | None = None,
) -> Any:
    """An MLCube / MedPerf cube folder for a trained model (exported first unless ``export_dir`` is given)."""
    import json
    import tempfile

    from automed.package.mlcube import write_cube

    if export_dir is None:
        with tempfile.TemporaryDirectory(prefix="automed-export-") as tmp:
            bundle = export(model, Path(tmp) / "bundle", tracking_uri=tracking_uri).folder
            meta = json.loads((bundle / "preprocess.json").read_text())
            return write_cube(bundle, Path(mlcube), meta, image)
    bundle = Path(export_dir)
    if not (bundle / "preprocess.json").is_file():
        raise ArtifactError.single(
            bundle,
            "--export must be a folder written by `automed export`",
            "no preprocess.json",
            "run `automed export MODEL -o DIR`",
        )
    return write_cube(bundle, Path(mlcube), json.loads((bundle / "preprocess.json").read_text()), image)


def select(
    workdirs: list[str | Path],
    output: str | Path,
    *,
    tracking_uri: str | None = None,
    inference: bool = True,
    latency_target: float | None = None,
    max_cases: int = 5,
    device: str | None = None,
) -> Any:
    """Compare trainings (and their pairs) on CV, decide postprocessing and (for a single chosen training) the
    inference settings; record them in the chosen training's model.json and log the evidence to MLflow. The choice
    is registered: a single training again with its settings, a pair as a new ensemble version
    (``OUT/model_bundle``; ``automed predict OUT`` runs it too)."""
    import json

    from automed.artifacts import write_json_atomic
    from automed.select.inference_cost import choose, measure
    from automed.select.selection import SELECTION_FILE
    from automed.select.selection import select as _select
    from automed.tracking import Tracker, resolve_uri

    out = Path(output)
    res = _select([Path(w) for w in workdirs], out)
    members = [Path(m) for m in res["chosen"]["members"]]
    if len(members) == 1:
        mfile = members[0] / "model.json"
        meta = json.loads(mfile.read_text())
        meta.setdefault("inference", {})["postprocessing"] = res["postprocessing"]
        write_json_atomic(mfile, meta)
        if inference:
            table = measure(members[0], max_cases=max_cases, device=device)
            choice = choose(table, len(meta["folds"]), latency_target)
            meta["inference"].update(
                tta=choice["tta"], step=choice["step"], folds=meta["folds"][: choice["folds"]]
            )
            write_json_atomic(mfile, meta)
            res["inference_cost"] = {"table": table, "choice": choice}
            write_json_atomic(out / SELECTION_FILE, res)
        meta["selection"] = {"decisions": res["decisions"], "inference_cost": res.get("inference_cost")}
        write_json_atomic(mfile, meta)
        if meta.get("registered"):  # the champion applies what was chosen: register the model again with it
            from automed.train.run import reregister

            res["registered"] = reregister(members[0], score(res["cv_dice_final"]["foreground_mean"]))
            write_json_atomic(out / SELECTION_FILE, res)
    track = Path(workdirs[0]) / "tracking.json"
    saved = json.loads(track.read_text()) if track.is_file() else {}
    tracker = Tracker(
        resolve_uri(tracking_uri or saved.get("uri")), saved.get("experiment") or "automed-select"
    )
    run = tracker.start_run("select", tags={"chosen": res["chosen"]["candidate"]})
    tracker.log_params(run, {"trainings": [str(w) for w in workdirs]})
    metrics = {"cv_dice_fg_mean_chosen": res["cv_dice_before_postprocessing"]["foreground_mean"]}
    metrics["cv_dice_fg_mean_postprocessed"] = res["cv_dice_final"]["foreground_mean"]
    for i, row in enumerate(res["candidates"]):
        metrics[f"candidate_{i}_cv_dice_fg_mean"] = row["foreground_mean"]
    tracker.log_metrics(run, metrics)
    if len(members) > 1:  # a pair won: OUT/model_bundle, so predict/export/package take OUT
        from automed.select.register import register_members, write_choice_bundle

        if not any(json.loads((m / "model.json").read_text()).get("registered") for m in members):
            write_choice_bundle(res, out)
        else:  # registered as a new version, as train registers single trainings
            try:
                res["registered"] = register_members(
                    members,
                    out,
                    res["postprocessing"],
                    score(res["cv_dice_final"]["foreground_mean"]),
                    tracker,
                    run,
                )
            except BaseException:
                tracker.end_run(run, "FAILED")
                raise
            write_json_atomic(out / SELECTION_FILE, res)
    tracker.log_artifact(run, out / SELECTION_FILE)
    tracker.end_run(run)
    return res


RUNTIMES = ("auto", "torch", "openvino", "onnx")


def model_dir(folder: Path) -> Path:
    """The folder that holds the model: ``folder`` itself, or, for an ``automed select`` folder that chose one
    training, that training's work dir (a chosen pair lives in the selection folder's ``model_bundle``)."""
    import json

    from automed.export.link import MODEL_FILE, PAIR_FILE

    sel = folder / "selection.json"  # automed.select.selection.SELECTION_FILE; that module imports torch
    if (folder / MODEL_FILE).is_file() or (folder / PAIR_FILE).is_file() or not sel.is_file():
        return folder
    members = json.loads(sel.read_text())["chosen"]["members"]
    if len(members) > 1:
        raise ArtifactError.single(
            folder / PAIR_FILE,
            "a selection that chose a pair predicts with the pair's bundle",
            "missing (selections made before pairs got a bundle lack it)",
            f"run `automed select {' '.join(members)} -o {folder}` again",
        )
    return Path(members[0])


def pair_workdirs(folder: Path) -> list[Path]:
    """The members' work dirs of a pair an ``automed select`` folder registered."""
    import json

    from automed.export.link import PAIR_FILE

    return [Path(m["workdir"]) for m in json.loads((folder / PAIR_FILE).read_text())["members"]]


def _exported_predictor(model: str | Path, runtime: str, device: str | None) -> tuple[Any, str]:
    """The work dir's linked export as a predictor when ``runtime`` allows it; ``(None, why not)`` otherwise."""
    import json

    from automed.export.link import MODEL_FILE, usable_export
    from automed.infer.exported import ExportedPredictor

    if str(model).startswith("models:/"):
        return None, "registered models predict with torch"
    if runtime == "auto" and device not in (None, "auto", "cpu"):
        return None, f"--device {device} predicts with torch"
    wd = Path(model)
    folder, why = usable_export(wd)
    if folder is None:
        return None, why
    mfile = wd / MODEL_FILE  # a pair's selection folder has none: its settings are the export's
    inference = json.loads(mfile.read_text()).get("inference", {}) if mfile.is_file() else {}
    try:
        pred = ExportedPredictor(folder, runtime=None if runtime == "auto" else runtime, inference=inference)
    except ArtifactError as exc:  # the export lacks that runtime, or none of its runtimes is installed
        return None, str(exc)
    return pred, f"{pred.runtime} ({why})"


def _load_predictor(
    model: str | Path, tracking_uri: str | None, device: str | None = None, runtime: str = "torch"
) -> Any:
    """A work dir or a ``models:/NAME@ALIAS`` URI as a predictor: the work dir's export for ``runtime`` auto (when
    usable), openvino or onnx; else a torch :class:`~automed.infer.predictor.Predictor`."""
    from automed.registry import check_choice

    check_choice(runtime, RUNTIMES, what="the runtime", where="--runtime")
    if not str(model).startswith("models:/"):
        model = model_dir(Path(model))
    if runtime != "torch":
        exported, why = _exported_predictor(model, runtime, device)
        if exported is not None:
            return exported
        if runtime != "auto":
            raise ArtifactError.single(
                model,
                f"--runtime {runtime} predicts with the work dir's export",
                why,
                f"run `automed export {model}` first, or use --runtime torch",
            )
    from automed.infer.predictor import Predictor
    from automed.registry_model import ENSEMBLE_FILE, load_bundle

    if (
        Path(model) / "model_bundle" / ENSEMBLE_FILE
    ).is_file():  # an `automed select` output that chose a pair
        return load_bundle(Path(model) / "model_bundle", device)
    if str(model).startswith("models:/"):
        import tempfile

        from automed.tracking import download_model

        tmp = Path(tempfile.mkdtemp(prefix="automed-model-"))
        return load_bundle(download_model(str(model), tmp, tracking_uri), device)
    return Predictor.from_workdir(model, device=device)


def parse_duration(value: str | float | None) -> float | None:
    """``45m``, ``2h``, ``90s``, ``1h30m`` or seconds as a number -> seconds."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    import re

    text = value.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", text)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != text.replace(" ", ""):
        from automed.errors import ConfigError

        raise ConfigError.single(
            "--budget",
            "a budget is a duration such as 45m, 2h, 90s or 1h30m",
            repr(value),
            "write the number followed by h, m or s",
        )
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def predict(
    model: str | Path,
    input_path: str | Path,
    output: str | Path,
    *,
    tta: bool | None = None,
    save_probabilities: bool = False,
    device: str | None = None,
    tracking_uri: str | None = None,
    show_progress: bool = True,
    runtime: str = "auto",
    on_load: Any = None,
) -> list[Path]:
    """Predict every case under ``input_path`` with a training work dir, an ``automed select`` folder (its choice)
    or a registered model URI.

    ``runtime`` ``auto``: the work dir's export (OpenVINO, else onnxruntime) when ``automed export`` linked one that
    is still the model's (same checkpoints, parity passed), else torch; ``torch``, ``openvino``, ``onnx`` force one.
    ``on_load(text)`` is told which one runs."""
    import numpy as np

    from automed.data.cases import read_case
    from automed.data.dataset import Case
    from automed.data.io import write_image
    from automed.infer.inputs import discover
    from automed.parallel import progress_bar

    out = Path(output)
    predictor = _load_predictor(model, tracking_uri, device, runtime)
    if on_load is not None:
        kind = getattr(predictor, "runtime", None)
        on_load(f"{kind} export {predictor.folder}" if kind else f"torch on {predictor.device}")
    if tta is not None:  # else the model's own setting (chosen by `automed select` when it ran)
        predictor.tta = tta
    cases = discover(input_path, predictor.n_channels)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with progress_bar(disable=not show_progress) as bar:
        task = bar.add_task("predict", total=len(cases))
        for c in cases:
            cd = read_case(Case(c.case_id, c.images), c.is_4d)
            res = predictor.predict_arrays(cd.channels, cd.geometry, probabilities=save_probabilities)
            path = out / f"{c.case_id}{c.suffix}"
            write_image(res.labels, cd.geometry, path)
            if res.probabilities is not None:
                np.savez_compressed(out / f"{c.case_id}.npz", probabilities=res.probabilities)
            written.append(path)
            bar.advance(task)
    return written
