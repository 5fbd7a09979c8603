"""Scoring synthesized images against intensity references (``automed metrics`` on intensity images): MSE, PSNR,
SSIM and NCC per case, inside an optional mask, over every channel."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from automed.errors import DatasetError
from automed.evaluate.cells import check_voxels
from automed.evaluate.compare import Pair, image_channels, load_image
from automed.evaluate.grid import on_reference_grid

SYNTHESIS_DEFINITIONS = {
    "mse": "mean squared difference of intensities (inside the mask when given)",
    "psnr": "10 log10(range^2 / MSE) in dB, range = the reference's max - min inside the mask",
    "ssim": "structural similarity (scikit-image, 7-voxel window or the axis's length if shorter, slice by slice "
    "along axes under 3 voxels; that range), averaged inside the mask and over channels",
    "ncc": "normalized cross-correlation (Pearson r of the intensities inside the mask)",
}


def synthesis_row(
    ref: np.ndarray | list[np.ndarray], pred: np.ndarray | list[np.ndarray], mask: np.ndarray | None
) -> dict[str, float]:
    """MSE, PSNR, SSIM and NCC of a synthesized image against its reference (inside ``mask`` when given); images of
    several channels (RGB) are scored on every channel: MSE and PSNR over all, SSIM and NCC averaged over them (the
    red channel alone had been scored)."""
    refs = ref if isinstance(ref, list) else [ref]
    preds = pred if isinstance(pred, list) else [pred]
    inside = np.ones(refs[0].shape, bool) if mask is None else mask.astype(bool)
    r = np.stack([a.astype(np.float64) for a in refs])
    p = np.stack([a.astype(np.float64) for a in preds])
    rv, pv = r[:, inside], p[:, inside]
    span = float(rv.max() - rv.min()) if rv.size else 0.0
    mse = float(np.mean((rv - pv) ** 2)) if rv.size else math.nan
    psnr = 10 * math.log10(span**2 / mse) if mse > 0 and span > 0 else math.inf if mse == 0 else math.nan
    # a voxel that is no number outside the mask (allowed there) counts as 0 in both images: SSIM's window around
    # the mask's edge had taken it in (NaN for the case, dropped from the mean without a word)
    outside = ~inside & ~(np.isfinite(r) & np.isfinite(p)).all(axis=0)
    r[:, outside] = p[:, outside] = 0.0
    ssim = float(np.mean([_ssim(rc, pc, inside, span) for rc, pc in zip(r, p, strict=True)]))
    nccs = [
        float(np.corrcoef(a, b)[0, 1]) if a.size > 1 and a.std() > 0 and b.std() > 0 else math.nan
        for a, b in zip(rv, pv, strict=True)
    ]
    return {"mse": mse, "psnr": psnr, "ssim": ssim, "ncc": float(np.mean(nccs))}


def _ssim(r: np.ndarray, p: np.ndarray, inside: np.ndarray, span: float) -> float:
    """SSIM (scikit-image) averaged inside ``inside``: a window of 7 voxels, less along shorter axes; along an axis
    of fewer than 3 voxels slice by slice (a window of 2 had crashed: "win_size exceeds image extent")."""
    from skimage.metrics import structural_similarity

    keep = [ax for ax, n in enumerate(r.shape) if n > 1]  # a 2D image stored as (1, y, x)
    shape = [r.shape[ax] for ax in keep]
    r2, p2, in2 = (a.reshape(shape) for a in (r, p, inside))
    thin = [ax for ax, n in enumerate(shape) if n < 3]
    if len(shape) - len(thin) < 2:
        return math.nan  # no plane of 3 x 3 voxels to compare
    order = thin + [ax for ax in range(len(shape)) if ax not in thin]
    r2, p2, in2 = (np.transpose(a, order) for a in (r2, p2, in2))
    lead = r2.shape[: len(thin)]
    smap = np.empty(r2.shape)
    for idx in np.ndindex(*lead):
        rs, ps = r2[idx], p2[idx]
        win = min(7, *(n if n % 2 else n - 1 for n in rs.shape))
        smap[idx] = structural_similarity(rs, ps, data_range=span or 1.0, full=True, win_size=win)[1]
    return float(smap[in2].mean())


def synthesis_rows(pairs: list[Pair], missing_value: float | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for p in pairs:
        refs, geo = image_channels(p.target, p.case, "reference")
        if p.prediction is None:
            rows.append(
                {"case": p.case, **dict.fromkeys(SYNTHESIS_DEFINITIONS, missing_value), "missing": True}
            )
            continue
        preds, pgeo = image_channels(p.prediction, p.case, "prediction")
        if len(preds) != len(refs):
            raise DatasetError.single(
                p.prediction, "a synthesized image has its reference's channels", f"{len(preds)} vs {len(refs)}",
                "write the prediction with the reference's channels (RGB for RGB)",
            )  # fmt: skip
        preds = [on_reference_grid(c, pgeo, geo, p.prediction) for c in preds]
        mask = None
        if (
            p.mask is not None
        ):  # on the reference's grid as the prediction is (it had been taken voxel for voxel)
            m, mgeo = load_image(p.mask, p.case, "mask")
            mask = on_reference_grid(m, mgeo, geo, p.mask)
        inside = None if mask is None else mask.astype(bool)
        for values, path, what in ((refs, p.target, "reference"), (preds, p.prediction, "prediction")):
            for channel in values:
                check_voxels(channel, str(path), f"{what} of {p.case}", labels=False, inside=inside)
        rows.append({"case": p.case, **synthesis_row(refs, preds, mask), "missing": False})
    return rows


def synthesis_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean (and median) of each metric over the cases where it is finite."""
    out: dict[str, Any] = {"n_cases": len(rows), "n_missing": sum(1 for r in rows if r["missing"])}
    for m in SYNTHESIS_DEFINITIONS:
        vals = np.array([r[m] for r in rows if r[m] is not None and math.isfinite(r[m])], dtype=np.float64)
        out[m] = {
            "mean": float(vals.mean()) if vals.size else None,
            "median": float(np.median(vals)) if vals.size else None,
        }
    out["definitions"] = SYNTHESIS_DEFINITIONS
    return out
