"""``automed anonymize --check``: does anything identifying remain in a folder of DICOM (and NIfTI) files?

Two kinds of evidence, reported per file and attribute and never with the value found:
- the identifying values of the originals (``--original``): every value of an attribute the profile removes or
  replaces (file meta included), the parts of person names, and private text, searched as whole words in every
  attribute at every depth (sequence items, code items, private attributes, binary values read as text) and in file
  and folder names; a value the original also held in an attribute the profile keeps is not searched for, except
  person names and identifiers (a patient's name copied into a kept attribute is the leftover a check is for), which
  are then searched in names, text and private attributes (not in code strings such as ``ORIGINAL``); name parts of
  two or three letters (Li, Lee) only in names and long text (PN, LT, ST, UT, UC: not in a manufacturer's "GE", a
  binary header or a file name);
- patterns that need no original: private attributes, public attributes unknown to the DICOM dictionary, UN values,
  file meta beyond the transfer essentials, UIDs that are neither DICOM's own nor keyed (``2.25.``), person names and
  identifiers that are not pseudonyms, real dates where dates were removed, date-like free text, names, text or dates
  in attributes the profile's table does not list, any value left where the table removes or empties an
  attribute (text other than its dummy where it replaces one), pixels that may show burned-in text (what anonymize
  refuses without ``--allow-burned-in``), a file meta without its transfer syntax,
  ``PatientIdentityRemoved`` not YES, NIfTI header text and extensions.

Every file under the folder is checked - hidden ones and DICOMDIR too - except automed's own marker and report."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.datadict import dictionary_has_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID

from automed.artifacts import OUTPUT_MARKER
from automed.tools.deid import ACTION_CODES, OPTIONS, Deidentifier, burned_in, tag_name, unlisted_identifying
from automed.tools.deid_keys import PSEUDONYM_PREFIX, DeidKey
from automed.tools.dicom_files import DEID_REPORT, is_nifti, relative
from automed.tools.nifti_deid import nifti_findings

TEXT_VRS = {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
FREE_TEXT_VRS = {"LO", "LT", "SH", "ST", "UT", "UC"}
_PSEUDONYM = re.compile(rf"^{PSEUDONYM_PREFIX}[0-9A-F]{{10}}$")
_DATE_TEXT = re.compile(r"(?<!\d)(19|20)\d\d(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?!\d)")
_DUMMY_DATES = {"", "00010101"}
_DUMMY_TIMES = {"010101.000000+0000"}  # dicom-anonymizer's DT dummy is 00010101 plus this time
_DUMMY = "ANONYMIZED"  # dicom-anonymizer's D value for text
_ID_ATTRIBUTES = {
    "PatientID",
    "OtherPatientIDs",
    "AccessionNumber",
    "IssuerOfPatientID",
    "MedicalRecordLocator",
}
# written by automed itself (the method's description, the codes of its method's items): not searched for the
# originals' values
_OWN = {"DeidentificationMethod", "PatientIdentityRemoved"}
_OWN_CODES = "DeidentificationMethodCodeSequence"
_CODE_VALUES = {
    "CodeValue",
    "LongCodeValue",
    "CodingSchemeDesignator",
    "CodingSchemeVersion",
}  # codes, not text
# parts of a person name that say nothing of the person (titles, particles)
_TITLES = {"mr", "mrs", "ms", "dr", "md", "phd", "jr", "sr", "ii", "iii", "prof"}
_PARTICLES = {
    "de",
    "la",
    "le",
    "du",
    "da",
    "di",
    "do",
    "dos",
    "das",
    "del",
    "den",
    "der",
    "van",
    "von",
    "al",
    "el",
}
# where Needles.text is searched: names, text and private attributes (not code strings such as 'SE' or 'GR')
_TEXT_ONLY_VRS = {"PN", *FREE_TEXT_VRS, "OB", "UN"}
# where Needles.short is searched: names and long text (a short string may be a manufacturer's "GE" or a version)
_SHORT_VRS = {"PN", "LT", "ST", "UT", "UC"}
_META_KEPT = {0x0000, 0x0001, 0x0002, 0x0003, 0x0010, 0x0012, 0x0013}
_TABLE = Deidentifier(DeidKey(b"\0" * 32))  # which attributes the profile's table lists


@dataclass(frozen=True)
class Finding:
    file: str
    attribute: str
    rule: str

    def __str__(self) -> str:
        return f"{self.file}: {self.attribute}: {self.rule}"


def _pattern(values: set[str]) -> re.Pattern[str] | None:
    """Any of ``values`` as a whole word (of lower-case text), or ``None`` when there are none."""
    if not values:
        return None
    alts = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
    return re.compile(rf"(?<![a-z0-9])(?:{alts})(?![a-z0-9])")


@dataclass
class Needles:
    """The originals' identifying values as whole-word patterns: all of them, those from public attributes, and
    ``text``: names or identifiers the originals also held in a kept attribute, searched only in
    :data:`_TEXT_ONLY_VRS`, private attributes and file names; ``short``: name parts of two or three letters."""

    every: re.Pattern[str] | None
    public: re.Pattern[str] | None
    text: re.Pattern[str] | None = None
    short: re.Pattern[str] | None = None  # name parts of 2-3 letters: only in :data:`_SHORT_VRS`

    @staticmethod
    def build(
        every: set[str], public: set[str], text: set[str] | None = None, short: set[str] | None = None
    ) -> Needles:
        return Needles(_pattern(every), _pattern(public), _pattern(text or set()), _pattern(short or set()))


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


def _elements(ds: Dataset) -> list[DataElement]:
    return [elem for elem, _ in _walk(ds)]


def _walk(ds: Dataset) -> list[tuple[DataElement, bool]]:
    """Every element, file meta first, at every depth, each with whether it lies in automed's own method codes."""
    meta = list(ds.file_meta.iterall()) if getattr(ds, "file_meta", None) is not None else []
    out = [(elem, False) for elem in meta]

    def visit(d: Dataset, own: bool) -> None:
        for elem in d:
            out.append((elem, own))
            if elem.VR == "SQ":
                for item in elem.value:
                    visit(item, own or elem.keyword == _OWN_CODES)

    visit(ds, False)
    return out


