"""What may leave the machine: case IDs become keyed pseudonyms, local paths become placeholders, tracking URIs
lose their credentials.

Case IDs are often record numbers and folder paths often name patients or users. Everything automed sends away
(MLflow params, tags, artifacts and model descriptions; export and cube folders) passes through a
:class:`Redactor`. A pseudonym is ``case-`` + the first 12 hex digits of HMAC-SHA256(key, case ID), the key being
32 random bytes kept in the work dir (``pseudonym.key``, mode 0600, never logged or exported): stable within a work
dir and its sweep trials, not reversible without the key (a plain hash of an 8-digit record number is).

Redaction is structural, not a text search: a JSON string value, list item or key equal to a case ID, a CSV cell of
an ID column, a path component equal to an ID (``MRN1.nii.gz``, ``validation/MRN1.nii.gz``) is replaced; a string
naming a local folder that automed knows (the dataset, the work dir, the home folder, any image's folder) gets a
placeholder. In free text (model cards) only IDs of at least four characters are replaced word by word, so that an
ID ``1`` does not turn every number ``1`` into a pseudonym. ``keep_case_ids`` keeps the IDs (paths still go).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

PREFIX = "case-"
KEY_BYTES = 32
# JSON keys and CSV columns whose values are case IDs wherever they appear
ID_KEYS = frozenset(
    {
        "case",
        "case_id",
        "case_ids",
        "cases",
        "parity_case",
        "subject",
        "subjectid",
        "train",
        "val",
        "test",
        "id",
    }
)
TEXT_SUFFIXES = (".json", ".csv", ".md", ".txt", ".yaml", ".yml", ".html")
FILE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".png", ".npz", ".npy", ".pt", ".json", ".dcm")
_SECRET_QUERY = re.compile(r"(pass|secret|token|key|auth|credential|signature)", re.IGNORECASE)
_TOKEN = re.compile(r"[^\s`'\"()\[\]{},;<>|*=]+")


def _folder_ends(text: str, end: int) -> bool:
    """Whether a folder name found in ``text`` ends at ``end`` (not a longer name: ``/w`` in ``/w2`` or ``/w.d``)."""
    nxt = text[end : end + 1]
    if nxt in ("", "/"):
        return True
    if nxt == ".":  # the end of a sentence, not a longer name
        return text[end + 1 : end + 2] in ("", " ", "\n")
    return not (nxt.isalnum() or nxt in "_-")


def load_key(path: Path, *, create: bool = True) -> bytes:
    """The work dir's pseudonym key, written once (32 random bytes, mode 0600) when ``create``."""
    if path.is_file():
        data = path.read_bytes()
        if len(data) == KEY_BYTES:
            return data
    if not create:
        raise FileNotFoundError(path)
    key = secrets.token_bytes(KEY_BYTES)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # first writer wins; a concurrent one reads the winner's key
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes()


def pseudonym(key: bytes, case_id: str) -> str:
    """``case-`` + 12 hex digits of HMAC-SHA256(key, case_id): stable for one key, not reversible without it."""
    return PREFIX + hmac.new(key, case_id.encode(), hashlib.sha256).hexdigest()[:12]


def public_uri(uri: str) -> str:
    """``uri`` without credentials: no user info (``user:password@``), no secret-looking query values; a local
    store keeps only its file name (``sqlite:///…/mlflow.db``)."""
    if uri.startswith("sqlite:///") or uri.startswith("file:") or uri.startswith("/"):
        name = uri.rstrip("/").rsplit("/", 1)[-1]
        scheme = uri.split(":", 1)[0] if ":" in uri else "file"
        return f"{scheme}:///…/{name}"
    return strip_credentials(uri)


