"""Training data: unpacked (memory-mapped) preprocessed cases, seeded patch sampling with forced foreground, and a
multi-process loader whose batches depend only on (seed, fold, epoch).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchio as tio
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from automed.train.augment import build_augmentation, center_crop, enlarged_patch
from automed.train.config import Augmentation


def unpack_cases(folder: Path, case_ids: list[str]) -> Path:
    """Decompress each ``<case>.npz`` once into ``unpacked/<case>.{data,seg}.npy`` (+ locations); returns the folder."""
    out = folder / "unpacked"
    out.mkdir(exist_ok=True)
    for cid in case_ids:
        if (out / f"{cid}.done").is_file():
            continue
        with np.load(folder / f"{cid}.npz") as z:
            arrays = {k: z[k] for k in z.files}
        for key in ("data", "seg", "target"):
            if key in arrays:
                tmp = out / f".{cid}.{key}.{os.getpid()}.npy"
                np.save(tmp, arrays[key])
                tmp.replace(out / f"{cid}.{key}.npy")
        locs = {k: v for k, v in arrays.items() if k.startswith("loc_")}
        tmp = out / f".{cid}.locs.{os.getpid()}.npz"
        np.savez(tmp, **locs)
        tmp.replace(out / f"{cid}.locs.npz")
        (out / f"{cid}.done").write_text("ok\n")
    return out


@dataclass
class CaseArrays:
    data: np.ndarray  # (C, z, y, x), memory-mapped
    seg: np.ndarray | None  # (z, y, x); None for image-level tasks
    locs: dict[int, np.ndarray]  # class index -> (N, 3) voxel coordinates
    target: float | None = None  # an image-level task's ValueToPredict
    prev: np.ndarray | None = None  # a cascade's previous-stage prediction (class indices, same grid as data)


class CaseStore:
    """Lazy, memory-mapped access to the unpacked cases of one configuration (and, for a cascade, the ``previous``
    stage's predictions: ``<case>.npy`` per case)."""

    def __init__(self, folder: Path, case_ids: list[str], previous: Path | None = None) -> None:
        self.folder = unpack_cases(folder, case_ids)
        self.previous = previous
        self.case_ids = list(case_ids)
        self._cache: dict[str, CaseArrays] = {}

    def get(self, cid: str) -> CaseArrays:
        if cid not in self._cache:
            data = np.load(self.folder / f"{cid}.data.npy", mmap_mode="r")
            seg_file, target_file = self.folder / f"{cid}.seg.npy", self.folder / f"{cid}.target.npy"
            seg = np.load(seg_file, mmap_mode="r") if seg_file.is_file() else None
            target = float(np.load(target_file)[0]) if target_file.is_file() else None
            with np.load(self.folder / f"{cid}.locs.npz") as z:
                locs = {int(k[4:]): z[k] for k in z.files}
            prev = np.load(self.previous / f"{cid}.npy", mmap_mode="r") if self.previous else None
            self._cache[cid] = CaseArrays(data, seg, locs, target, prev)
        return self._cache[cid]


def crop_padded(arr: np.ndarray, lower: list[int], size: list[int], pad_value: float = 0) -> np.ndarray:
    """Crop ``size`` voxels from the last ``len(size)`` axes of ``arr`` starting at ``lower`` (may lie outside)."""
    lead = arr.shape[: arr.ndim - len(size)]
    out = np.full((*lead, *size), pad_value, dtype=arr.dtype)
    src, dst = [slice(None)] * len(lead), [slice(None)] * len(lead)
    for lo, n, s in zip(lower, size, arr.shape[len(lead) :], strict=True):
        a, b = max(lo, 0), min(lo + n, s)
        if b <= a:
            return out
        src.append(slice(a, b))
        dst.append(slice(a - lo, b - lo))
    out[tuple(dst)] = arr[tuple(src)]
    return out


@dataclass(frozen=True)
class SamplerSpec:
    patch: list[int]  # network patch (2 or 3 axes)
    batch_size: int
    oversample: float
    n_classes: int
    spacing: list[float]
    augment: Augmentation | None


def n_forced(batch_size: int, oversample: float) -> int:
    """Samples per batch centred on foreground: at least ``oversample`` of the batch, and one if ``oversample`` > 0."""
    if oversample <= 0:
        return 0
    return min(batch_size, max(1, math.ceil(batch_size * oversample - 1e-9)))


def sample_patch(
    rng: np.random.Generator, case: CaseArrays, spec: SamplerSpec, crop: list[int], force_fg: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One (data, seg, previous-stage) crop of size ``crop`` (3 axes; 2D configurations use a slice of depth 1) around
    the network patch that augmentation centre-crops from it (``crop`` = ``spec.patch`` without augmentation)."""
    is_2d = len(spec.patch) == 2
    assert case.seg is not None, "a segmentation case has a label map"
    shape = list(case.seg.shape)
    classes = [k for k, v in case.locs.items() if len(v)]
    size = [1, *crop] if is_2d else list(crop)
    final = [1, *spec.patch] if is_2d else list(spec.patch)
    # the network patch (the crop's centre) reaches every border of the image and stays inside it on every axis the
    # image covers (a shorter axis is padded); the enlarged crop around it may extend past the image (padding, as
    # nnU-Net's does): bounds of the crop's lower corner
    margin = [(n - p) // 2 for n, p in zip(size, final, strict=True)]
    lo_min = [min(0, s - p) - m for s, p, m in zip(shape, final, margin, strict=True)]
    lo_max = [max(0, s - p) - m for s, p, m in zip(shape, final, margin, strict=True)]
    if force_fg and classes:
        k = classes[int(rng.integers(len(classes)))]
        loc = case.locs[k][int(rng.integers(len(case.locs[k])))]
        lower = [
            min(max(int(c) - n // 2, a), b) for c, n, a, b in zip(loc, size, lo_min, lo_max, strict=True)
        ]
    else:
        lower = [int(rng.integers(a, b + 1)) for a, b in zip(lo_min, lo_max, strict=True)]
    data = crop_padded(np.asarray(case.data), lower, size)
    seg = crop_padded(np.asarray(case.seg), lower, size)
    prev = None if case.prev is None else crop_padded(np.asarray(case.prev), lower, size)
    return data, seg, prev


def with_previous(data: np.ndarray, prev: np.ndarray | None, n_classes: int) -> np.ndarray:
    """``data`` ``(C, ...)`` with the one-hot previous-stage prediction appended as ``n_classes`` channels."""
    if prev is None:
        return data
    onehot = (prev[None] == np.arange(n_classes).reshape(-1, *[1] * prev.ndim)).astype(data.dtype)
    return np.concatenate([data, onehot])


class BatchStream(IterableDataset[tuple[torch.Tensor, torch.Tensor]]):
    """``n_batches`` batches for one epoch; batch ``b`` is drawn from ``rng(seed, fold, epoch, b)`` whichever worker
    makes it."""

    def __init__(
        self, store: CaseStore, case_ids: list[str], spec: SamplerSpec, n_batches: int, seed: tuple[int, ...]
    ) -> None:
        self.store = store
        self.case_ids = case_ids
        self.spec = spec
        self.n_batches = n_batches
        self.seed = seed

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        spec = self.spec
        is_2d = len(spec.patch) == 2
        dummy_2d = (not is_2d) and max(spec.patch) / spec.patch[0] > 3
        aug = spec.augment
        transform = (
            build_augmentation(aug, spec.spacing, dummy_2d, is_2d, spec.patch) if aug is not None else None
        )
        crop = enlarged_patch(spec.patch, aug, dummy_2d, is_2d) if aug is not None else list(spec.patch)
        forced = n_forced(spec.batch_size, spec.oversample)
        for b in range(wid, self.n_batches, nw):
            # each batch has its own seed, so batches do not depend on how many workers draw them; torchio draws
            # from torch's global generator, forked here so that a loader without workers leaves the training's
            # (dropout's) draws as they are with workers
            rng = np.random.default_rng([*self.seed, b])
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(rng.integers(2**31)))
                xs, ys = [], []
                for j in range(spec.batch_size):
                    cid = self.case_ids[int(rng.integers(len(self.case_ids)))]
                    data, seg, prev = sample_patch(
                        rng, self.store.get(cid), spec, crop, force_fg=j >= spec.batch_size - forced
                    )
                    if is_2d:
                        data, seg = data[:, 0], seg[0]
                        prev = None if prev is None else prev[0]
                    if transform is not None:
                        data, seg, prev = augment_pair(transform, data, seg, spec.spacing, is_2d, prev)
                        data, seg = center_crop(data, spec.patch), center_crop(seg, spec.patch)
                        prev = None if prev is None else center_crop(prev, spec.patch)
                    data = with_previous(data, prev, spec.n_classes)
                    xs.append(np.ascontiguousarray(data, dtype=np.float32))
                    ys.append(np.ascontiguousarray(seg, dtype=np.int64))
            yield torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))[:, None]


def augment_pair(
    transform: tio.Compose,
    data: np.ndarray,
    seg: np.ndarray,
    spacing: list[float],
    is_2d: bool,
    prev: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Image, label map and (a cascade's) previous-stage prediction through ``transform``: the label maps move
    with the image (nearest neighbour) and get no intensity transform."""
    affine = np.diag([*spacing, 1.0, 1.0] if is_2d else [*spacing, 1.0])

    def label(a: np.ndarray) -> tio.LabelMap:
        t = a[None, ..., None] if is_2d else a[None]
        return tio.LabelMap(tensor=torch.from_numpy(np.ascontiguousarray(t)), affine=affine)

    d = data[..., None] if is_2d else data
    images: dict[str, tio.Image] = {
        "image": tio.ScalarImage(tensor=torch.from_numpy(np.ascontiguousarray(d)), affine=affine)
    }
    images["label"] = label(seg)
    if prev is not None:
        images["prev"] = label(prev)
    out = transform(tio.Subject(**images))
    assert isinstance(out, tio.Subject)

    def back(key: str) -> np.ndarray:
        a: np.ndarray = out[key].data.numpy()  # type: ignore[attr-defined]
        a = a if key == "image" else a.round().astype(np.int64)[0]
        return a[..., 0] if is_2d else a

    return back("image"), back("label"), back("prev") if prev is not None else None


def augment_image(transform: tio.Compose, data: np.ndarray, spacing: list[float], is_2d: bool) -> np.ndarray:
    """An image without a label map through ``transform`` (image-level tasks: no label to resample along)."""
    d = data[..., None] if is_2d else data
    affine = np.diag([*spacing, 1.0, 1.0] if is_2d else [*spacing, 1.0])
    subject = tio.Subject(
        image=tio.ScalarImage(tensor=torch.from_numpy(np.ascontiguousarray(d)), affine=affine)
    )
    out = transform(subject)
    assert isinstance(out, tio.Subject)
    x: np.ndarray = out["image"].data.numpy()  # type: ignore[attr-defined]
    return x[..., 0] if is_2d else x


def make_loader(
    stream: IterableDataset[tuple[torch.Tensor, torch.Tensor]], workers: int
) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
    return DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
        pin_memory=False,
    )
