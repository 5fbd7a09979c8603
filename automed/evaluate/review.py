"""What a person reviews after ``automed predict --review``: per input a JSON of the predicted structures (per label
the volume or area, and each connected component with its bounding box in voxels and in physical coordinates and
the mean probability inside it), an annotated PNG (2D: the image with contours; 3D: three orthogonal slices
through the largest component of each label), and one ``index.html`` listing every input with its picture (no
scripts, no network)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from matplotlib.figure import Figure
from scipy import ndimage

from automed.data.io import Geometry
from automed.evaluate.viewing import as_viewed, lps_order, viewed_index

COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45")


def physical_box(geometry: Geometry, lo: tuple[int, ...], hi: tuple[int, ...]) -> list[list[float]]:
    """The physical bounding box [(x, y, z) min, max] in mm of the voxels ``lo``..``hi`` (z, y, x, inclusive),
    voxel extents included: every corner mapped (a flipped or oblique direction turns the index corners into other
    ones: the two mapped index corners had been given, the "min" sometimes the max)."""
    corners = [
        physical(geometry, (z, y, x))
        for z in (lo[0] - 0.5, hi[0] + 0.5)
        for y in (lo[1] - 0.5, hi[1] + 0.5)
        for x in (lo[2] - 0.5, hi[2] + 0.5)
    ]
    pts = np.asarray(corners)
    return [[float(v) for v in pts.min(axis=0)], [float(v) for v in pts.max(axis=0)]]


def physical(geometry: Geometry, zyx: tuple[float, float, float]) -> list[float]:
    """The physical (x, y, z) point in mm of a voxel index given as (z, y, x)."""
    d = np.asarray(geometry.direction, dtype=np.float64).reshape(3, 3)
    idx = np.array([zyx[2], zyx[1], zyx[0]], dtype=np.float64) * np.asarray(geometry.spacing)
    return [float(v) for v in np.asarray(geometry.origin) + d @ idx]


def describe(
    labels: np.ndarray,
    probabilities: np.ndarray | None,
    geometry: Geometry,
    names: dict[int, str],
    class_index: dict[int, int],
) -> dict[str, Any]:
    """Per foreground label: volume (3D) or area (2D) and the connected components, largest first."""
    flat = labels.shape[0] == 1  # a 2D image stored as (1, y, x)
    voxel = math.prod(geometry.spacing[:2] if flat else geometry.spacing)
    unit = "mm2" if flat else "mm3"
    out: dict[str, Any] = {"unit": unit, "labels": {}}
    structure = ndimage.generate_binary_structure(3, 3)  # 26-connected (8 in a 2D image)
    for value, name in sorted(names.items()):
        mask = labels == value
        comps, n = ndimage.label(mask, structure=structure)
        items = []
        for k, box in enumerate(ndimage.find_objects(comps), start=1):
            if box is None:
                continue
            inside = comps[box] == k
            lo = tuple(s.start for s in box)
            hi = tuple(s.stop - 1 for s in box)
            entry: dict[str, Any] = {
                f"size_{unit}": float(inside.sum() * voxel),
                "voxels": int(inside.sum()),
                "bbox_voxel_zyx": [list(lo), list(hi)],
                "bbox_physical_xyz_mm": physical_box(geometry, lo, hi),
            }
            if probabilities is not None and value in class_index:
                entry["mean_probability"] = float(probabilities[class_index[value]][box][inside].mean())
            items.append(entry)
        items.sort(key=lambda e: -e["voxels"])
        out["labels"][name] = {
            "value": value,
            f"size_{unit}": float(mask.sum() * voxel),
            "n_components": n,
            "components": items,
        }
    return out


def _slices(labels: np.ndarray, names: dict[int, str]) -> list[tuple[str, int, int]]:
    """(label name, axis, index) of the three orthogonal slices through each label's largest component."""
    out = []
    for value, name in sorted(names.items()):
        comps, n = ndimage.label(labels == value)
        if n == 0:
            continue
        largest = int(np.argmax(ndimage.sum_labels(np.ones_like(comps), comps, range(1, n + 1)))) + 1
        centre = [round(float(c)) for c in ndimage.center_of_mass(comps == largest)]
        out += [(name, axis, centre[axis]) for axis in range(3)]
    return out


