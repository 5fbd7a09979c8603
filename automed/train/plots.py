"""Figures: a per-fold progress plot (losses and Dice, epoch time, learning rate) and validation overlays."""

from __future__ import annotations

from typing import Any

import numpy as np


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


FEW_EPOCHS = 30  # up to this many epochs, each is marked with a dot as well as joined by the line


def _num(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def progress_figure(history: list[dict[str, Any]], title: str, score_label: str = "pseudo Dice") -> Any:
    plt = _plt()
    fig, axes = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    ep = [h["epoch"] for h in history]
    dots: dict[str, Any] = (
        {"marker": "o", "ms": 3} if len(ep) <= FEW_EPOCHS else {}
    )  # a line of one epoch draws nothing
    ax = axes[0]
    ax.plot(ep, [h["train_loss"] for h in history], label="train loss", **dots)
    ax.plot(ep, [h["val_loss"] for h in history], label="val loss", **dots)
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    # an epoch without a defined score (null in progress.json) leaves a gap
    ax2.plot(ep, [_num(h["val_score"]) for h in history], "g.", label=score_label)
    ax2.plot(ep, [_num(h["val_score_ema"]) for h in history], "g-", label=f"{score_label} (EMA)", **dots)
    ax2.set_ylabel(score_label)
    ax.legend(loc="upper left")
    ax2.legend(loc="upper right")
    axes[1].plot(ep, [h["epoch_seconds"] for h in history], **dots)
    axes[1].set_ylabel("epoch s")
    axes[2].plot(ep, [h["learning_rate"] for h in history], **dots)
    axes[2].set_ylabel("learning rate")
    axes[2].set_xlabel("epoch")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def overlay_figure(image: np.ndarray, reference: np.ndarray, prediction: np.ndarray, title: str) -> Any:
    """Image (first channel) with reference (green) and prediction (red) contours on the slice with most foreground."""
    plt = _plt()
    axis = int(np.argmin(image.shape))
    fg = (reference > 0).sum(axis=tuple(a for a in range(3) if a != axis))
    k = int(np.argmax(fg)) if fg.any() else image.shape[axis] // 2
    take = [slice(None)] * 3
    take[axis] = slice(k, k + 1)
    img, ref, pred = (np.squeeze(a[tuple(take)], axis=axis) for a in (image, reference, prediction))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(img, cmap="gray")
    if ref.any():
        ax.contour(ref > 0, levels=[0.5], colors="lime", linewidths=1.0)
    if pred.any():
        ax.contour(pred > 0, levels=[0.5], colors="red", linewidths=1.0)
    ax.set_title(f"{title} (green: reference, red: prediction)", fontsize=8)
    ax.axis("off")
    fig.tight_layout()
    return fig