def _name_parts(text: str) -> tuple[set[str], set[str]]:
    """A person name's parts of four letters or more and the whole name in both orders (searched everywhere), and
    its parts of two or three letters (searched in names, text and private attributes only)."""
    parts = [p for p in (q.strip().lower() for q in re.split(r"[\^=, ]+", text)) if p and p not in _TITLES]
    long = {
        p for p in parts if len(p) >= 4 and _keep_value(p)
    }  # never 'anonymized', 'unknown' or a short number
    first = parts[:2]
    if len(first) == 2 and all(q.isalpha() and (len(q) < 4 or _keep_value(q)) for q in first):
        long |= {" ".join(first), " ".join(first[::-1])}  # "wu li" as a whole, wherever it stands
    return long, {p for p in parts if 2 <= len(p) < 4 and p.isalpha() and p not in _PARTICLES}


def files_to_check(root: Path) -> list[Path]:
    """Every file under ``root`` but automed's own marker and de-identification report (when they are JSON)."""
    if root.is_file():
        return [root]
    out = []
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        if p.parent == root and p.name in (OUTPUT_MARKER, DEID_REPORT):
            try:
                json.loads(p.read_text())
                continue
            except (UnicodeDecodeError, json.JSONDecodeError):
                pass
        out.append(p)
    return out


def _rules(options: list[str] | None = None) -> Deidentifier:
    """The profile's actions (with the run's options: what they keep is not a finding)."""
    return Deidentifier(DeidKey(b"\0" * 32), options)


def _headers(root: Path) -> Iterator[Dataset]:
    """The DICOM headers (no pixels) of the readable DICOM files under ``root``."""
    for path in files_to_check(root):
        if is_nifti(path):
            continue
        try:
            yield pydicom.dcmread(path, stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError):
            continue


def options_used(root: Path) -> list[str]:
    """The de-identification options of an anonymized folder: its report's, else those coded in its files."""
    report = root / DEID_REPORT
    try:
        return sorted(o for o in json.loads(report.read_text())["dicom"]["options"] if o in OPTIONS)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    by_code = {code.value: name for name, code in OPTIONS.items()}
    found: set[str] = set()
    for ds in _headers(root):
        for item in ds.get("DeidentificationMethodCodeSequence", []):
            if (name := by_code.get(str(item.get("CodeValue", "")))) is not None:
                found.add(name)
    return sorted(found)


