"""Unit tests of training pieces that the end-to-end tests only cover indirectly: the patch sampler's forced
foreground (and its independence of the worker count), deep-supervision weights and targets, and the early-stopping
rule on the EMA of the pseudo-Dice. Expected values are worked out by hand in the comments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from automed.tasks.registry import task_for
from automed.train.config import Augmentation, TrainConfig
from automed.train.data import (
    BatchStream,
    CaseArrays,
    CaseStore,
    SamplerSpec,
    make_loader,
    n_forced,
    sample_patch,
)
from automed.train.losses import DeepSupervisionLoss, build_loss, deep_supervision_weights, downsample_target
from automed.train.state import FoldResult, load_checkpoint
from automed.train.trainer import train_fold

# --- sampler -------------------------------------------------------------------------------------------------------

SHAPE = (12, 20, 20)  # (z, y, x) of every synthetic case
PATCH = [4, 8, 8]
CASE_CODE = {
    "a": 1.0,
    "b": 2.0,
    "empty": 3.0,
}  # channel 0 of each case is this constant: tells the case of a patch


def _position_code(shape: tuple[int, ...]) -> np.ndarray:
    """Channel 1: the voxel's (z, y, x) as z * 10000 + y * 100 + x, so a patch's first voxel gives its corner."""
    zz, yy, xx = np.indices(shape)
    out: np.ndarray = (zz * 10000 + yy * 100 + xx).astype(np.float32)
    return out


def _corner(code: float) -> tuple[int, int, int]:
    c = round(code)
    return c // 10000, (c // 100) % 100, c % 100


def _case(cid: str, foreground: dict[int, tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    seg = np.zeros(SHAPE, np.int16)
    for k, voxel in foreground.items():
        seg[voxel] = k
    data = np.stack([np.full(SHAPE, CASE_CODE[cid], np.float32), _position_code(SHAPE)])
    return data, seg


# one foreground voxel per case: "a" holds class 1 inside the image, "b" class 2 in a corner, "empty" nothing
FOREGROUND = {"a": {1: (6, 10, 10)}, "b": {2: (11, 19, 0)}, "empty": {}}
# where a patch centred on that voxel starts: voxel - patch // 2, clamped to [0, shape - patch] on each axis
#   a: (6-2, 10-4, 10-4) = (4, 6, 6), inside [0, (8, 12, 12)]      -> voxel at (2, 4, 4) in the patch
#   b: (11-2, 19-4, 0-4) = (9, 15, -4) -> clamped to (8, 12, 0)     -> voxel at (3, 7, 0) in the patch
FORCED_CORNER = {"a": (4, 6, 6), "b": (8, 12, 0)}
VOXEL_IN_PATCH = {"a": (2, 4, 4), "b": (3, 7, 0)}
CLASS_OF = {"a": 1, "b": 2}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> CaseStore:
    """A folder written like the preprocessed cache (``<case>.npz`` with data, seg and ``loc_<k>``)."""
    folder = tmp_path_factory.mktemp("cache")
    for cid, fg in FOREGROUND.items():
        data, seg = _case(cid, fg)
        locs = {f"loc_{k}": np.argwhere(seg == k).astype(np.int32) for k in fg}
        np.savez_compressed(folder / f"{cid}.npz", data=data, seg=seg, **locs)
    return CaseStore(folder, list(FOREGROUND))


def _spec(batch_size: int, oversample: float, augment: Augmentation | None = None) -> SamplerSpec:
    return SamplerSpec(PATCH, batch_size, oversample, 3, [1.0, 1.0, 1.0], augment)


def _batches(stream: BatchStream, workers: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(make_loader(stream, workers))


@pytest.mark.parametrize(
    ("batch_size", "oversample", "expected"),
    [
        (2, 0.33, 1),  # ceil(0.66)
        (3, 0.33, 1),  # ceil(0.99)
        (3, 1 / 3, 1),  # exactly one third: rounding noise must not give 2
        (4, 0.33, 2),  # ceil(1.32)
        (10, 0.5, 5),
        (5, 1.0, 5),
        (7, 0.01, 1),  # any positive fraction forces at least one
        (1, 0.33, 1),
        (5, 0.0, 0),
    ],
)
def test_n_forced(batch_size: int, oversample: float, expected: int) -> None:
    assert n_forced(batch_size, oversample) == expected


def test_store_unpacks_the_cache_layout(store: CaseStore) -> None:
    a = store.get("a")
    assert a.data.shape == (2, *SHAPE) and a.seg.shape == SHAPE
    assert set(a.locs) == {1} and a.locs[1].tolist() == [[6, 10, 10]]
    assert store.get("empty").locs == {}
    for cid in FOREGROUND:
        assert (store.folder / f"{cid}.done").is_file()


def test_last_samples_of_each_batch_are_centred_on_foreground(store: CaseStore) -> None:
    """Batch 4 with oversample 0.5: samples 2 and 3 are centred on a foreground voxel of their own case."""
    bs = 4
    forced = n_forced(bs, 0.5)
    assert forced == 2
    stream = BatchStream(store, ["a", "b"], _spec(bs, 0.5), 25, (0, 0, 0))
    seen: set[str] = set()
    random_with_fg = 0
    for x, y in _batches(stream, 0):
        assert x.shape == (bs, 2, *PATCH) and y.shape == (bs, 1, *PATCH)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        for j in range(bs):
            cid = {v: k for k, v in CASE_CODE.items()}[float(x[j, 0, 0, 0, 0])]
            labels = set(torch.unique(y[j]).tolist())
            assert labels <= {0, CLASS_OF[cid]}  # a patch only holds classes of its own case
            if j >= bs - forced:
                seen.add(cid)
                assert _corner(float(x[j, 1, 0, 0, 0])) == FORCED_CORNER[cid]
                assert int(y[(j, 0, *VOXEL_IN_PATCH[cid])]) == CLASS_OF[cid]
            else:
                random_with_fg += labels != {0}
    assert seen == {"a", "b"}
    # a random 4x8x8 patch holds case a's voxel with probability 4/9 * (8/13)^2 = 0.17 (b's: under 0.001),
    # so without the forcing most patches would be background
    assert random_with_fg < 0.5 * 25 * (bs - forced)


def test_case_without_foreground_falls_back_to_a_random_patch(store: CaseStore) -> None:
    empty = store.get("empty")
    rng = np.random.default_rng(0)
    corners = set()
    for _ in range(30):
        data, seg, _ = sample_patch(rng, empty, _spec(2, 1.0), PATCH, force_fg=True)
        assert data.shape == (2, *PATCH) and seg.shape == tuple(PATCH)
        assert not seg.any()
        z, y, x = _corner(float(data[1, 0, 0, 0]))
        assert 0 <= z <= 8 and 0 <= y <= 12 and 0 <= x <= 12  # the patch lies inside the image
        corners.add((z, y, x))
    assert len(corners) > 10  # random, not one fixed position
    # a class listed with no voxels is no foreground either
    no_voxels = CaseArrays(empty.data, empty.seg, {1: np.zeros((0, 3), np.int32)})
    _, seg, _ = sample_patch(np.random.default_rng(1), no_voxels, _spec(2, 1.0), PATCH, force_fg=True)
    assert seg.shape == tuple(PATCH)
    # and a whole stream over the empty case with every sample forced runs
    batches = _batches(BatchStream(store, ["empty"], _spec(3, 1.0), 3, (1, 2, 3)), 0)
    assert len(batches) == 3 and all(not y.any() for _, y in batches)


def test_axis_shorter_than_the_patch_is_padded_around_the_forced_voxel() -> None:
    """Depth 2 < patch depth 4: the patch may start at z = -2..0; centred on z = 1 it starts at -1 (voxel at 2)."""
    seg = np.zeros((2, 20, 20), np.int16)
    seg[1, 5, 5] = 1
    data = np.ones((1, *seg.shape), np.float32)
    case = CaseArrays(data, seg, {1: np.array([[1, 5, 5]], np.int32)})
    d, s, _ = sample_patch(np.random.default_rng(0), case, _spec(1, 1.0), PATCH, force_fg=True)
    assert s[2, 4, 4] == 1  # lower = (1-2, 5-4, 5-4) = (-1, 1, 1)
    assert not d[:, 0].any() and not d[:, 3].any() and d[:, 1:3].all()  # z rows -1 and 2 are padding


def test_2d_patches_are_slices_centred_on_foreground(store: CaseStore) -> None:
    spec = SamplerSpec([8, 8], 2, 0.5, 3, [1.0, 1.0], None)
    for x, y in _batches(BatchStream(store, ["a"], spec, 5, (0, 1, 2)), 0):
        assert x.shape == (2, 2, 8, 8) and y.shape == (2, 1, 8, 8)
        assert _corner(float(x[1, 1, 0, 0])) == (6, 6, 6)  # the slice of the voxel, y and x as in 3D
        assert int(y[1, 0, 4, 4]) == 1


def test_batches_depend_on_the_seed_not_on_the_worker_count(store: CaseStore) -> None:
    """With augmentation on: batch b comes from rng(seed, b) whichever worker draws it, in order."""
    spec = _spec(3, 0.33, Augmentation())
    seed = (7, 1, 4)
    alone = _batches(BatchStream(store, ["a", "b", "empty"], spec, 6, seed), 0)
    two = _batches(BatchStream(store, ["a", "b", "empty"], spec, 6, seed), 2)
    assert len(alone) == len(two) == 6
    for (xa, ya), (xb, yb) in zip(alone, two, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    other = _batches(BatchStream(store, ["a", "b", "empty"], spec, 6, (7, 1, 5)), 0)
    assert not all(torch.equal(xa, xo) for (xa, _), (xo, _) in zip(alone, other, strict=True))


# --- deep supervision ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1, [1.0]),
        (2, [1.0, 0.0]),  # 1, 1/2 -> the lowest gets 0 -> [1, 0] / 1
        (3, [2 / 3, 1 / 3, 0.0]),  # 1, 1/2, 0 over 1.5
        (4, [4 / 7, 2 / 7, 1 / 7, 0.0]),  # 1, 1/2, 1/4, 0 over 1.75
        (5, [8 / 15, 4 / 15, 2 / 15, 1 / 15, 0.0]),  # over 1.875
    ],
)
def test_deep_supervision_weights(n: int, expected: list[float]) -> None:
    w = deep_supervision_weights(n)
    assert w == pytest.approx(expected, abs=1e-12)
    assert sum(w) == pytest.approx(1.0)


def test_downsample_target_uses_cumulative_strides() -> None:
    t = torch.arange(8 * 8 * 8).reshape(1, 1, 8, 8, 8)
    strides = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]
    out = downsample_target(t, strides, 3)
    assert len(out) == 3
    assert out[0] is t
    # cumulative strides (1, 2, 2) then (2, 4, 4): nearest = every c-th voxel from the first
    assert out[1].shape == (1, 1, 8, 4, 4) and torch.equal(out[1], t[:, :, :, ::2, ::2])
    assert out[2].shape == (1, 1, 4, 2, 2) and torch.equal(out[2], t[:, :, ::2, ::4, ::4])
    assert int(out[2][0, 0, 1, 1, 1]) == 2 * 64 + 4 * 8 + 4  # voxel (2, 4, 4)
    # 2D, with the batch axis kept
    t2 = torch.arange(2 * 6 * 6).reshape(2, 1, 6, 6)
    out2 = downsample_target(t2, [[1, 1], [3, 2]], 2)
    assert out2[1].shape == (2, 1, 2, 3) and torch.equal(out2[1], t2[:, :, ::3, ::2])


def test_deep_supervision_loss_weights_each_output_against_its_target() -> None:
    calls: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def base(o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append((tuple(o.shape), tuple(t.shape)))
        return o.float().mean()

    strides = [[1, 1, 1], [2, 2, 2], [2, 2, 2]]
    loss = DeepSupervisionLoss(base, strides)
    target = torch.zeros(2, 1, 8, 8, 8, dtype=torch.long)
    outs = [torch.full((2, 3, 8 // s, 8 // s, 8 // s), v) for s, v in ((1, 1.0), (2, 4.0), (4, 100.0))]
    # weights 2/3, 1/3, 0: 2/3 * 1 + 1/3 * 4 = 2; the lowest output (100) does not count and is not evaluated
    assert float(loss(outs, target)) == pytest.approx(2.0)
    assert calls == [((2, 3, 8, 8, 8), (2, 1, 8, 8, 8)), ((2, 3, 4, 4, 4), (2, 1, 4, 4, 4))]
    # a single tensor (no deep supervision, or eval mode) goes straight to the base loss
    calls.clear()
    assert float(loss(torch.full((2, 3, 8, 8, 8), 5.0), target)) == pytest.approx(5.0)
    assert calls == [((2, 3, 8, 8, 8), (2, 1, 8, 8, 8))]


def test_deep_supervision_loss_of_a_perfect_prediction_is_near_zero() -> None:
    target = torch.zeros(1, 1, 8, 8, 8, dtype=torch.long)
    target[:, :, 2:6, 2:6, 2:6] = 1
    targets = downsample_target(target, [[1, 1, 1], [2, 2, 2]], 2)
    outs = [torch.cat([(t == 0).float(), (t == 1).float()], 1) * 40 - 20 for t in targets]
    loss = build_loss("dice_ce", batch_dice=True, strides=[[1, 1, 1], [2, 2, 2]])
    assert float(loss(outs, target)) < 1e-4
    wrong = [o.flip(1) for o in outs]  # every voxel confidently wrong
    assert float(loss(wrong, target)) > 10


# --- early stopping ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A tiny planned and preprocessed synthetic dataset whose last case has its foreground removed."""
    from automed import api
    from automed.testing.synthetic import make_dataset

    root = tmp_path_factory.mktemp("early")
    ds = make_dataset(root / "ds", n_cases=4, shape=(12, 16, 14), seed=1)
    wd = root / "W"
    api.plan_dataset(ds, wd, preset="cpu", workers=1, show_progress=False)
    cache = wd / "preprocessed" / api.plan(wd).configurations["3d_fullres"].data_identifier
    ids = sorted(p.stem for p in cache.glob("*.npz"))
    assert len(ids) == 4
    with np.load(cache / f"{ids[-1]}.npz") as z:
        data, seg = z["data"], z["seg"]
    np.savez_compressed(cache / f"{ids[-1]}.npz", data=data, seg=np.zeros_like(seg))  # no loc_<k> either
    return wd, ids


