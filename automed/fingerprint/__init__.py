"""Dataset fingerprint: what the planner needs to know about a dataset."""

from automed.fingerprint.extract import extract_fingerprint
from automed.fingerprint.schema import Fingerprint

__all__ = ["Fingerprint", "extract_fingerprint"]