def identifying_values(originals: Path, options: list[str] | None = None) -> Needles:
    """The originals' values that must not survive (see the module docstring); ``options``: those of the run,
    whose kept attributes (e.g. ``PatientAge`` under ``retain-patient-characteristics``) are not searched for."""
    rules = _rules(options)
    every: set[str] = set()
    public: set[str] = set()
    kept: set[str] = set()
    # names and identifiers: searched in text even where a kept attribute held them
    personal: set[str] = set()
    short: set[str] = set()
    for ds in _headers(originals):
        for elem in _elements(ds):
            if elem.VR not in TEXT_VRS and not (elem.tag.is_private and elem.VR in ("OB", "UN")):
                continue
            action = rules.action_for(elem.tag)
            in_meta = elem.tag.group == 0x0002 and elem.tag.element not in _META_KEPT
            removed = elem.tag.is_private or in_meta or (action is not None and action.__name__ != "keep")
            removed |= elem.tag.group != 0x0002 and action is None and unlisted_identifying(elem.tag, elem.VR)
            # unregistered UIDs outside the file meta (ImplementationClassUID names software, not a patient)
            removed |= (
                elem.VR == "UI" and elem.tag.group != 0x0002 and any(UID(t).name == t for t in _texts(elem))
            )
            for text in _texts(elem):
                values = {text.strip().lower()} if _keep_value(text) else set()
                if not removed:
                    kept |= values
                    continue
                if elem.VR == "PN" or tag_name(elem.tag) in _ID_ATTRIBUTES:
                    long, parts = _name_parts(text) if elem.VR == "PN" else (set(), set())
                    values |= long
                    personal |= values
                    short |= parts
                every |= values
                if not elem.tag.is_private:
                    public |= values
    return Needles.build(every - kept, public - kept, personal & kept, short)


_REMOVED_CODES = {"X", "Z", "X/Z"}  # the table removes or empties the attribute (dates, times: their dummies)
_REPLACED_CODES = {"D", "Z/D", "X/D", "X/Z/D"}  # the table's dummy value (text: ANONYMIZED), or nothing


def _table_findings(
    elem: DataElement, name: str, texts: list[str], shifted: bool, table: Deidentifier
) -> list[str]:
    """A value other than a dummy (:func:`_dummy`) left in an attribute the profile's table removes, empties or
    replaces (an address, a telephone number, a comment): the leftovers of a folder cleaned by another
    tool, found without its originals. Dates kept shifted (``retain-longitudinal-modified-dates``) and UIDs (keyed,
    checked apart) are not these."""
    action = table.action_for(elem.tag)
    if action is None or elem.tag.is_private or elem.tag.group == 0x0002 or name in _OWN or elem.VR == "UI":
        return []
    if shifted and elem.VR in ("DA", "DT", "TM"):
        return []
    code = ACTION_CODES.get(action.__name__, "")
    if code in _REMOVED_CODES and elem.VR == "SQ" and elem.value:
        return ["items in a sequence the profile removes or empties"]
    if code in _REMOVED_CODES | _REPLACED_CODES and any(not _dummy(t, elem.VR) for t in texts):
        return ["a value other than a dummy in an attribute the profile removes, empties or replaces"]
    return []


def _dummy(text: str, vr: str) -> bool:
    """A value the profile's actions leave: a pseudonym, ``ANONYMIZED``, the dummy date (0001-01-01), a time or
    number of zeros."""
    t = text.strip()
    if not _not_pseudonym(t):
        return True
    if vr in ("DA", "DT"):
        return t[:8] in _DUMMY_DATES and (not t[8:].strip("0.+-") or (vr == "DT" and t[8:] in _DUMMY_TIMES))
    return vr in ("TM", "IS", "DS", "US", "SS", "UL", "SL", "FL", "FD") and not t.strip("0.:+-")


