"""DICOM de-identification: the PS3.15 Annex E Basic Application Level Confidentiality Profile.

The per-attribute actions (D, Z, X, K, U and their combinations) are dicom-anonymizer's table of the current DICOM
edition, not a table of ours; we apply them at every depth of nested sequences (the library only looks at the top
level) and replace three of its behaviours where the profile asks for more than a dummy value:

- UIDs (U, and D on a UID) are keyed (:meth:`DeidKey.uid`): the same input UID becomes the same output UID in every
  file of the run, references inside sequences included, and in later runs with the same key;
- Patient ID and Patient's Name become one pseudonym per patient;
- with ``retain-longitudinal-modified-dates``, dates move back by one offset per patient instead of being removed.

Attributes the table does not list but that may hold a name, free text or a date (:func:`unlisted_identifying`)
are removed too, at every depth. Private attributes are removed. Each file records what was done (``PatientIdentityRemoved``, the method and its
codes, ``LongitudinalTemporalInformationModified``); :class:`Deidentifier` counts, per attribute, the action and the
number of files it touched, never a value."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pydicom
import yaml
from dicomanonymizer import simpledicomanonymizer as table_lib
from pydicom.datadict import dictionary_has_tag, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from automed._version import __version__
from automed.errors import ConfigError
from automed.registry import check_choice
from automed.tools.deid_keys import DeidKey

TABLE = "dicomfields_2026c"  # the DICOM edition whose Table E.1-1 dicom-anonymizer ships
ACTION_CODES = {
    "replace": "D",
    "empty": "Z",
    "delete": "X",
    "keep": "K",
    "replace_UID": "U",
    "empty_or_replace": "Z/D",
    "delete_or_empty": "X/Z",
    "delete_or_replace": "X/D",
    "delete_or_empty_or_replace": "X/Z/D",
    "delete_or_empty_or_replace_UID": "X/Z/U*",
}
LONGITUDINAL = "retain-longitudinal-modified-dates"
PATIENT_CHARACTERISTICS = "retain-patient-characteristics"
SAFE_PRIVATE = "retain-safe-private"
OPTIONS = {
    SAFE_PRIVATE: codes.DCM.RetainSafePrivateOption,
    LONGITUDINAL: codes.DCM.RetainLongitudinalTemporalInformationModifiedDatesOption,
    PATIENT_CHARACTERISTICS: codes.DCM.RetainPatientCharacteristicsOption,
}
# kept under the Retain Patient Characteristics Option (PS3.15 Table E.1-1)
_CHARACTERISTICS = (
    "PatientAge",
    "PatientSex",
    "PatientSize",
    "PatientWeight",
    "EthnicGroup",
    "SmokingStatus",
    "PregnancyStatus",
    "PatientSexNeutered",
)
# modalities whose pixels often carry burned-in text when the header does not say otherwise
BURNED_IN_MODALITIES = ("US", "SC", "XC", "ES", "OT", "GM")
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture and its multi-frame classes (.7.1-.7.4)
_UID_CODES = {"U", "D", "X/Z/U*", "X/D", "X/Z/D", "Z/D"}
_BIRTH_DATE = Tag(0x0010, 0x0030)
_BIRTH_TIME = Tag(0x0010, 0x0032)  # removed with the birth date, also when other dates are kept shifted
_PATIENT_ID = Tag(0x0010, 0x0020)
_PATIENT_NAME = Tag(0x0010, 0x0010)
_TIMES_KEPT = "K (kept with shifted dates)"
# file meta information kept (PS3.10 7.1); the rest (AE titles, addresses, private information) goes
_META_KEPT = {Tag(0x0002, e) for e in (0x0000, 0x0001, 0x0002, 0x0003, 0x0010, 0x0012, 0x0013)}

Action = Callable[[Dataset, Any], None]
# value representations that can hold a person's name or free text: unlisted attributes of these go
NAME_OR_TEXT_VRS = ("PN", "ST", "LT", "UT", "UC")
# short strings (LO, SH) of unlisted attributes go when their keyword says they hold one of these
_TEXT_KEYWORD = re.compile(r"Name|Date|Time|Calendar|Comment|Address|Telephone|Text|Note|Remark|Report")
# names of things, not people: kept (ManufacturerModelName, SequenceName, TransmitCoilName, CodingSchemeName, ...)
_CODES = {Tag(tag_for_keyword(k) or 0) for k in ("LongCodeValue", "CodeValue", "CodeMeaning")}
_TECHNICAL_NAME = re.compile(r"(Model|Coil|Sequence|Scheme|Algorithm|Software|Filter|Kernel|Code)Name$")


def check_options(options: list[str]) -> list[str]:
    for o in options:
        check_choice(o, tuple(OPTIONS), what="the de-identification option", where="--option")
    return sorted(set(options))


SafePrivate = set[tuple[int, str, int]]  # (group, private creator, element offset)


def load_safe_private(path: Path) -> SafePrivate:
    """The safe private attributes of a YAML/JSON file ``{creator: ["GGGG,EE", ...]}`` (group and element offset
    in hex, as PS3.15 Table E.3.10-1 lists them)."""
    try:
        data = yaml.safe_load(path.read_text())
        pairs: SafePrivate = set()
        for creator, els in data.items():
            if not isinstance(els, list):
                raise TypeError(f"{creator!r} maps to {els!r}, not a list")
            for e in els:
                group, offset = (int(v, 16) for v in str(e).split(","))
                pairs.add((group, str(creator), offset))
        if not pairs or any(not 0 <= e <= 0xFF or not g % 2 for g, _, e in pairs):
            raise ValueError("empty, an even (public) group or an offset outside 00-FF")
    except (OSError, yaml.YAMLError, AttributeError, TypeError, ValueError) as exc:
        raise ConfigError.single(
            path,
            "a safe-private list maps each private creator to element offsets (00-FF)",
            f"unreadable ({exc})",
            'write e.g. {"SIEMENS MR HEADER": ["0019,08", "0051,0A"]} from PS3.15 Table E.3.10-1 or the vendor\'s statement',
        ) from exc
    return pairs


def burned_in(ds: Dataset) -> str | None:
    """Why the pixels may show identifying text, or ``None``."""
    flag = str(ds.get("BurnedInAnnotation", "")).upper()
    if flag == "YES":
        return "BurnedInAnnotation is YES"
    modality = str(ds.get("Modality", ""))
    if not flag and modality in BURNED_IN_MODALITIES:
        return f"BurnedInAnnotation is absent for modality {modality}, which often carries burned-in text"
    sop = str(ds.get("SOPClassUID", ""))
    image_type = {str(t).upper() for t in (ds.get("ImageType") or [])}
    # (ImageType SECONDARY alone means derived, e.g. a reformat: not a screenshot)
    if not flag and (sop.startswith(SECONDARY_CAPTURE) or image_type & {"SCREEN", "SCREEN SAVE"}):
        # a screenshot (dose report, annotated key image) under any modality: names are often in the pixels
        return "BurnedInAnnotation is absent for a secondary capture or screenshot, which often carries burned-in text"
    return None


def unlisted_identifying(tag: BaseTag, vr: str) -> bool:
    """Whether a public attribute the profile's table does not list may identify someone: a person name, free
    text, a date or time, a URL or URI (``RetrieveURL``: a query naming the patient ID or the original study UID,
    which re-links the output to its source), an application entity title, or a short string whose keyword names a date, a name, a comment, an address and the like
    (``PatientBirthDateInAlternativeCalendar``, ``TextValue``, ``EvaluatorName``, ...)."""
    if tag in _CODES:  # a code's value, in a code item: no one's text
        return False
    if vr in NAME_OR_TEXT_VRS or vr in (
        "DA",
        "DT",
        "TM",
        "UR",
        "AE",
    ):  # a URL may carry a patient ID or a UID
        return True
    keyword = keyword_for_tag(tag) or ""
    return vr in ("LO", "SH") and bool(_TEXT_KEYWORD.search(keyword)) and not _TECHNICAL_NAME.search(keyword)


def _done(ds: Dataset, tag: BaseTag, code: str | None) -> str:
    """The table's ``code`` as it was carried out: removed (X), emptied (Z) or given a dummy value (D); a delete
    the library does by a dummy value (a date becomes 00010101) is reported as such."""
    if code not in ACTION_CODES.values():  # an action outside the table's codes: said by its name, as before
        return code or "?"
    done = "X" if tag not in ds else "Z" if ds[tag].value in (None, "", b"") else "D"
    return done if done in (code or "").split("/") else f"{done} (table: {code or '?'})"


def _values(elem: pydicom.DataElement) -> list[Any]:
    if elem.value is None or elem.value == "":
        return []
    return list(elem.value) if elem.VM > 1 else [elem.value]


def _registered(uid: str) -> bool:
    """A UID of the DICOM standard (SOP classes, transfer syntaxes, ...), which identifies nobody."""
    return UID(uid).name != uid


def tag_name(tag: BaseTag) -> str:
    return keyword_for_tag(tag) or f"({tag.group:04X},{tag.element:04X})"


def _shift(value: str, delta: dt.timedelta) -> str | None:
    """``value`` (DA, or the date part of DT) moved by ``delta``; ``None`` when it is not a full date."""
    head, tail = value[:8], value[8:]
    try:
        day = dt.datetime.strptime(head, "%Y%m%d").date()
    except ValueError:
        return None
    return (day + delta).strftime("%Y%m%d") + tail


def _complete_meta(ds: Dataset, meta: FileMetaDataset) -> None:
    """The file meta a reader needs: a file written without one (its dataset straight after ``DICM``, which pydicom
    and GDCM read) had come out with the SOP instance alone, unreadable by SimpleITK and pydicom's pixel decoding.
    The transfer syntax is the dataset's own encoding; the SOP class and instance are the dataset's."""
    if "TransferSyntaxUID" not in meta:
        implicit, little = ds.original_encoding
        meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit is not False else ExplicitVRLittleEndian if little is not False
            else ExplicitVRBigEndian
        )  # fmt: skip
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


class Deidentifier:
    """Cleans datasets in place; ``counts`` holds (attribute, action) -> files."""

    def __init__(
        self, key: DeidKey, options: list[str] | None = None, safe_private: SafePrivate | None = None
    ) -> None:
        """``safe_private``: (private creator, element offset) pairs kept under ``retain-safe-private`` - the
        user's list (the standard's Table E.3.10-1 or the vendor's conformance statement); no list ships here."""
        self.key = key
        self.options = check_options(options or [])
        self.safe_private = (safe_private or set()) if SAFE_PRIVATE in self.options else set()
        actions: dict[tuple[int, ...], Action] = table_lib.initialize_actions(TABLE)
        self.exact: dict[BaseTag, Action] = {Tag(t[0], t[1]): f for t, f in actions.items() if len(t) == 2}
        self.ranged = [(t, f) for t, f in actions.items() if len(t) == 4]
        if PATIENT_CHARACTERISTICS in self.options:
            for kw in _CHARACTERISTICS:
                self.exact[Tag(tag_for_keyword(kw) or 0)] = table_lib.keep
        self.counts: Counter[tuple[str, str]] = Counter()
        self.files = 0
        self.patients: set[str] = set()  # the pseudonyms of this run
        # DeidentificationMethod is LO (64 characters a value): one value per part
        self.method = [
            f"automed {__version__}",
            "PS3.15 Basic Application Level Confidentiality Profile",
            f"table {TABLE} of dicom-anonymizer {metadata.version('dicom-anonymizer')}",
            "keyed UIDs",
            "patient pseudonyms",
            "private attributes removed" + (" except the safe list" if SAFE_PRIVATE in self.options else ""),
            *self.options,
        ]

    def action_for(self, tag: BaseTag) -> Action | None:
        found = self.exact.get(tag)
        if found is not None:
            return found
        for (g, e, gm, em), f in self.ranged:
            if tag.group & gm == g & gm and tag.element & em == e & em:
                return f
        return None

    def clean(self, ds: Dataset) -> str:
        """De-identify ``ds`` in place; return the patient's pseudonym."""
        # who the file belongs to: its patient ID, else name, else its study (never one pseudonym for all unknowns)
        patient = str(ds.get("PatientID", "") or ds.get("PatientName", "") or "") or "study:" + str(
            ds.get("StudyInstanceUID", "") or ds.get("SOPInstanceUID", "")
        )
        shift = self.key.date_shift(patient) if LONGITUDINAL in self.options else None
        seen: set[tuple[str, str]] = set()
        self._walk(ds, shift, seen, top=True)
        self._private(ds, seen)
        pseudonym = self.key.pseudonym(patient)
        self.patients.add(pseudonym)
        ds[_PATIENT_ID] = pydicom.DataElement(_PATIENT_ID, "LO", pseudonym)
        ds[_PATIENT_NAME] = pydicom.DataElement(_PATIENT_NAME, "PN", pseudonym)
        seen |= {("PatientID", "D (pseudonym)"), ("PatientName", "D (pseudonym)")}
        self._mark(ds)
        ds.preamble = (
            b"\0" * 128
        )  # the preamble is free bytes: vendors (and TIFF/DICOM dual files) put text there
        meta = getattr(ds, "file_meta", None)
        if meta is None:
            ds.file_meta = meta = FileMetaDataset()
        for tag in [e.tag for e in meta if e.tag not in _META_KEPT]:
            del meta[tag]
            seen.add((tag_name(tag), "X (file meta)"))
        _complete_meta(ds, meta)
        self.counts.update(seen)
        self.files += 1
        return pseudonym

    def _private(self, ds: Dataset, seen: set[tuple[str, str]]) -> None:
        """Remove private attributes at every depth; keep the top-level ones of the safe list."""
        keep = []
        for elem in ds:
            if elem.tag.is_private and elem.tag.element >= 0x1000:
                creator = str(
                    ds.get((elem.tag.group, elem.tag.element >> 8), pydicom.DataElement(0, "LO", "")).value
                )
                if (elem.tag.group, creator, elem.tag.element & 0xFF) in self.safe_private:
                    keep.append((creator, elem))
        if any(e.tag.is_private for e in ds.iterall()):
            ds.remove_private_tags()
            seen.add(("private attributes", "X"))
        for creator, elem in keep:
            ds.private_block(elem.tag.group, creator, create=True).add_new(
                elem.tag.element & 0xFF, elem.VR, elem.value
            )
            seen.add(
                (f"private {elem.tag.group:04X} {creator} {elem.tag.element & 0xFF:02X}", "K (safe list)")
            )

    def _mark(self, ds: Dataset) -> None:
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = self.method
        items = []
        for code in [codes.DCM.BasicApplicationConfidentialityProfile, *(OPTIONS[o] for o in self.options)]:
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = (
                code.value,
                code.scheme_designator,
                code.meaning,
            )
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        ds.LongitudinalTemporalInformationModified = "MODIFIED" if LONGITUDINAL in self.options else "REMOVED"

    def _walk(
        self, ds: Dataset, shift: dt.timedelta | None, seen: set[tuple[str, str]], *, top: bool = False
    ) -> None:
        for tag in list(ds.keys()):
            if tag.is_private or (top and tag in (_PATIENT_ID, _PATIENT_NAME)):  # pseudonyms, set by clean()
                continue
            elem = ds[tag]
            action = self.action_for(tag)
            code = ACTION_CODES.get(action.__name__, action.__name__) if action is not None else None
            name = tag_name(tag)
            if elem.VR == "SQ":
                if code == "X":
                    del ds[tag]
                elif code in ("Z", "X/Z"):
                    elem.value = Sequence([])
                else:
                    for item in elem.value:
                        self._walk(item, shift, seen)
                    if code is None or code == "K":
                        continue
                    code += " (items cleaned)"
                seen.add((name, code))
                continue
            if action is None:
                self._unlisted(ds, tag, elem, shift, seen)
                continue
            if code == "K":
                continue
            if shift is not None and elem.VR in ("DA", "DT") and tag != _BIRTH_DATE:
                moved = _shift(str(elem.value or ""), shift)
                if moved is not None:
                    elem.value = moved
                    seen.add((name, "C (date shifted)"))
                    continue
            if shift is not None and elem.VR == "TM" and tag != _BIRTH_TIME:
                seen.add((name, _TIMES_KEPT))
                continue
            if elem.VR == "UI" and code in _UID_CODES:
                self._replace_uid(elem)
                seen.add((name, "U (keyed)"))
                continue
            try:
                action(ds, tag)
            except NotImplementedError:  # a VR the library has no dummy value for: remove the attribute
                del ds[tag]
                code = "X (no dummy for its VR)"
            else:
                code = _done(ds, tag, code)
            seen.add((name, code))

    def _unlisted(
        self,
        ds: Dataset,
        tag: BaseTag,
        elem: pydicom.DataElement,
        shift: dt.timedelta | None,
        seen: set[tuple[str, str]],
    ) -> None:
        """Attributes the profile's table does not list (PS3.15 asks that identifying ones be handled too):
        public ones unknown to the DICOM dictionary, UN values, and those that can hold a name, free text or a date
        (:func:`unlisted_identifying`) go - dates move instead under ``retain-longitudinal-modified-dates``; UIDs
        that are not registered DICOM UIDs are keyed like listed ones (they may embed device serials and dates, and
        references to replaced UIDs must follow)."""
        if tag.element == 0:  # group length
            return
        if not dictionary_has_tag(tag) or elem.VR == "UN":
            del ds[tag]
            seen.add((tag_name(tag), "X (unknown attribute)" if elem.VR != "UN" else "X (UN value)"))
        elif shift is not None and elem.VR in ("DA", "DT") and tag != _BIRTH_DATE:
            moved = [_shift(str(v), shift) for v in _values(elem)]
            if all(m is not None for m in moved):
                elem.value = moved[0] if len(moved) == 1 else moved
                seen.add((tag_name(tag), "C (date shifted, not in the table)"))
            else:
                del ds[tag]
                seen.add((tag_name(tag), "X (not a date to shift, not in the table)"))
        elif shift is not None and elem.VR == "TM" and tag != _BIRTH_TIME:
            seen.add((tag_name(tag), _TIMES_KEPT))
        elif unlisted_identifying(tag, elem.VR):
            del ds[tag]
            seen.add((tag_name(tag), "X (name, text or date not in the table)"))
        elif elem.VR == "UI" and any(not _registered(str(v)) for v in _values(elem)):
            self._replace_uid(elem, keep_registered=True)
            seen.add((tag_name(tag), "U (keyed, not in the table)"))

    def _replace_uid(self, elem: pydicom.DataElement, *, keep_registered: bool = False) -> None:
        if keep_registered:
            new = [v if _registered(str(v)) else self.key.uid(str(v)) for v in _values(elem)]
            elem.value = new[0] if len(new) == 1 else new
            return
        if elem.VM > 1:
            elem.value = [self.key.uid(str(v)) for v in elem.value]
        elif elem.value:
            elem.value = self.key.uid(str(elem.value))

    def report(self) -> dict[str, Any]:
        """Per attribute: the action(s) and how many files each touched (no values)."""
        rows: dict[str, dict[str, int]] = {}
        for (name, code), n in sorted(self.counts.items()):
            rows.setdefault(name, {})[code] = n
        return {
            "files": self.files,
            "options": self.options,
            "method": "; ".join(self.method),
            "attributes": rows,
        }
