"""Training one fold: a deterministic function of (plan, frozen config, fold, seed).

Lifecycle of :func:`train_fold`: build the task's network and loss and the optimizer; resume from
``checkpoint_latest.pt`` when asked; if a wall-clock budget is given, time a few real steps and lay the learning-rate
schedule over the iterations that fit; then per epoch train, validate on random patches (the task's epoch score and
its EMA), notify the callback, and write ``checkpoint_latest.pt`` (and ``checkpoint_best.pt`` when the EMA improves)
atomically. ``checkpoint_final.pt`` and ``progress.json`` close the fold. Batches depend only on (seed, fold, epoch),
so a run killed mid-epoch resumes at the start of that epoch and replays it identically.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from automed.errors import ArtifactError
from automed.plan.schema import Plan
from automed.plan.variants import effective_plan
from automed.runtime import stop
from automed.train.config import TrainConfig, resolve_optimizer
from automed.train.data import CaseStore, SamplerSpec, make_loader
from automed.train.device import autocast_dtype, deterministic_mode, usable_device
from automed.train.fold_schedule import extend, lay_out, make_optimizer, refit
from automed.train.meta import resolve_training
from automed.train.precise_bn import batch_norm_layers, recompute_batch_norm
from automed.train.schedule import Phase, cut_reason, learning_rate
from automed.train.state import EpochLog, FoldResult, TrainState, load_checkpoint, save_checkpoint
from automed.workdir import WorkDir

if TYPE_CHECKING:
    from automed.tasks.base import Task


class Callback(Protocol):
    def on_epoch_end(self, fold: int, log: EpochLog) -> None: ...


HARD_STOP_GRACE = 0.05  # a share of the fold's budget an epoch may overrun it before it is cut short


class FoldTrainer:
    """The objects and state of one fold's training; :func:`train_fold` drives it."""

    def __init__(
        self,
        workdir: Path,
        plan: Plan,
        config: TrainConfig,
        fold: int,
        train_ids: list[str],
        val_ids: list[str],
        task: Task,
        device: str | None,
        workers: int | None,
    ) -> None:
        self.t_start = time.perf_counter()
        self.plan, self.config, self.fold, self.task = plan, config, fold, task
        self.seed_fold = (
            fold if fold >= 0 else 999
        )  # seeds take no negative numbers (the all-data fold is -1)
        cfgp = effective_plan(plan, config).configurations[config.configuration]
        self.out = WorkDir(workdir).fold(config.configuration, fold)
        self.out.mkdir(parents=True, exist_ok=True)
        self.dev = usable_device(device)
        torch.manual_seed(config.seed * 1000 + self.seed_fold)
        self.model = task.build_network(plan, cfgp, config).to(self.dev)
        # the optimizer is final once the schedule is laid out (resolve_optimizer); until then a provisional one
        name0, self.lr_0, _ = resolve_optimizer(config, config.epochs * config.iterations_per_epoch)
        self.opt = make_optimizer(name0, self.lr_0, config, self.model.parameters())
        self.amp_dtype = autocast_dtype(self.dev, config.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.loss_fn = task.build_loss(plan, cfgp, config)
        self.t_start = time.perf_counter()
        previous = WorkDir(workdir).previous_stage if cfgp.previous_stage else None  # a cascade's extra input
        self.store = CaseStore(
            workdir / "preprocessed" / cfgp.data_identifier, sorted(set(train_ids) | set(val_ids)), previous
        )
        self.n_classes = cfgp.network.n_classes
        res = resolve_training(plan, config)
        self.batch_size = res.batch_size
        self.spec = SamplerSpec(
            res.patch_size,
            res.batch_size,
            res.foreground_oversample,
            self.n_classes,
            cfgp.spacing,
            task.augmentation(plan, config),
        )
        self.val_spec = SamplerSpec(
            res.patch_size, res.batch_size, res.foreground_oversample, self.n_classes, cfgp.spacing, None
        )
        chosen = workers if workers is not None else config.num_workers
        self.workers: int = min(2, max(0, (os.cpu_count() or 1) - 1)) if chosen is None else chosen
        self.train_cases = sorted(train_ids)
        self.val_cases = sorted(val_ids) or self.train_cases
        self.st = TrainState()
        self.probed_step_s: float | None = None  # a budgeted fresh fold's timed probe

    # -- checkpoints ------------------------------------------------------------------------------------------

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict(),
            "state": self.st.to_dict(),
            "config_digest": self.config.digest(),
            "plan_hash": self.plan.hash,
            "fold": self.fold,
            "configuration": self.config.configuration,
        }

    def restore(self, extend_epochs: int) -> None:
        """Continue from ``checkpoint_latest.pt`` (resume) or add ``extend_epochs`` after ``checkpoint_final.pt``."""
        ck = load_checkpoint(self.out / ("checkpoint_final.pt" if extend_epochs else "checkpoint_latest.pt"))
        if ck.get("config_digest") != self.config.digest() or ck.get("plan_hash") != self.plan.hash:
            raise ArtifactError.single(
                self.out,
                "resume needs the same plan and training config",
                "checkpoint from another plan/config",
                "start a new training work dir",
            )
        self.model.load_state_dict(ck["model"])
        st = self.st = TrainState.from_dict(ck["state"])
        self.opt = make_optimizer(st.optimizer, st.lr0, self.config, self.model.parameters())
        self.opt.load_state_dict(ck["optimizer"])
        if ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        if extend_epochs:
            extend(st, extend_epochs, self.config.extend_lr_factor)

    # -- one step, the schedule ---------------------------------------------------------------------------------

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        st, opt = self.st, self.opt
        lr = (
            learning_rate(self.config.schedule, st.phases, st.iteration, self.config.poly_exponent)
            if st.phases
            else st.lr0 or self.lr_0
        )
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = x.to(self.dev, non_blocking=True), y.to(self.dev, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(
            self.dev.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        ):
            outputs = self.model(x)
        loss = self.loss_fn(outputs, y)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(opt)
        self.scaler.update()
        st.iteration += 1
        return float(loss.detach())

    def probe_step_seconds(self) -> float:
        """Seconds per training step (data waiting included), timed on a few real steps; the weights and the
        iteration count start again from where they were (the probe only measures; the schedule makes a new optimizer)."""
        initial = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        probe = self.task.batches(
            self.plan,
            self.store,
            self.train_cases,
            self.spec,
            5,
            (self.config.seed, self.seed_fold, 2**31 - 1),
        )
        times = []
        self.model.train()
        t0 = time.perf_counter()
        for x, y in make_loader(probe, self.workers):  # the real loader: data waiting is part of a step
            self.step(x, y)
            times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
        self.model.load_state_dict(initial)
        self.st.iteration = 0
        return float(np.median(times[1:])) * 1.05

    def lay_schedule(self, budget_s: float | None, validation_passes: int) -> float:
        """Fix a fresh fold's schedule (from a timed probe when there is a budget, see
        :func:`~automed.train.fold_schedule.lay_out`) and its optimizer; the validation reserve (s)."""
        budget = None
        if budget_s is not None:
            step_s = self.probed_step_s = self.probe_step_seconds()
            budget = (budget_s, step_s, time.perf_counter() - self.t_start)
            self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        val_reserve = lay_out(self.st, self.config, budget, self.batch_size, validation_passes)
        self.opt = make_optimizer(self.st.optimizer, self.st.lr0, self.config, self.model.parameters())
        return val_reserve

    def refit(self, deadline: float) -> bool:
        """Re-fit the schedule to measured epochs so it ends at ``deadline``; ``False`` when the budget is used up."""
        return refit(self.st, self.config.epochs, deadline - time.perf_counter())

    # -- one epoch -------------------------------------------------------------------------------------------------

    def train_epoch(self, stop_at: float | None = None) -> tuple[list[float], float, float]:
        """Losses, data-wait seconds and training seconds of one epoch; past ``stop_at`` (a budget's hard end) the
        epoch ends after the step in flight, noted in the schedule's reason."""
        st = self.st
        self.model.train()
        t0 = time.perf_counter()
        # the network's own randomness (dropout) follows (seed, fold, epoch) like the batches, so a resumed epoch
        # replays it even when loader processes draw the batches (the main process's generator is not checkpointed)
        epoch_rng = np.random.default_rng([self.config.seed + 15485863, self.seed_fold, st.epoch])
        torch.manual_seed(int(epoch_rng.integers(2**31)))
        last = st.epoch == st.epochs_total - 1 and st.last_epoch_iterations
        n_iterations = st.last_epoch_iterations if last else st.iterations_per_epoch
        stream = self.task.batches(
            self.plan,
            self.store,
            self.train_cases,
            self.spec,
            n_iterations,
            (self.config.seed, self.seed_fold, st.epoch),
        )
        losses, wait = [], 0.0
        t_wait = time.perf_counter()
        for x, y in make_loader(stream, self.workers):
            wait += time.perf_counter() - t_wait
            losses.append(self.step(x, y))
            stop.check()  # a SIGTERM whose exception Python dropped while the loader forked its workers
            t_wait = time.perf_counter()
            if stop_at is not None and t_wait >= stop_at and len(losses) < n_iterations:
                st.epochs_total = st.epoch + 1  # this epoch is the last, and its last step the schedule's end
                ph, step_s = st.phases[-1], (t_wait - t0) / len(losses)
                st.phases[-1] = Phase(ph.start, st.iteration - ph.start, ph.lr0)
                st.schedule_reason += cut_reason(
                    st.epoch + 1, len(losses), n_iterations, step_s, self.probed_step_s
                )
                break
        return losses, wait, time.perf_counter() - t0

    def validate_epoch(self) -> tuple[list[float], float, list[float]]:
        """Validation losses, the task's per-class epoch score and its mean on random validation patches."""
        self.recompute_batch_norm()
        self.model.eval()
        scorer = self.task.epoch_scorer(self.plan, self.n_classes)
        vlosses = []
        seed = (self.config.seed + 7919, self.seed_fold, self.st.epoch)
        vstream = self.task.batches(
            self.plan, self.store, self.val_cases, self.val_spec, self.st.val_iterations, seed
        )
        with torch.no_grad():
            for x, y in make_loader(vstream, 0):
                x, y = x.to(self.dev), y.to(self.dev)
                with torch.autocast(
                    self.dev.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
                ):
                    logits = self.model(x)
                assert isinstance(logits, torch.Tensor)
                vlosses.append(float(self.loss_fn(logits, y)))
                scorer.add(logits.float(), y)
        per_class, mean = scorer.result()
        return vlosses, mean, per_class

    def recompute_batch_norm(self) -> None:
        """A batch-normalized network's statistics for its current weights, from about one pass over the training
        cases without augmentation (at most 50 batches; seeded by epoch): see :mod:`automed.train.precise_bn`."""
        if not batch_norm_layers(self.model):
            return
        n = min(50, -(-len(self.train_cases) // self.batch_size))
        seed = (self.config.seed + 104729, self.seed_fold, self.st.epoch)
        stream = self.task.batches(self.plan, self.store, self.train_cases, self.val_spec, n, seed)
        recompute_batch_norm(self.model, (x for x, _ in make_loader(stream, 0)), self.dev)

    def end_epoch(
        self, t_epoch: float, losses: list[float], wait: float, train_time: float, callback: Callback | None
    ) -> None:
        """Validate, update the EMA and early stopping, log the epoch, write checkpoints and progress."""
        st, config = self.st, self.config
        vlosses, mean, per_class = self.validate_epoch()
        improved = st.record_score(mean, config.ema_decay)
        st.epoch += 1
        log = EpochLog(
            st.epoch,
            float(np.mean(losses)),
            float(np.mean(vlosses)),
            per_class,
            mean,
            float(st.ema if st.ema is not None else 0.0),  # set by record_score
            float(self.opt.param_groups[0]["lr"]),
            time.perf_counter() - t_epoch,
            wait / max(train_time, 1e-9),
            st.iteration,
            st.epochs_total,
            st.phases[-1].start + st.phases[-1].length if st.phases else st.iteration,
        )
        st.history.append(log)
        if config.early_stopping_patience and st.epochs_without_improvement >= config.early_stopping_patience:
            st.stopped_early = True
        state = self.checkpoint_state()
        save_checkpoint(self.out / "checkpoint_latest.pt", state)
        if improved:
            save_checkpoint(self.out / "checkpoint_best.pt", state)
        st.write_progress(self.out)
        if callback is not None:
            callback.on_epoch_end(self.fold, log)

    def finish(self) -> FoldResult:
        save_checkpoint(self.out / "checkpoint_final.pt", self.checkpoint_state())
        self.st.write_progress(self.out, finished=True)
        return self.st.result(self.fold, self.out)


def step_seconds(
    workdir: Path,
    plan: Plan,
    config: TrainConfig,
    train_ids: list[str],
    val_ids: list[str],
    *,
    task: Task,
    device: str | None = None,
    workers: int | None = None,
) -> float:
    """Seconds per training step of fold 0's model and data on this machine (a probe before deciding how many
    folds a budget can train)."""
    with deterministic_mode(config.deterministic):
        return FoldTrainer(
            workdir, plan, config, 0, train_ids, val_ids, task, device, workers
        ).probe_step_seconds()


def train_fold(
    workdir: Path,
    plan: Plan,
    config: TrainConfig,
    fold: int,
    train_ids: list[str],
    val_ids: list[str],
    *,
    task: Task,
    budget_s: float | None = None,
    device: str | None = None,
    resume: bool = False,
    extend_epochs: int = 0,
    callback: Callback | None = None,
    workers: int | None = None,
    validation_passes: int = 0,
) -> FoldResult:
    """Train one fold and return its result; see the module docstring for the lifecycle."""
    with deterministic_mode(config.deterministic):
        return _drive(
            FoldTrainer(workdir, plan, config, fold, train_ids, val_ids, task, device, workers),
            budget_s, resume, extend_epochs, callback, validation_passes,
        )  # fmt: skip


def _drive(
    ft: FoldTrainer,
    budget_s: float | None,
    resume: bool,
    extend_epochs: int,
    callback: Callback | None,
    validation_passes: int,
) -> FoldResult:
    """The epochs of one fold: restore or lay the schedule, train until done, stopped early or out of budget."""
    if resume or extend_epochs:
        ft.restore(extend_epochs)
    val_reserve = ft.lay_schedule(budget_s, validation_passes) if not ft.st.phases else 0.0
    deadline = stop_at = None
    if budget_s is not None:  # a resumed or extended fold too (it had run on past `--resume --budget`'s end)
        deadline = ft.t_start + budget_s - val_reserve
        # the re-fit at each epoch's start keeps the fold inside its budget while the machine runs about as fast as
        # probed; a machine slowed down mid-epoch (other jobs, thermal limits) is cut short a little past the end
        stop_at = deadline + max(1.0, HARD_STOP_GRACE * budget_s)
    st = ft.st
    while st.epoch < st.epochs_total and not st.stopped_early:
        if deadline is not None and st.history and not ft.refit(deadline):
            break  # never overrun the fold's budget
        t_epoch = time.perf_counter()
        losses, wait, train_time = ft.train_epoch(stop_at)
        ft.end_epoch(t_epoch, losses, wait, train_time, callback)
    return ft.finish()