def _pattern_findings(elem: DataElement, name: str, texts: list[str], shifted: bool) -> list[str]:
    rules = []
    tag = elem.tag
    if tag.group == 0x0002 and tag.element not in _META_KEPT:
        rules.append("file meta beyond the transfer essentials")
    if not tag.is_private and tag.group != 0x0002 and tag.element and not dictionary_has_tag(tag):
        rules.append("a public attribute unknown to the DICOM dictionary")
    if elem.VR == "UN" and not tag.is_private:
        rules.append("a UN value")
    unkeyed = elem.VR == "UI" and any(UID(t).name == t and not t.startswith("2.25.") for t in texts)
    if unkeyed and tag.group != 0x0002:
        rules.append("a UID neither DICOM's own nor keyed")
    if elem.VR == "PN" and any(_not_pseudonym(t) for t in texts):
        rules.append("a person name that is not a pseudonym")
    if name in _ID_ATTRIBUTES and any(_not_pseudonym(t) for t in texts):
        rules.append("an identifier that is not a pseudonym")
    real_date = elem.VR in ("DA", "DT") and any(t[:8] not in _DUMMY_DATES for t in texts)
    if real_date and (not shifted or name == "PatientBirthDate"):
        rules.append("a real date where dates were removed")
    free_text = elem.VR in FREE_TEXT_VRS and name not in _OWN and name not in _CODE_VALUES
    if free_text and any(_DATE_TEXT.search(t) for t in texts):
        rules.append("date-like text in a free-text attribute")
    unlisted = not tag.is_private and tag.group != 0x0002 and _TABLE.action_for(tag) is None
    kept_shifted = shifted and elem.VR in ("DA", "DT", "TM")
    if unlisted and texts and not kept_shifted and unlisted_identifying(tag, elem.VR) and name not in _OWN:
        rules.append("a name, free text or date in an attribute the profile's table does not list")
    return rules


def _dicom_findings(ds: Dataset, shown: str, needles: Needles, table: Deidentifier = _TABLE) -> list[Finding]:
    out: list[Finding] = []
    shifted = str(ds.get("LongitudinalTemporalInformationModified", "")) == "MODIFIED"
    codes = {str(c.get("CodeValue", "")) for c in ds.get("DeidentificationMethodCodeSequence", [])}
    safe_private = "113111" in codes  # Retain Safe Private: the user vouched for the private attributes kept
    for elem, own in _walk(ds):
        name = tag_name(elem.tag)
        if elem.tag.is_private and not safe_private:
            out.append(Finding(shown, name, "a private attribute remains"))
        if elem.tag == (0x7FE0, 0x0010):
            continue
        texts = _texts(elem)
        lower = [t.lower() for t in texts]
        # kept private attributes are searched for the public values (an accession number copied into them)
        rx = needles.public if safe_private and elem.tag.is_private else needles.every
        searched = not (shifted and elem.VR == "TM") and not own and name not in _OWN
        text = needles.text if elem.VR in _TEXT_ONLY_VRS or elem.tag.is_private else None
        short = needles.short if elem.VR in _SHORT_VRS else None
        if searched and any(p is not None and any(p.search(t) for t in lower) for p in (rx, text, short)):
            out.append(Finding(shown, name, "holds an identifying value of the original"))
        out += [Finding(shown, name, r) for r in _pattern_findings(elem, name, texts, shifted)]
        if not own:
            out += [Finding(shown, name, r) for r in _table_findings(elem, name, texts, shifted, table)]
    if (why := burned_in(ds)) is not None:  # what anonymize refuses without --allow-burned-in
        out.append(Finding(shown, "pixels", f"may show burned-in identifying text ({why})"))
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        out.append(Finding(shown, "file meta", "has no TransferSyntaxUID (readers cannot decode the pixels)"))
    if str(ds.get("PatientIdentityRemoved", "")) != "YES":
        out.append(Finding(shown, "PatientIdentityRemoved", "is not YES"))
    if any(
        getattr(ds, "preamble", None) or b""
    ):  # 128 free bytes before DICM: text there is not an attribute
        out.append(Finding(shown, "preamble", "is not zeroed (it may hold text of the original)"))
    return out


def check_folder(root: Path, original: Path | None = None) -> list[Finding]:
    """Every finding in the files under ``root`` (sorted by file)."""
    options = options_used(root)
    needles = identifying_values(original, options) if original is not None else Needles(None, None)
    table = _rules(options)  # what the run's options keep (patient characteristics) is no leftover
    findings: list[Finding] = []
    for path in files_to_check(root):
        shown = relative(path, root)
        if any(p is not None and p.search(shown.lower()) for p in (needles.every, needles.text)):
            findings.append(Finding(shown, "file name", "holds an identifying value of the original"))
        if is_nifti(path):
            try:
                findings += [Finding(shown, a, r) for a, r in nifti_findings(path, needles.every)]
            except Exception:  # any unreadable file is a finding, not a crash
                findings.append(Finding(shown, "file", "not readable as NIfTI (cannot be checked)"))
            continue
        try:
            ds = pydicom.dcmread(path)
        except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError):
            findings.append(Finding(shown, "file", "not readable as DICOM (cannot be checked)"))
            continue
        findings += _dicom_findings(ds, shown, needles, table)
    return findings
