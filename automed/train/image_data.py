"""Batches of whole images for image-level tasks (classification, regression).

Each image is cropped or padded around its centre to the plan's input shape (training: shifted at random by up to a
tenth of the input edge, and augmented with the same torchio pipeline as segmentation); the target is the task's
encoding of the case's ValueToPredict (a class index, or the standardized value). Training batches draw cases at
random from ``rng(seed, fold, epoch, batch)``; validation goes through every case once, in order.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from automed.train.augment import build_augmentation, center_crop, enlarged_patch
from automed.train.data import CaseArrays, CaseStore, SamplerSpec, augment_image, crop_padded


def whole_image(rng: np.random.Generator | None, case: CaseArrays, size: list[int]) -> np.ndarray:
    """``(C, *size)`` from the case's data (3 axes; 2D images use depth 1): centred, or shifted when ``rng`` is given."""
    shape = list(case.data.shape[1:])
    lower = []
    for s, n in zip(shape, size, strict=True):
        centre = (s - n) // 2
        j = n // 10 if rng is not None and n > 1 else 0
        lower.append(centre + (int(rng.integers(-j, j + 1)) if rng is not None and j else 0))
    return crop_padded(np.asarray(case.data), lower, size)


class WholeImageStream(IterableDataset[tuple[torch.Tensor, torch.Tensor]]):
    """Training (``spec.augment`` set: ``n_batches`` random batches) or validation (every case once) batches."""

    def __init__(
        self,
        store: CaseStore,
        case_ids: list[str],
        spec: SamplerSpec,
        n_batches: int,
        seed: tuple[int, ...],
        targets: dict[str, float],
        integer_targets: bool,
    ) -> None:
        self.store, self.case_ids, self.spec = store, case_ids, spec
        self.n_batches, self.seed = n_batches, seed
        self.targets, self.integer_targets = targets, integer_targets

    def _batches(self) -> list[list[str] | None]:
        """Case ids per batch (validation) or ``None`` per batch (training: drawn from the batch's own seed)."""
        if self.spec.augment is not None:
            return [None] * self.n_batches
        bs = self.spec.batch_size
        return [self.case_ids[i : i + bs] for i in range(0, len(self.case_ids), bs)]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        spec = self.spec
        is_2d = len(spec.patch) == 2
        aug = spec.augment
        transform = (
            build_augmentation(aug, spec.spacing, False, is_2d, spec.patch) if aug is not None else None
        )
        crop = enlarged_patch(spec.patch, aug, False, is_2d) if aug is not None else list(spec.patch)
        size = [1, *crop] if is_2d else list(crop)
        batches = self._batches()
        for b in range(wid, len(batches), nw):
            rng = np.random.default_rng([*self.seed, b])
            seed = int(rng.integers(2**31))
            ids = batches[b]
            if ids is None:
                ids = [self.case_ids[int(rng.integers(len(self.case_ids)))] for _ in range(spec.batch_size)]
            xs, ys = [], []
            # torchio's draws on a fork of torch's generator: without workers the training's (dropout's) draws
            # had moved with each batch's seed, so 0 and 2 workers trained different weights from one seed
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                for cid in ids:
                    data = whole_image(rng if transform is not None else None, self.store.get(cid), size)
                    if is_2d:
                        data = data[:, 0]
                    if transform is not None:
                        data = center_crop(augment_image(transform, data, spec.spacing, is_2d), spec.patch)
                    xs.append(np.ascontiguousarray(data, dtype=np.float32))
                    ys.append(self.targets[cid])
            x = torch.from_numpy(np.stack(xs))
            if self.integer_targets:
                yield x, torch.tensor(ys, dtype=torch.int64)
            else:
                yield x, torch.tensor(ys, dtype=torch.float32)[:, None]
