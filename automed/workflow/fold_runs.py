"""Running a training's fold jobs: on this machine one after another, each with its share of the time left, or
``--parallel-folds`` at once in spawned worker processes (CPU threads split, one GPU each when there are enough);
or as Ray tasks on a cluster (``--ray-address``)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from automed.errors import ConfigError, Problem, ProblemsError
from automed.parallel import process_pool
from automed.plan.schema import Plan
from automed.records import read_train_config
from automed.tracking import Tracker
from automed.train.config import TrainConfig
from automed.workdir import WorkDir
from automed.workflow.fold import FoldJob, FoldOutcome, run_fold, validation_passes
from automed.workflow.fold_watch import FoldWatch
from automed.workflow.live import Mode
from automed.workflow.train_options import DEFAULT_RESOURCES, TrackingState, TrainOptions

FINAL_RESERVE_S = 20.0  # CV summary, bundle and registration at the end of a budgeted run


@dataclass(frozen=True)
class Placement:
    """Where a training's folds run: ``parallel_folds`` local processes, or Ray tasks on ``ray_address`` (default:
    ``RAY_ADDRESS``; none: this machine) with ``resources`` each."""

    parallel_folds: int = 1
    ray_address: str | None = None
    resources: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))


def check_fits(resources: dict[str, float]) -> None:
    """One fold's ``--trial-resources`` must fit on one alive node of the connected cluster: Ray keeps a task no
    node can hold pending for ever (cpu=2 on nodes of 1 CPU each hung the training, though the cluster's 2 CPUs in
    all made it look feasible)."""
    import ray

    need = {"CPU": resources.get("cpu", 1.0), "GPU": resources.get("gpu", 0.0)}
    have = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(all(r.get(k, 0.0) >= v for k, v in need.items() if v > 0) for r in have):
        return
    sizes = sorted({(r.get("CPU", 0.0), r.get("GPU", 0.0)) for r in have}, reverse=True)
    raise ConfigError.single(
        "--trial-resources",
        "one fold's resources must fit on one node of the cluster (Ray waits for ever for a node that has them)",
        f"cpu={need['CPU']:g},gpu={need['GPU']:g}; its nodes have "
        + ", ".join(f"cpu={c:g},gpu={g:g}" for c, g in sizes),
        f"ask for at most what its largest node has, e.g. --trial-resources cpu={sizes[0][0]:g},gpu={sizes[0][1]:g}"
        if sizes
        else "start the cluster's nodes (`ray status` on the head node lists them)",
    )


def check_cluster(
    address: str | None,
    dataset: str | Path | None = None,
    wd: Path | None = None,
    resources: dict[str, float] | None = None,
) -> None:
    """A cluster named (``--ray-address``, else ``RAY_ADDRESS``) that nothing answers at is refused before any work,
    not once the folds are due: then the dataset had been planned and preprocessed and the MLflow run opened, and
    Ray retried the address for ever. With ``dataset`` and ``wd`` (the work dir, existing): every node must read the
    one and write the other, and one fold's ``resources`` fit on one of them (:func:`check_fits`), checked before the
    plan and the preprocessing (found after them, the run failed or hung)."""
    if not (address or os.environ.get("RAY_ADDRESS")):
        return
    from automed.search.ray_connect import check_reachable

    check_reachable(address)
    if dataset is None or wd is None:
        return
    import ray

    from automed.search.ray_engine import RayEngine

    engine = RayEngine(address, dict(DEFAULT_RESOURCES), show_progress=False)
    try:
        check_fits(resources or dict(DEFAULT_RESOURCES))
        engine.check_nodes([str(Path(dataset).resolve())], str(wd))
    except ConfigError as exc:  # the engine's words are a sweep's
        said = [replace(p, rule=p.rule.replace("the sweep dir", "the work dir")) for p in exc.problems]
        raise ConfigError(said, "the cluster cannot run this training") from exc
    finally:
        ray.shutdown()  # the folds connect again; a cluster started with `ray start` keeps running


def training_job(
    wd: Path,
    plan: Plan,
    config: TrainConfig,
    opts: TrainOptions,
    tracker: Tracker,
    track: TrackingState,
    fold: int,
    split: dict[str, list[str]],
    run_id: str,
    *,
    resume: bool,
    extend: int = 0,
    progress: Mode = "off",
) -> FoldJob:
    """The job of one fold of a training (``automed train``'s folds and its screened fold 0s alike)."""
    return FoldJob(
        workdir=str(wd),
        dataset=read_train_config(WorkDir(wd).train_config)["dataset"],
        config=config.model_dump(mode="json"),
        fold=fold,
        train_ids=split["train"],
        val_ids=split["val"],
        budget_s=None,
        device=opts.device,
        resume=resume,
        extend=extend,
        run_id=run_id,
        uri=tracker.uri,  # with its credentials (tracking.json keeps none)
        experiment=track.experiment,
        workers=opts.workers,
        validation_tta=opts.validation_tta,
        validation_mirrors=opts.validation_mirrors,
        validation_passes=validation_passes(
            plan, config, len(split["val"]), opts.validation_tta, opts.validation_mirrors
        ),
        overlays=opts.overlays,
        redactor=tracker.redactor,
        progress=progress,
    )


def run_fold_jobs(
    jobs: list[FoldJob],
    where: Placement,
    wd: Path,
    deadline: float | None,
    fallback: float | None,
) -> list[FoldOutcome]:
    """The fold jobs on this machine, or as Ray tasks when a cluster is named; ``fallback``: the budget of a fold that
    had not started when a budgeted run was resumed without a budget (in every placement)."""
    if fallback:
        jobs = [j if j.resume or j.extend else replace(j, budget_s=fallback) for j in jobs]
    address = where.ray_address or os.environ.get("RAY_ADDRESS")
    if not address or not jobs:
        return run_jobs(jobs, where.parallel_folds, deadline)
    wdir = WorkDir(wd)
    dataset = read_train_config(wdir.train_config)["dataset"]
    shared = [dataset, str(wdir.plan), str(wdir.preprocessed), str(wd)]
    return run_jobs_on_ray(jobs, address, where.resources, deadline, shared)  # run_fold tags each run's node


def run_jobs(jobs: list[FoldJob], parallel_folds: int, deadline: float | None) -> list[FoldOutcome]:
    """Run the folds one after another (each with its share of the time left) or ``parallel_folds`` at once."""
    parallel = max(1, min(parallel_folds, len(jobs)))
    if parallel > 1:
        return _run_parallel(jobs, parallel, deadline)
    out = []
    for i, job in enumerate(jobs):
        if deadline is not None:
            left = deadline - time.perf_counter() - FINAL_RESERVE_S
            # each fold reserves its own validation time from its share (see validation_passes)
            job = replace(job, budget_s=max(10.0, left / (len(jobs) - i)))
        out.append(run_fold(job))
    return out


def _run_parallel(jobs: list[FoldJob], n: int, deadline: float | None) -> list[FoldOutcome]:
    """Run folds ``n`` at a time in spawned processes: CPU threads split evenly, one GPU each when there are
    enough. Each wave of ``n`` folds shares the time left equally with the waves after it."""
    gpus = torch.cuda.device_count()
    threads = max(1, (os.cpu_count() or 1) // n)
    results: list[FoldOutcome] = []
    waves = [jobs[i : i + n] for i in range(0, len(jobs), n)]
    with process_pool(n, "spawn") as pool:
        for w, wave in enumerate(waves):
            budget = None
            if deadline is not None:
                left = deadline - time.perf_counter() - FINAL_RESERVE_S
                budget = max(10.0, 0.9 * left / (len(waves) - w))
            futures = [
                pool.submit(
                    run_fold,
                    replace(
                        job,
                        budget_s=budget if budget is not None else job.budget_s,
                        threads=threads,
                        cuda_device=k if gpus >= n else None,
                        progress="plain" if job.progress != "off" else "off",  # workers share one terminal
                    ),
                )
                for k, job in enumerate(wave)
            ]
            results += [f.result() for f in futures]
    return results


def run_jobs_on_ray(
    jobs: list[FoldJob],
    address: str,
    resources: dict[str, float],
    deadline: float | None,
    shared: list[str],
) -> list[FoldOutcome]:
    """Run the folds as Ray tasks on the cluster at ``address`` (the sweep engine's connection, node check and
    ``--trial-resources``), as many at once as it holds; each wave of folds shares the time left equally. Every node
    must read ``shared[:-1]`` (dataset, plan, preprocessed data) and write ``shared[-1]`` (the work dir)."""
    import math

    from automed.search.ray_engine import RayEngine

    engine = RayEngine(address, resources, show_progress=False)
    try:
        check_fits(resources)  # a resumed training's cluster may have other nodes
        engine.check_nodes(shared[:-1], shared[-1])
        waves = math.ceil(len(jobs) / max(1, min(engine.concurrency(), len(jobs))))
        budget = None
        if deadline is not None:
            budget = max(10.0, 0.9 * (deadline - time.perf_counter() - FINAL_RESERVE_S) / waves)
        threads = max(1, int(resources.get("cpu", 1)))
        ready = [
            replace(j, budget_s=budget if budget is not None else j.budget_s, threads=threads, progress="off")
            for j in jobs
        ]
        # the folds' own output stays on their nodes: the driver shows their epochs from their progress.json
        watch = FoldWatch(ready) if any(j.progress != "off" for j in jobs) else None
        done: list[FoldOutcome] = engine.run_tasks(run_fold, ready, watch)
    except Exception as exc:
        raise _lost(exc, jobs) from exc
    finally:
        import ray

        ray.shutdown()  # the driver disconnects; a cluster started with `ray start` keeps running
    return done


def _lost(exc: Exception, jobs: list[FoldJob]) -> Exception:
    """A fold task that Ray lost (its node died, its worker was killed or ran out of memory) as an error that says
    what is kept and how to go on (Ray's own message said neither); a fold's own error is itself."""
    from ray.exceptions import RayError, RayTaskError

    if not isinstance(exc, RayError) or isinstance(exc, RayTaskError):
        return exc
    said = " ".join(str(exc).split())
    wd = jobs[0].workdir
    return ProblemsError(
        [
            Problem(
                f"folds {[j.fold for j in jobs]} on the Ray cluster",
                "a fold's Ray task must end on its node: Ray does not move a fold whose node died",
                f"{type(exc).__name__}: {said[:300]}{'...' if len(said) > 300 else ''}",
                f"`automed train --resume {wd}` trains the folds that did not finish on the nodes there are, "
                "each from its last checkpoint; finished folds are kept",
            )
        ],
        "a fold's Ray task was lost",
    )
