"""The secret of a de-identification run: keyed UIDs, patient pseudonyms and per-patient date offsets.

With ``--key FILE`` the secret is read from (or created in) that file, so a second run with the same key maps the
same input UID to the same output UID and the same patient to the same pseudonym; the pseudonym -> original ID
mapping is written only there. Without a key, each run draws a fresh secret and keeps no mapping."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from automed.errors import ConfigError
from automed.records import fits, shown

KEY_SCHEMA = 1
PSEUDONYM_PREFIX = "ANON"
# dates move back by a whole number of days in this range (one offset per patient)
SHIFT_DAYS = (365, 3650)


@dataclass
class DeidKey:
    secret: bytes
    path: Path | None = None
    pseudonyms: dict[str, str] = field(
        default_factory=dict
    )  # pseudonym -> original (only saved with a key file)

    def _digest(self, purpose: str, value: str) -> bytes:
        return hmac.new(self.secret, f"{purpose}\0{value}".encode(), hashlib.sha256).digest()

    def uid(self, original: str) -> str:
        """A new UID for ``original`` (2.25 form: a 128-bit integer), the same for the same secret."""
        return "2.25." + str(int.from_bytes(self._digest("uid", original)[:16], "big"))

    def pseudonym(self, patient_id: str) -> str:
        name = f"{PSEUDONYM_PREFIX}{self._digest('patient', patient_id)[:5].hex().upper()}"
        self.pseudonyms[name] = patient_id
        return name

    def file_name(self, stem: str) -> str:
        """A name for a file whose own name may carry identifying text (NIfTI files)."""
        name = f"{PSEUDONYM_PREFIX}{self._digest('file', stem)[:5].hex().upper()}"
        self.pseudonyms[name] = stem
        return name

    def date_shift(self, patient_id: str) -> dt.timedelta:
        lo, hi = SHIFT_DAYS
        n = int.from_bytes(self._digest("date", patient_id)[:4], "big")
        return dt.timedelta(days=-(lo + n % (hi - lo + 1)))

    def save(self) -> None:
        """Write the secret and the mapping to the key file (owner-only permissions, replaced atomically)."""
        if self.path is None:
            return
        data = {
            "schema_version": KEY_SCHEMA,
            "secret": self.secret.hex(),
            "pseudonyms": dict(sorted(self.pseudonyms.items())),
        }
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        tmp.replace(self.path)


def load_key(path: Path | None) -> DeidKey:
    """The key in ``path`` (created on first use), or a one-run secret when ``path`` is ``None``."""
    if path is None:
        return DeidKey(secrets.token_bytes(32))
    path = path.expanduser().resolve()
    if path.is_dir():
        raise ConfigError.single(
            path, "a key is a file", "a folder", "pass a file path, e.g. --key FOLDER/study.key"
        )
    if not path.exists():
        if not path.parent.is_dir():
            raise ConfigError.single(
                path,
                "the key file's folder must exist",
                "no such folder",
                "create the folder or choose another path",
            )
        return DeidKey(secrets.token_bytes(32), path)
    try:
        data = json.loads(path.read_text())
        secret = bytes.fromhex(data["secret"])
        if data.get("schema_version") != KEY_SCHEMA or len(secret) < 16:
            raise ValueError("version or length")
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ConfigError.single(
            path,
            f"a key file is the JSON automed anonymize wrote (schema_version {KEY_SCHEMA}, a hex secret)",
            f"unreadable ({type(exc).__name__})",
            "pass the key file of the earlier run, or a new path to start a new key",
        ) from exc
    pseudonyms = data.get("pseudonyms", {})
    if not fits(dict[str, str], pseudonyms):  # it had crashed with a bare TypeError or ValueError
        raise ConfigError.single(
            path,
            "a key file's pseudonyms map each pseudonym to the ID it stands for (text)",
            shown(pseudonyms),
            "pass the key file of the earlier run as it wrote it, or a new path to start a new key",
        )
    return DeidKey(secret, path, dict(pseudonyms))
