"""NIfTI de-identification: the header's free-text fields and its extensions (a DICOM header may ride in one) go; the
voxels, their scaling and the geometry stay as they were."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib

TEXT_FIELDS = ("descrip", "aux_file", "db_name", "intent_name")


def _load(path: Path) -> Any:
    img = nib.load(path)
    if not isinstance(img, nib.Nifti1Image):  # Nifti2Image is a subclass
        raise ValueError(f"{path.name}: not a NIfTI-1/2 image ({type(img).__name__})")
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
    raw = img.dataobj.get_unscaled() if hasattr(img.dataobj, "get_unscaled") else img.get_fdata()
    scrubbed = type(img)(raw, img.affine, hdr)
    scrubbed.header.set_slope_inter(*img.header.get_slope_inter())
    nib.save(scrubbed, dst)
    return changed


def nifti_findings(path: Path, values: set[str]) -> list[tuple[str, str]]:
    """(field, rule) for every header text or extension left in a NIfTI file."""
    texts = _header_texts(_load(path))
    found = [(f, "header text remains") for f, t in texts.items() if t]
    found += [
        (f, "holds an identifying value of the original")
        for f, t in texts.items()
        if any(v in t.lower() for v in values)
    ]
    if getattr(_load(path).header, "extensions", None):
        found.append(("extensions", "header extensions remain"))
    return found