def strip_credentials(uri: str) -> str:
    """``uri`` without a password in its user info or secret-looking query values (local paths kept): what a work
    dir may store to reopen its store. MLflow reads credentials from ``MLFLOW_TRACKING_USERNAME`` /
    ``MLFLOW_TRACKING_PASSWORD`` / ``MLFLOW_TRACKING_TOKEN``."""
    if "://" not in uri or uri.startswith(("sqlite:", "file:")):
        return uri
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparsable tracking URI>"
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    query = urlencode(
        [(k, "***" if _SECRET_QUERY.search(k) else v) for k, v in parse_qsl(parts.query)], safe="*"
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _strong(case_id: str) -> bool:
    """IDs safe to replace word by word in free text (``1`` or ``007`` would hit ordinary numbers)."""
    return len(case_id) >= 4 and not (case_id.isdigit() and len(case_id) < 5)


@dataclass(frozen=True)
class Redactor:
    """Pseudonyms for ``case_ids`` under ``key`` and placeholders for the folders in ``places`` (placeholder ->
    folder). Picklable, so a fold worker gets its own."""

    key: bytes
    case_ids: frozenset[str] = frozenset()
    places: tuple[
        tuple[str, str], ...
    ] = ()  # (folder, its placeholder: <dataset>, <workdir>, ~), longest first
    keep_case_ids: bool = False
    _names: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(
        cls,
        key: bytes,
        case_ids: Iterable[str],
        places: Mapping[str, Path | str],
        *,
        keep_case_ids: bool = False,
    ) -> Redactor:
        marks = {str(Path(p)): f"<{name}>" for name, p in places.items() if str(p) not in ("", "/", ".")}
        marks.setdefault(str(Path.home()), "~")
        for folder in list(
            marks
        ):  # the resolved form of each folder too (symlinked tmp, /home -> /data/home)
            marks.setdefault(os.path.realpath(folder), marks[folder])
        ordered = tuple(sorted(marks.items(), key=lambda fm: -len(fm[0])))  # the most specific folder first
        return cls(key, frozenset(case_ids), ordered, keep_case_ids)

    def case(self, case_id: str) -> str:
        """The pseudonym of one case ID (the ID itself with ``keep_case_ids``)."""
        if self.keep_case_ids:
            return case_id
        if case_id not in self._names:
            self._names[case_id] = pseudonym(self.key, case_id)
        return self._names[case_id]

    def _component(self, part: str) -> str:
        # a path's last part followed by punctuation: automed's "PATH: rule" errors ("…/4711.nii.gz: images must
        # be readable") had kept a short numeric ID, which only a file ending lets through as an ID
        core = part.rstrip(".:;,)]}'\"")
        if core and core != part:
            return self._component(core) + part[len(core) :]
        if part in self.case_ids:
            return self.case(part)
        for suffix in FILE_SUFFIXES:
            if part.endswith(suffix):
                stem = part[: -len(suffix)]
                if stem in self.case_ids:
                    return self.case(stem) + suffix
                channel = re.fullmatch(r"(.+)(_\d{4})", stem)  # nnU-Net channel files: ID_0000.nii.gz
                if channel and channel.group(1) in self.case_ids:
                    return self.case(channel.group(1)) + channel.group(2) + suffix
        # ID.anything of a cache or a tool (ID.data.npy, a hidden temporary .ID.data.123.npy; IDs may hold dots)
        lead = "." if part.startswith(".") else ""
        body = part[len(lead) :]
        dots = [i for i, ch in enumerate(body) if ch == "."]
        for i in reversed(dots):  # the longest ID first; "10234.5" is a number, not ID 10234 with a suffix
            if (
                body[:i] in self.case_ids
                and _strong(body[:i])
                and not body[i + 1 :].replace(".", "").isdigit()
            ):
                return lead + self.case(body[:i]) + body[i:]
        return part

    def path_text(self, text: str) -> str:
        """A path-like string: known folders become placeholders, then ID components become pseudonyms."""
        for folder, mark in self.places:  # every occurrence of every folder, the most specific first
            idx = text.find(folder)
            while idx >= 0:
                end = idx + len(folder)
                # the whole folder, at the start or inside a URI (sqlite:////home/x/db), never a longer name
                if _folder_ends(text, end) and (idx == 0 or not text[idx - 1].isalnum()):
                    text = text[:idx] + mark + text[end:]
                    end = idx + len(mark)
                idx = text.find(folder, end)
        if self.keep_case_ids or not self.case_ids:
            return text
        return "/".join(self._component(p) for p in text.split("/"))

    def value(self, obj: Any, key: str | None = None) -> Any:
        """A JSON-like value with IDs and paths redacted (keys too)."""
        if isinstance(obj, dict):
            out: dict[Any, Any] = {}
            for k, v in obj.items():
                nk = self.case(k) if isinstance(k, str) and k in self.case_ids and _strong(k) else k
                if isinstance(nk, str):
                    nk = self.path_text(nk) if "/" in nk else nk
                out[nk] = self.value(v, str(k).lower())
            return out
        if isinstance(obj, list | tuple):
            return [self.value(v, key) for v in obj]
        if isinstance(obj, str):
            if obj in self.case_ids and (key in ID_KEYS or _strong(obj)):
                return self.case(obj)
            return self.path_text(obj) if "/" in obj else obj
        return obj

    def text(self, text: str) -> str:
        """Free text (a model card, a log line): word-like tokens checked as paths and strong IDs."""

        def one(m: re.Match[str]) -> str:
            tok = m.group(0)
            if "/" in tok:
                return self.path_text(tok)
            # a word with sentence punctuation around it ("MRN1:", "found MRN1.", ":MRN1")
            core = tok.strip(".:")
            if not core:
                return tok
            i = tok.find(core)
            if core in self.case_ids and _strong(core):
                return tok[:i] + self.case(core) + tok[i + len(core) :]
            return self._component(tok) if "." in tok.strip(".") else tok

        return _TOKEN.sub(one, text)

    def message(self, text: str) -> str:
        """An error message (free text from any library): as :meth:`text`, and an absolute path outside every known
        folder keeps only its file name (its folders may name a person or a site; a bare folder becomes ``…``)."""
        redacted = self.text(text)
        marks = tuple(mark for _, mark in self.places)

        def short(m: re.Match[str]) -> str:
            tok = m.group(0)
            if redacted[: m.start()].endswith(marks):  # <workdir>/...: a known folder, already a placeholder
                return tok
            windows = re.match(r"(.*?)([A-Za-z]:\\.*)$", tok)
            if windows:
                prefix, path, sep = windows.group(1), windows.group(2).rstrip("\\"), "\\"
            else:
                i = tok.find("/")
                prefix, path, sep = tok[:i], tok[i:].rstrip("/"), "/"
                if i < 0 or (prefix and not prefix.endswith(":")):  # a relative path, or not a path
                    return tok
                if path.lstrip("/").count("/") == 0:  # one name after the root (/div, /tmp): nothing to hide
                    return tok
            last = path.rsplit(sep, 1)[-1]
            return prefix + ("…" + sep + self._component(last) if "." in last else "…")

        return _TOKEN.sub(short, redacted)

    def csv_text(self, text: str) -> str:
        rows = list(csv.reader(io.StringIO(text)))
        if not rows:
            return text
        id_cols = {i for i, h in enumerate(rows[0]) if h.strip().lower() in ID_KEYS}
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(rows[0])
        for row in rows[1:]:
            w.writerow(
                [
                    (self.case(c) if i in id_cols and c in self.case_ids else self.value(c))
                    for i, c in enumerate(row)
                ]
            )
        return buf.getvalue()

    def name(self, file_name: str) -> str:
        """A file name with an ID in it pseudonymised (``MRN1.png`` -> ``case-….png``)."""
        return self._component(file_name)

    def copy(self, src: Path, dest: Path) -> Path:
        """Write a redacted copy of ``src`` at ``dest`` (text files rewritten, others copied as they are)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        suffix = src.suffix.lower()
        if suffix not in TEXT_SUFFIXES:
            shutil.copyfile(src, dest)
            return dest
        raw = src.read_text(encoding="utf-8")
        if suffix == ".json":
            try:
                out = json.dumps(self.value(json.loads(raw)), indent=1)
            except ValueError:
                out = self.text(raw)
        elif suffix == ".csv":
            out = self.csv_text(raw)
        else:
            out = self.text(raw)
        dest.write_text(out, encoding="utf-8")
        return dest

    def tree(self, src: Path, dest: Path) -> Path:
        """A redacted copy of a folder (file names and text contents)."""
        for f in sorted(src.rglob("*")):
            if f.is_file():
                rel = Path(*(self.name(p) for p in f.relative_to(src).parts))
                self.copy(f, dest / rel)
        return dest


def no_redaction() -> Redactor:
    """A redactor that changes nothing but known folders (home): for code paths without a work dir."""
    return Redactor.build(b"\0" * KEY_BYTES, (), {}, keep_case_ids=True)