def review_figure(
    image: np.ndarray, labels: np.ndarray, names: dict[int, str], title: str, direction: Sequence[float] = ()
) -> Figure:
    """The image with every label's contour: one panel for a 2D image, three orthogonal slices through the largest
    component of each label for a volume (the middle slices when nothing was found), shown as a viewer shows them
    whatever the image's ``direction`` (``viewing.lps_order``); panel titles name the image's own voxel index."""
    shape = labels.shape
    order = lps_order(direction) if labels.shape[0] > 1 else None
    image, labels = as_viewed(image, order), as_viewed(labels, order)
    values = sorted(names)
    panels = (
        [("", 0, 0)]
        if labels.shape[0] == 1
        else _slices(labels, names) or [("", axis, labels.shape[axis] // 2) for axis in range(3)]
    )
    cols = 1 if len(panels) == 1 else 3
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(3.2 * cols, 3.2 * rows + 0.4))
    for i, (name, axis, index) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        img = np.take(image, index, axis=axis)
        lab = np.take(labels, index, axis=axis)
        ax.imshow(img, cmap="gray", origin="lower" if axis else "upper")
        for j, v in enumerate(values):
            if (lab == v).any():
                ax.contour(lab == v, levels=[0.5], colors=COLOURS[j % len(COLOURS)], linewidths=1.0)
        ax.set_title(f"{name} {viewed_index(order, shape, axis, index)}" if name else "", fontsize=8)
        ax.axis("off")
    legend = "  ".join(f"{names[v]}" for v in values)
    fig.suptitle(f"{title}   {legend}", fontsize=9)
    return fig


def image_figure(
    image: np.ndarray,
    title: str,
    row: dict[str, Any],
    direction: Sequence[float] = (),
    spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0),
) -> Figure:
    """An image-level prediction over its image ``(z, y, x)``, or an RGB picture ``(3, 1, y, x)`` in its colours
    (:func:`~automed.evaluate.viewing.shown_image`): a volume's middle axial slice as a viewer shows it (anterior up,
    the patient's right on the left, whatever ``direction``) at its spacing's aspect; the class and its
    probability, or the value, in the title."""
    # a single slice (an X-ray stored coronal) is shown as stored: its axial view would be one row of voxels
    order = lps_order(direction) if min(image.shape[-3:]) > 1 else None
    colour = image.ndim == 4
    viewed = np.stack([as_viewed(c, order) for c in image]) if colour else as_viewed(image, order)
    axes = order[0] if order is not None else [0, 1, 2]
    spacing = [float(spacing_zyx[a]) for a in axes]
    mid = viewed.shape[-3] // 2
    fig = Figure(figsize=(3.6, 3.9))
    ax = fig.add_subplot(1, 1, 1)
    if colour:
        rgb = np.moveaxis(np.asarray(viewed[:, mid], dtype=np.float32), 0, -1)
        lo, hi = float(rgb.min()), float(rgb.max())
        ax.imshow(
            np.clip((rgb - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0), aspect=spacing[1] / spacing[2]
        )
    else:
        ax.imshow(viewed[mid], cmap="gray", aspect=spacing[1] / spacing[2])
    ax.axis("off")
    pred = row["prediction"]
    prob = row.get(f"probability_{pred}")
    if isinstance(prob, float):
        said = f"{pred} ({prob:.2f})"
    else:
        said = f"{pred:.4g}" if isinstance(pred, float) else str(pred)
    ax.set_title(f"{title}: {said}", fontsize=9)
    return fig


def write_index(folder: Path, entries: list[dict[str, Any]]) -> Path:
    """``index.html``: one row per input (name, picture, what was found); self-contained, no scripts."""
    rows = []
    for e in entries:
        found = html.escape(e["summary"])
        # file names are URL-quoted: a legal '#', '?' or '%' in one had cut or changed the link
        png, js = (html.escape(quote(e[k])) for k in ("png", "json"))
        rows.append(
            f'<tr><td>{html.escape(e["case"])}</td><td><a href="{png}">'
            f'<img src="{png}" alt="{html.escape(e["case"])}" width="480"></a></td>'
            f'<td>{found}<br><a href="{js}">details (JSON)</a></td></tr>'
        )
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>automed review</title>"
        "<style>body{font-family:sans-serif}td{vertical-align:top;padding:6px;border-bottom:1px solid #ccc}</style>"
        f"</head><body><h1>Review: {len(entries)} input(s)</h1><table>"
        "<tr><th>input</th><th>prediction</th><th>found</th></tr>"
        + "".join(rows)
        + "</table></body></html>\n"
    )
    path = folder / "index.html"
    tmp = folder / ".index.partial.html"
    tmp.write_text(page)
    tmp.replace(path)
    return path
