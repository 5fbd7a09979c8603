"""``automed anonymize --check``: does anything identifying remain in a folder of DICOM (and NIfTI) files?

Two kinds of evidence, reported per file and attribute and never with the value found:
- the identifying values of the originals (``--original``): every value of an attribute the profile removes or
  replaces, the parts of person names, and private text, searched for in every attribute at every depth (sequence
  items, private attributes, binary values read as text) and in file and folder names;
- patterns that need no original: private attributes, person names that are not pseudonyms, real dates where dates
  were removed, date-like text in free-text attributes, ``PatientIdentityRemoved`` not YES, NIfTI header text and
  extensions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from automed.tools.deid import Deidentifier, tag_name
from automed.tools.deid_keys import PSEUDONYM_PREFIX, DeidKey
from automed.tools.dicom_files import input_files, is_nifti, relative
from automed.tools.nifti_deid import nifti_findings

TEXT_VRS = {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
FREE_TEXT_VRS = {"LO", "LT", "SH", "ST", "UT", "UC"}
_PSEUDONYM = re.compile(rf"^{PSEUDONYM_PREFIX}[0-9A-F]{{10}}$")
_DATE_TEXT = re.compile(r"(?<!\d)(19|20)\d\d(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?!\d)")
_DUMMY_DATES = {"", "00010101"}
_DUMMY = "ANONYMIZED"  # dicom-anonymizer's D value for text
_ID_ATTRIBUTES = {
    "PatientID",
    "OtherPatientIDs",
    "AccessionNumber",
    "IssuerOfPatientID",
    "MedicalRecordLocator",
}


@dataclass(frozen=True)
class Finding:
    file: str
    attribute: str
    rule: str

    def __str__(self) -> str:
        return f"{self.file}: {self.attribute}: {self.rule}"


def _texts(elem: DataElement) -> list[str]:
    value = elem.value
    if value is None or elem.VR == "SQ":
        return []
    if isinstance(value, bytes):
        return [value.decode("latin-1", errors="ignore")] if len(value) < 1 << 16 else []
    values = value if elem.VM > 1 and not isinstance(value, str) else [value]
    return [str(v) for v in values if v is not None and str(v) != ""]


def _not_pseudonym(text: str) -> bool:
    t = text.strip()
    return bool(t) and t != _DUMMY and not _PSEUDONYM.match(t)


def _keep_value(text: str) -> bool:
    """Long and specific enough to search for without matching ordinary content."""
    t = text.strip()
    if t.upper() in {"ANONYMIZED", "YES", "NO", "NONE", "UNKNOWN"}:
        return False
    return len(t) >= 5 if t.replace(".", "").isdigit() else len(t) >= 4


def identifying_values(originals: Path) -> set[str]:
    """Lower-cased values of the originals that must not survive (see the module docstring)."""
    rules = Deidentifier(DeidKey(b"\0" * 32))
    found: set[str] = set()
    kept: set[str] = set()
    for path in input_files(originals):
        if is_nifti(path):
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError):
            continue
        for elem in ds.iterall():
            if elem.VR not in TEXT_VRS and not (elem.tag.is_private and elem.VR in ("OB", "UN")):
                continue
            action = rules._action(elem.tag)
            removed = elem.tag.is_private or (action is not None and action.__name__ != "keep")
            for text in _texts(elem):
                parts = [text]
                if elem.VR == "PN":
                    parts += [p for p in re.split(r"[\^=, ]+", text) if len(p) >= 3]
                (found if removed else kept).update(p.strip().lower() for p in parts if _keep_value(p))
    return found - kept


def _dicom_findings(ds: Dataset, shown: str, values: set[str]) -> list[Finding]:
    out: list[Finding] = []
    shifted = str(ds.get("LongitudinalTemporalInformationModified", "")) == "MODIFIED"
    codes = {str(c.get("CodeValue", "")) for c in ds.get("DeidentificationMethodCodeSequence", [])}
    safe_private = (
        "113111" in codes
    )  # Retain Safe Private: the user vouched for the kept ones; values still searched
    elements = list(ds.file_meta.iterall()) if hasattr(ds, "file_meta") else []
    for elem in [*elements, *ds.iterall()]:
        name = tag_name(elem.tag)
        if elem.tag.is_private and not safe_private:
            out.append(Finding(shown, name, "a private attribute remains"))
        if elem.tag == (0x7FE0, 0x0010):
            continue
        texts = _texts(elem)
        low = [t.lower() for t in texts]
        vouched = (shifted and elem.VR == "TM") or (safe_private and elem.tag.is_private)
        if values and not vouched and any(v in t for t in low for v in values):
            out.append(Finding(shown, name, "holds an identifying value of the original"))
        if elem.VR == "PN" and any(_not_pseudonym(t) for t in texts):
            out.append(Finding(shown, name, "a person name that is not a pseudonym"))
        if name in _ID_ATTRIBUTES and any(_not_pseudonym(t) for t in texts):
            out.append(Finding(shown, name, "an identifier that is not a pseudonym"))
        real_date = elem.VR in ("DA", "DT") and any(t[:8] not in _DUMMY_DATES for t in texts)
        if real_date and (not shifted or name == "PatientBirthDate"):
            out.append(Finding(shown, name, "a real date where dates were removed"))
        if elem.VR in FREE_TEXT_VRS and any(_DATE_TEXT.search(t) for t in texts):
            out.append(Finding(shown, name, "date-like text in a free-text attribute"))
    if str(ds.get("PatientIdentityRemoved", "")) != "YES":
        out.append(Finding(shown, "PatientIdentityRemoved", "is not YES"))
    return out


def check_folder(root: Path, original: Path | None = None) -> list[Finding]:
    """Every finding in the files under ``root`` (sorted by file)."""
    values = identifying_values(original) if original is not None else set()
    findings: list[Finding] = []
    for path in input_files(root):
        shown = relative(path, root)
        low_name = shown.lower()
        if values and any(v in low_name for v in values):
            findings.append(Finding(shown, "file name", "holds an identifying value of the original"))
        if is_nifti(path):
            findings += [Finding(shown, a, r) for a, r in nifti_findings(path, values)]
            continue
        try:
            ds = pydicom.dcmread(path)
        except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError):
            findings.append(Finding(shown, "file", "not readable as DICOM (cannot be checked)"))
            continue
        findings += _dicom_findings(ds, shown, values)
    return findings
