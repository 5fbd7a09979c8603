"""Prepare a dataset for training: verify -> fingerprint (``fingerprint.json``) -> plan (``plan.json``) ->
preprocess (``preprocessed/<configuration>/`` + ``splits.json``). Each stage writes one artifact atomically and is
skipped when its inputs are unchanged; :func:`plan_dataset` runs them in order, :func:`plan_for_training` with the
preset for the training device and the task checked before any training."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from automed.artifacts import write_bytes_atomic
from automed.data.dataset import Dataset, load_dataset
from automed.data.splits import check_splits, write_splits
from automed.data.verify import VerifyReport
from automed.data.verify import verify as _verify
from automed.data.verify_dataset import DEFAULT_FOLDS, no_target_problems
from automed.data.verify_rules import DEFAULT_MAX_VOXELS
from automed.errors import ArtifactError, ConfigError, DatasetError
from automed.fingerprint.extract import DEFAULT_SAMPLE_BUDGET, extract_fingerprint, inputs_unchanged
from automed.fingerprint.schema import Fingerprint
from automed.parallel import default_workers
from automed.plan.planner import make_plan
from automed.plan.preset import ARCHITECTURES, Preset, load_preset
from automed.plan.schema import Plan
from automed.plan.target import CONFIGURATION_NAMES as NNUNET_CONFIGURATIONS
from automed.plan.target import check_plan_options
from automed.plan.variants import effective_plan
from automed.preprocess.pipeline import preprocess as _preprocess
from automed.registry import check_choice
from automed.train.config import TrainConfig
from automed.workdir import FINGERPRINT as FINGERPRINT_FILE
from automed.workdir import PLAN as PLAN_FILE
from automed.workdir import SPLITS as SPLITS_FILE
from automed.workdir import WorkDir
from automed.workdir_claim import claim_workdir, refuse_workdir_in_dataset

log = logging.getLogger(__name__)


def resolve_workers(workers: int | None) -> int:
    return default_workers() if workers is None else max(1, workers)


def as_dataset(dataset: str | Path | Dataset) -> Dataset:
    return dataset if isinstance(dataset, Dataset) else load_dataset(dataset)


def verify(
    dataset: str | Path | Dataset,
    *,
    workers: int | None = None,
    show_progress: bool = True,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    folds: int = DEFAULT_FOLDS,
) -> VerifyReport:
    """Check a dataset and raise :class:`automed.errors.DatasetError` listing every problem. Writes nothing.
    ``max_voxels`` bounds one image (checked from its header before any voxel is read); ``folds``: those it is to
    be trained with (a class with fewer cases is warned about)."""
    return _verify(
        as_dataset(dataset),
        workers=resolve_workers(workers),
        show_progress=show_progress,
        max_voxels=max_voxels,
        folds=folds,
    )


def fingerprint(
    dataset: str | Path | Dataset,
    workdir: str | Path,
    *,
    workers: int | None = None,
    seed: int = 1234,
    sample_budget: int = DEFAULT_SAMPLE_BUDGET,
    force: bool = False,
    show_progress: bool = True,
    verify_first: bool = False,
) -> tuple[Fingerprint, bool]:
    """Write ``WORKDIR/fingerprint.json``. Returns it and whether it was reused (inputs unchanged).
    ``verify_first``: :func:`verify` the dataset first, once the work dir is known not to lie inside it."""
    refuse_workdir_in_dataset(dataset.source if isinstance(dataset, Dataset) else dataset, Path(workdir))
    ds = as_dataset(dataset)
    if verify_first:
        verify(ds, workers=workers, show_progress=show_progress)
    claim_workdir(Path(workdir), "automed fingerprint")
    out = Path(workdir) / FINGERPRINT_FILE
    per_case = max(1, sample_budget // max(1, len(ds.cases)))
    old = None
    if out.is_file():
        try:
            old = Fingerprint.load(out)
        except Exception:
            old = None
    same_sampling = old is not None and (old.samples_per_case, old.seed) == (per_case, seed)
    if old is not None and same_sampling and not force and inputs_unchanged(ds, old):
        return old, True
    fp = extract_fingerprint(
        ds,
        workers=resolve_workers(workers),
        seed=seed,
        sample_budget=sample_budget,
        show_progress=show_progress,
    )
    if old is not None and _earlier_of_trained(old, fp, Path(workdir)):
        fp = old.model_copy(
            update={"inputs_hash": fp.inputs_hash, "inputs_version": fp.inputs_version, "source": fp.source}
        )
    if old is not None and old.hash != fp.hash and (trained := WorkDir(Path(workdir)).trained_checkpoints()):
        raise ArtifactError.single(  # the folds trained on the cache of the data it describes
            out,
            "a work dir with trained folds keeps its fingerprint.json",
            f"the dataset changed since its folds were trained ({trained[0].parent}): fingerprint {fp.hash} "
            f"instead of {old.hash} (cases added or removed, images or labels edited"
            + (f", another task {old.task_type} -> {fp.task_type}" if old.task_type != fp.task_type else "")
            + ", or another sample budget)",
            "train or plan the changed dataset into a new --output (or restore the dataset as it was)",
        )
    fp.save(out)
    return fp, False


def _earlier_of_trained(old: Fingerprint, new: Fingerprint, wd: Path) -> bool:
    """Whether ``old`` is kept for ``new``: written by an automed that recorded no voxel digest, with the same
    statistics, under trained folds. Their plan would otherwise be refused as another one (the fingerprint's hash
    now counts the digest) while nothing shows that the data changed; the earlier rule holds for them."""
    if old.voxels_digest is not None or new.without_digest().hash != old.hash:
        return False
    return bool(WorkDir(wd).trained_checkpoints())


def plan(
    workdir: str | Path,
    *,
    preset: str | Path | Preset = "default",
    device: str | None = None,
    memory_gb: float | None = None,
    calibrate: bool = False,
    configurations: list[str] | None = None,
) -> Plan:
    """Write ``WORKDIR/plan.json`` from ``WORKDIR/fingerprint.json`` and a preset (``configurations``: those the
    caller preprocesses next, refused before the plan is written when it does not hold them)."""
    wd = Path(workdir)
    claim_workdir(wd, "automed plan")
    fp = Fingerprint.load(wd / FINGERPRINT_FILE)
    pre = preset if isinstance(preset, Preset) else load_preset(preset)
    # refused here, not by the training that reads the plan after preprocessing and its MLflow run (the names
    # without torch: automed plan starts in a second; train.networks registers exactly these)
    where = f"preset {pre.name} ({preset})" if not isinstance(preset, Preset) else f"preset {pre.name}"
    check_choice(pre.network.architecture, ARCHITECTURES, what="network.architecture", where=where)
    result = make_plan(fp, pre, device=device, memory_gb=memory_gb)
    if calibrate:
        from automed.plan.calibrate import calibrate as _calibrate
        from automed.plan.calibrate import check_device

        dev = device or pre.memory.device
        check_device(dev)
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
    for name in configurations or []:  # (a failed -c 2d had already replaced the work dir's plan)
        check_choice(name, result.configurations, what="the configuration", where="--configurations")
    out = wd / PLAN_FILE
    if _stored_plan_hash(out) != result.hash:
        trained = WorkDir(wd).trained_checkpoints()
        if trained and out.is_file():  # its weights would then load with another spacing or normalization
            raise ArtifactError.single(
                out,
                "a work dir with trained folds keeps its plan.json",
                f"another plan ({result.hash} instead of {_stored_plan_hash(out)}) over {trained[0].parent}: "
                f"{_why_plan_differs(out, result)}",
                "plan into a new --output (or delete that work dir's train/ folder to start over)",
            )
        result.save(out)
    return result


def _why_plan_differs(path: Path, new: Plan) -> str:
    """What changed between the stored plan and ``new``: the data (its fingerprint: cases added or removed, labels
    or images edited, another task), the preset, or the planner's rules."""
    try:
        old = Plan.load(path)
    except Exception:
        return "the stored plan is unreadable"
    why = []
    if old.fingerprint_hash != new.fingerprint_hash:
        why.append(
            "the dataset changed since it was trained (its fingerprint differs: cases added or removed, images or "
            + (
                "labels edited"
                if old.task_type == new.task_type
                else f"another task, {old.task_type} -> {new.task_type}"
            )
            + ")"
        )
    if old.preset_hash != new.preset_hash:
        why.append(f"another planner preset ({old.preset_name} -> {new.preset_name}, or its values changed)")
    if why:
        return "; ".join(why)
    if old.automed_version != new.automed_version:
        return f"the planner's rules changed (automed {old.automed_version} -> {new.automed_version})"
    return "other planning options (--device, --memory-gb, --calibrate)"


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
    wd = Path(workdir)
    refuse_workdir_in_dataset(dataset.source if isinstance(dataset, Dataset) else dataset, wd)
    ds = as_dataset(dataset)
    claim_workdir(wd, "automed preprocess")
    check_splits(ds, wd / SPLITS_FILE, folds, split_seed)  # before any work: trained folds keep their split
    p = Plan.load(wd / PLAN_FILE)
    fp = Fingerprint.load(wd / FINGERPRINT_FILE)
    if fp.hash != p.fingerprint_hash or not inputs_unchanged(ds, fp):
        raise ArtifactError.single(
            wd / FINGERPRINT_FILE,
            "the dataset, fingerprint.json and plan.json must belong together",
            "the dataset changed since it was fingerprinted (or the plan is from another fingerprint)",
            "run `automed plan DATASET -o WORKDIR`, which refreshes every stage",
        )
    status = _preprocess(
        p,
        ds,
        wd,
        configurations=configurations,
        workers=resolve_workers(workers),
        show_progress=show_progress,
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
                    workers=resolve_workers(workers),
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
    dataset: str | Path | Dataset,
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
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> PlanResult:
    """verify -> fingerprint -> plan -> preprocess (what ``automed plan`` runs). Nothing is written if verify fails;
    ``max_voxels`` bounds one image, as in :func:`verify`."""
    wd = Path(workdir)
    # before the dataset is read: a leftover DS/W would be refused as part of the dataset, hiding this rule
    refuse_workdir_in_dataset(dataset.source if isinstance(dataset, Dataset) else dataset, wd)
    ds = as_dataset(dataset)
    pre = load_preset(preset)
    check_plan_options(pre, device, memory_gb, configurations, calibrate)  # before the dataset is read
    verify(ds, workers=workers, show_progress=show_progress, max_voxels=max_voxels, folds=folds)
    claim_workdir(wd, "automed plan")  # before the folder is made: a file or a folder of yours is refused
    wd.mkdir(parents=True, exist_ok=True)
    earlier = (wd / FINGERPRINT_FILE).read_bytes() if (wd / FINGERPRINT_FILE).is_file() else None
    fp, reused = fingerprint(ds, wd, workers=workers, show_progress=show_progress)
    try:
        p = plan(
            wd,
            preset=pre,
            device=device,
            memory_gb=memory_gb,
            calibrate=calibrate,
            configurations=configurations,
        )
    except ArtifactError:  # a plan refused over trained folds: the work dir stays as its training left it
        if earlier is not None:
            write_bytes_atomic(wd / FINGERPRINT_FILE, earlier)
        raise
    res = PlanResult(wd, fp, p, reused)
    if run_preprocess:
        res.preprocessed = preprocess(
            ds, wd, configurations=configurations, folds=folds, workers=workers, show_progress=show_progress
        )
    return res


def dataset_source(ds: Dataset) -> str:
    """What a work dir records as the dataset (``load_dataset`` of it gives ``ds`` again): the CSV, the folder of
    class folders, or the folder holding ``dataset.json``."""
    return str(ds.source if ds.layout in ("csv", "folders") else ds.source.parent)


def plan_for_training(
    ds: Dataset,
    wd: Path,
    device: str | None,
    preset: str | None,
    workers: int | None,
    show_progress: bool,
    max_voxels: int | None = None,
    folds: int = DEFAULT_FOLDS,
) -> tuple[Plan, str]:
    """Verify, fingerprint and plan ``ds`` into ``wd`` (no preprocessing yet) with the preset for the device that
    will train (``default`` on CUDA, ``cpu`` otherwise, unless ``preset`` names one). A dataset whose task cannot be
    trained fails here, before any training."""
    if problems := no_target_problems(ds):  # before verify reads a voxel
        raise DatasetError(problems, f"nothing to train on in {ds.source}")
    # torch and the task plug-ins load here, for the training verbs only: `automed verify/plan` start in a second
    from automed.tasks.registry import task_for
    from automed.train.device import pick_device

    dev = pick_device(device)
    name = preset or ("default" if dev.type == "cuda" else "cpu")
    memory_gb, calibrate = _planned_memory(wd / PLAN_FILE, dev.type, load_preset(name).name)
    res = plan_dataset(
        ds,  # the Dataset itself: a --task choice lives on it
        wd,
        preset=name,
        device=dev.type,
        memory_gb=memory_gb,
        calibrate=calibrate,
        run_preprocess=False,
        folds=folds,  # verify's class-count warnings only: the splits are written later
        workers=workers,
        show_progress=show_progress,
        max_voxels=max_voxels or DEFAULT_MAX_VOXELS,
    )
    task_for(res.plan.task_type, ds.source)
    return res.plan, name


def _planned_memory(path: Path, device: str, preset: str) -> tuple[float | None, bool]:
    """The memory target and calibration of the plan ``automed plan --memory-gb/--calibrate`` left in a work dir for
    this device and preset, which ``automed train`` into it keeps (it had planned again for the preset's memory,
    replacing the patch and batch sizes chosen for the machine without a word); ``(None, False)`` where there is
    none (another preset plans with its own memory target)."""
    try:
        old = Plan.load(path) if path.is_file() else None
    except Exception:  # unreadable: planned anew (and rewritten), as plan() does
        return None, False
    memories = [c.memory for c in old.configurations.values()] if old is not None else []
    if old is None or old.preset_name != preset or not memories or any(m.device != device for m in memories):
        return None, False
    calibrated = old.calibration is not None and old.calibration.device == device
    log.info("%s: planned for %.3g GB%s, as automed plan left it", path, memories[0].target_gb,
             " (calibrated)" if calibrated else "")  # fmt: skip
    return memories[0].target_gb, calibrated


def choose_configuration(
    config: TrainConfig, plan: Plan, auto: bool, previous: str | None = None
) -> TrainConfig:
    """``config`` with its configuration checked against the plan (``auto``: 3d_fullres when planned, else 2d); a
    cascade stage needs the ``previous`` stage's training, and only a cascade takes one."""
    if auto and config.configuration not in plan.configurations:
        config = config.model_copy(
            update={"configuration": "3d_fullres" if "3d_fullres" in plan.configurations else "2d"}
        )
    pictures = plan.image_dimension == 2
    if pictures and config.configuration not in plan.configurations:  # no preset plans a 3D network for them
        raise ConfigError.single(
            "--configuration",
            "a dataset of 2D images is planned as 2d only (no preset plans a 3D configuration for it)",
            f"{config.configuration!r} (from --configuration or the config file's configuration:)",
            "drop it (training takes 2d), or set configuration: 2d in the config file",
        )
    if config.configuration in NNUNET_CONFIGURATIONS and config.configuration not in plan.configurations:
        raise ConfigError.single(  # a name every nnU-Net user knows, which this plan's preset did not plan
            "--configuration",
            f"the configuration must be one the plan holds: preset '{plan.preset_name}' planned "
            f"{sorted(plan.configurations)}",
            repr(config.configuration),
            "plan it with a preset that does (`--preset default` plans 2d and 3d_fullres, and 3d_lowres with "
            "3d_cascade_fullres when the full-resolution patch covers under a quarter of the median image; the "
            "cpu preset, a CPU's default, plans 3d_fullres only), or choose one of the planned configurations",
        )
    check_choice(config.configuration, plan.configurations, what="the configuration", where="--configuration")
    stage = plan.configurations[config.configuration].previous_stage
    if stage and not previous:
        raise ConfigError.single(
            "--previous",
            f"{config.configuration} refines the prediction of {stage}",
            "not given",
            f"train {stage} on every fold first (`automed train DATASET -o LOWRES --configuration {stage} "
            f"--folds 5`), then add `--previous LOWRES`",
        )
    if previous and not stage:
        raise ConfigError.single(
            "--previous",
            "only a cascade stage (3d_cascade_fullres) takes a previous stage",
            config.configuration,
            "drop --previous, or use --configuration 3d_cascade_fullres",
        )
    return config