def _train(
    wd: Path, fold: int, val: list[str], ids: list[str], **kw: object
) -> tuple[FoldResult, dict[str, Any]]:
    from automed import api

    cfg = TrainConfig.model_validate(
        {"iterations_per_epoch": 1, "val_iterations": 1, "batch_size": 2, "num_workers": 0, **kw}
    )
    train = [c for c in ids if c not in val]
    plan = api.plan(wd)
    res = train_fold(wd, plan, cfg, fold, train, val, task=task_for(plan.task_type, wd), workers=0)
    progress = json.loads((res.folder / "progress.json").read_text())
    return res, progress


def test_early_stopping_after_patience_epochs_without_ema_improvement(
    planned: tuple[Path, list[str]],
) -> None:
    """Validation on a case without foreground: every pseudo-Dice is 0 (a class predicted) or undefined, so the EMA
    is 0 from the first epoch on. Epoch 1 improves on the start (-1); epochs 2 and 3 do not, and with patience 2
    training stops after epoch 3."""
    wd, ids = planned
    res, progress = _train(wd, 0, [ids[-1]], ids, epochs=8, early_stopping_patience=2)
    assert res.epochs == 3 and res.stopped_early
    assert progress["stopped_early"] is True and progress["finished"] is True
    hist = progress["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert all(h["val_score_ema"] == 0.0 for h in hist)
    assert all(h["val_score"] is None or not h["val_score"] > 0 for h in hist)  # 0, or NaN/null: undefined
    assert load_checkpoint(res.folder / "checkpoint_best.pt")["state"]["epoch"] == 1  # the only improvement
    last = load_checkpoint(res.folder / "checkpoint_latest.pt")["state"]
    assert last["epoch"] == 3 and last["epochs_without_improvement"] == 2


@pytest.mark.slow  # about 5 s (a process pool; a short training): make test-fast stays under 3 minutes
def test_an_epoch_slowed_past_the_budget_is_cut_short_not_run_to_its_end(
    planned: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The budget re-fits the schedule at each epoch's start; a machine that slows down after the probe (other jobs
    on the node) used to run the whole epoch past the budget. A probe of 0.01 s per step, steps of 0.25 s: the first
    epoch stops a little past the budget, is validated and closes the fold, and the reason says why."""
    import time

    from automed.train import trainer

    step = trainer.FoldTrainer.step

    def slowed(self: trainer.FoldTrainer, x: torch.Tensor, y: torch.Tensor) -> float:
        time.sleep(0.25)
        return step(self, x, y)

    monkeypatch.setattr(
        trainer.FoldTrainer, "probe_step_seconds", lambda self: 0.01
    )  # the probe saw a fast node
    monkeypatch.setattr(trainer.FoldTrainer, "step", slowed)
    wd, ids = planned
    cfg = TrainConfig.model_validate(
        {"iterations_per_epoch": 400, "val_iterations": 1, "batch_size": 2, "num_workers": 0, "epochs": 2}
    )
    plan = __import__("automed.api", fromlist=["plan"]).plan(wd)
    t0 = time.perf_counter()
    res = train_fold(
        wd, plan, cfg, 2, ids[:-1], [ids[-1]], task=task_for(plan.task_type, wd), budget_s=3.0, workers=0
    )
    progress = json.loads((res.folder / "progress.json").read_text())
    assert progress["finished"] is True and len(progress["history"]) == 1
    per_epoch = load_checkpoint(res.folder / "checkpoint_final.pt")["state"]["iterations_per_epoch"]
    done = progress["history"][0]["iterations"]
    assert per_epoch > 20  # uncut, the epoch would have run over 5 s past the budget
    assert 0 < done < per_epoch and progress["history"][0]["planned_epochs"] == 1
    assert (
        progress["history"][0]["planned_iterations"] == done
    )  # the display's "it N/N", not N of the old plan
    assert f"stopped in epoch 1 after {done} of its {per_epoch} iterations" in progress["schedule"]
    assert time.perf_counter() - t0 < 3.0 + 1.0 + per_epoch * 0.25  # not the whole epoch


def test_an_extended_or_resumed_fold_keeps_to_the_budget_it_is_given(
    planned: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`automed train --resume --budget X` (or `--extend N --budget X`): a resumed or extended fold had no deadline
    and trained to its schedule's end (55 s past a 20 s budget in review), leaving the folds after it 10 s each."""
    import time

    from automed import api
    from automed.train import trainer

    wd, ids = planned
    _train(wd, 4, [ids[-1]], ids, epochs=1)
    step = trainer.FoldTrainer.step

    def slowed(self: trainer.FoldTrainer, x: torch.Tensor, y: torch.Tensor) -> float:
        time.sleep(0.2)
        return step(self, x, y)

    monkeypatch.setattr(trainer.FoldTrainer, "step", slowed)
    cfg = TrainConfig.model_validate(
        {"iterations_per_epoch": 1, "val_iterations": 1, "batch_size": 2, "num_workers": 0, "epochs": 1}
    )
    plan = api.plan(wd)
    res = train_fold(wd, plan, cfg, 4, ids[:-1], [ids[-1]], task=task_for(plan.task_type, wd), budget_s=1.0,
                     extend_epochs=20, workers=0)  # fmt: skip
    history = json.loads((res.folder / "progress.json").read_text())["history"]
    assert 1 < len(history) < 1 + 20, len(history)  # a few epochs in its second, not all twenty


def test_patience_zero_disables_early_stopping(planned: tuple[Path, list[str]]) -> None:
    wd, ids = planned
    res, progress = _train(wd, 1, [ids[-1]], ids, epochs=4, early_stopping_patience=0)
    assert res.epochs == 4 and not res.stopped_early
    assert progress["stopped_early"] is False and len(progress["history"]) == 4


def test_ema_follows_its_recurrence_and_the_stop_follows_the_rule(planned: tuple[Path, list[str]]) -> None:
    """On validation with foreground: EMA_1 = d_1, EMA_t = 0.5 EMA_(t-1) + 0.5 d_t (d: the mean of the classes'
    pseudo-Dice); training stops at the first epoch that ends ``patience`` epochs in a row without a new best EMA
    (or runs all epochs)."""
    wd, ids = planned
    epochs, patience, decay = 6, 1, 0.5
    # (with this seed the EMA dipped at epoch 2 and training stopped there when written; the check holds either way)
    res, progress = _train(
        wd, 2, [ids[0]], ids, epochs=epochs, early_stopping_patience=patience, ema_decay=decay, seed=2
    )
    hist = progress["history"]
    ema, best, without, stop = None, -1.0, 0, None
    for h in hist:
        defined = [v for v in h["val_per_class"] if v is not None and not np.isnan(v)]
        assert defined  # every validation batch has a patch forced onto the case's foreground
        mean = float(np.mean(defined))
        assert h["val_score"] == pytest.approx(mean)
        ema = mean if ema is None else decay * ema + (1 - decay) * mean
        assert h["val_score_ema"] == pytest.approx(ema)
        without = 0 if ema > best else without + 1
        best = max(best, ema)
        if without >= patience and stop is None:
            stop = h["epoch"]
    expected = stop if stop is not None else epochs
    assert len(hist) == expected and res.epochs == expected
    assert progress["stopped_early"] is (stop is not None)


def test_augmented_patches_reach_every_border_and_keep_the_forced_voxel() -> None:
    """With augmentation the sampler crops an enlarged region and the network patch is its centre: that centre must
    reach the image's borders (the enlarged crop then extends past the image, padded) and hold the forced voxel even
    next to a border (the crop was kept inside the image, so a border band never reached the network and a voxel
    near the border fell outside the patch)."""
    from automed.train.augment import center_crop

    shape, patch, crop = (20, 60, 20), [8, 16, 8], [12, 26, 12]
    seg = np.zeros(shape, np.int16)
    seg[10, 2, 10] = 1
    ys = np.broadcast_to(
        np.arange(1, shape[1] + 1, dtype=np.float32)[None, :, None], shape
    )  # row + 1; padding 0
    case = CaseArrays(ys[None].copy(), seg, {1: np.array([[10, 2, 10]], np.int32)})
    spec = SamplerSpec(patch, 1, 1.0, 2, [1.0, 1.0, 1.0], Augmentation())
    rng = np.random.default_rng(0)
    seen_y: set[int] = set()
    for _ in range(400):
        d, _, _ = sample_patch(rng, case, spec, crop, force_fg=False)
        inner = center_crop(d, patch)
        seen_y |= {int(v) for v in np.unique(inner[0, :, :, :])}
    assert seen_y == set(range(1, shape[1] + 1))  # every row, both borders included, and no padding inside
    _, s, _ = sample_patch(rng, case, spec, crop, force_fg=True)
    assert center_crop(s, patch).any()  # the forced voxel two rows from the border is in the network patch


def test_the_first_epoch_sets_the_best_score_mark() -> None:
    """An R² can start below -1 (the old floor): the first epoch is the best so far, later ones improve on it; an
    undefined epoch leaves the EMA as it was, and after an undefined first epoch the first defined score starts the
    EMA and sets the mark (not the placeholder 0)."""
    from automed.train.state import EpochLog, TrainState

    def run(scores: list[float]) -> tuple[list[bool], TrainState]:
        st, marks = TrainState(), []
        for score in scores:
            marks.append(st.record_score(score, 0.9))
            st.epoch += 1
            st.history.append(EpochLog(st.epoch, 0.0, 0.0, [], score, st.ema or 0.0, 0.0, 0.0, 0.0, 0))
        return marks, st

    marks, st = run([-3.0, -3.5, float("nan"), -1.0])
    assert marks == [True, False, False, True]
    assert st.best_ema == pytest.approx(0.9 * (0.9 * -3.0 + 0.1 * -3.5) + 0.1 * -1.0)
    assert st.epochs_without_improvement == 0
    marks, st = run([float("nan"), -3.0, -2.5])
    assert marks == [True, True, True] and st.best_ema == pytest.approx(0.9 * -3.0 + 0.1 * -2.5)


def test_a_resumed_epoch_replays_the_networks_randomness_with_loader_processes(tmp_path: Path) -> None:
    """Dropout draws from the main process's generator, which is not checkpointed: with batches drawn in a loader
    process nothing reseeded it, so a fold resumed after a kill trained on with other dropout masks."""
    import shutil

    from automed import api
    from automed.testing.synthetic_image_level import make_classification

    csv = make_classification(tmp_path / "d", 8, shape=(16, 16))
    api.plan_dataset(csv, tmp_path / "A", workers=1, show_progress=False)
    shutil.copytree(tmp_path / "A", tmp_path / "B")
    plan = api.plan(tmp_path / "A")
    (conf,) = plan.configurations
    ids = sorted(p.stem for p in (tmp_path / "A" / "preprocessed").glob("*/*.npz"))
    assert len(ids) == 8
    cfg = TrainConfig.model_validate(
        {"epochs": 2, "iterations_per_epoch": 2, "val_iterations": 1, "batch_size": 2, "configuration": conf}
    )

    class Kill:  # after the first epoch: the resumed run trains the second one on the generator it reseeds
        def on_epoch_end(self, fold: int, log: Any) -> None:
            if log.epoch == 1:
                raise KeyboardInterrupt

    def run(wd: Path, **kw: Any) -> FoldResult:
        return train_fold(
            wd, plan, cfg, 0, ids[:6], ids[6:], task=task_for(plan.task_type, wd), workers=1, **kw
        )

    whole = run(tmp_path / "A")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "B", callback=Kill())
    resumed = run(tmp_path / "B", resume=True)
    a = torch.load(whole.folder / "checkpoint_final.pt", weights_only=True)["model"]
    b = torch.load(resumed.folder / "checkpoint_final.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
