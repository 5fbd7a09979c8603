"""NIfTI de-identification: the header's free-text fields and its extensions (a DICOM header may ride in one) go; the
voxels, their scaling and the geometry stay as they were."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nibabel as nib

TEXT_FIELDS = ("descrip", "aux_file", "db_name", "intent_name", "data_type")


def _load(path: Path) -> Any:
    img = nib.load(path)
    if not isinstance(img, nib.Nifti1Image):  # Nifti2Image is a subclass
        raise ValueError(f"not a NIfTI-1/2 image ({type(img).__name__})")
    return img


def _header_texts(img: Any) -> dict[str, str]:
    hdr = img.header
    texts = {}
    for f in TEXT_FIELDS:
        if f in hdr:
            raw = hdr[f].item()
            texts[f] = (
                raw.decode("latin-1", errors="ignore").strip("\0 ") if isinstance(raw, bytes) else str(raw)
            )
    return texts


def scrub_nifti(src: Path, dst: Path) -> list[str]:
    """Write ``src`` to ``dst`` without header text or extensions; return the fields that held something."""
    img = _load(src)
    changed = [f for f, t in _header_texts(img).items() if t]
    hdr = img.header.copy()
    for f in TEXT_FIELDS:
        if f in hdr:
            hdr[f] = b""
    if hdr.extensions:
        changed.append("extensions")
        hdr.extensions.clear()
    # nibabel moves scl_slope/scl_inter from the header to the array proxy on load: write the raw values back
    # with the proxy's scaling, so the stored bytes and their meaning stay the same
    proxy = img.dataobj
    raw = proxy.get_unscaled()
    scrubbed = type(img)(raw, img.affine, hdr)
    scrubbed.header.set_data_dtype(img.get_data_dtype())
    scrubbed.header.set_slope_inter(getattr(proxy, "slope", 1.0), getattr(proxy, "inter", 0.0))
    nib.save(scrubbed, dst)
    return changed


def nifti_findings(path: Path, values: re.Pattern[str] | None) -> list[tuple[str, str]]:
    """(field, rule) for every header text or extension left in a NIfTI file."""
    img = _load(path)
    texts = _header_texts(img)
    found = [(f, "header text remains") for f, t in texts.items() if t]
    if values is not None:
        found += [
            (f, "holds an identifying value of the original")
            for f, t in texts.items()
            if values.search(t.lower())
        ]
    if getattr(img.header, "extensions", None):
        found.append(("extensions", "header extensions remain"))
    return found
