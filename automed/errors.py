"""Typed errors. Every user-facing error names the file, the rule, the offending value and the fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Self


@dataclass(frozen=True)
class Problem:
    """One problem found in user input.

    Attributes:
        file: the file (or folder) the problem is in.
        rule: the rule that was broken, in a few words.
        value: the offending value, as found.
        fix: what the user should do.
    """

    file: str
    rule: str
    value: str
    fix: str

    def __str__(self) -> str:
        return f"{self.file}: {self.rule}; found {self.value}. Fix: {self.fix}"


class AutomedError(Exception):
    """Base class of every error automed raises on purpose."""


class ProblemsError(AutomedError):
    """An error that carries one or more :class:`Problem` s, all reported at once."""

    def __init__(self, problems: list[Problem], headline: str = "") -> None:
        self.problems = list(problems)
        self.headline = headline
        n = len(self.problems)
        head = headline or f"{n} problem{'s' if n != 1 else ''} found"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))

    def __reduce__(self) -> tuple[type[ProblemsError], tuple[list[Problem], str]]:
        # keep problems intact across worker processes (the default would rebuild from the message text)
        return (type(self), (self.problems, self.headline))

    @classmethod
    def single(cls, file: str | Path, rule: str, value: object, fix: str) -> Self:
        return cls([Problem(str(file), rule, str(value), fix)])


class DatasetError(ProblemsError):
    """The dataset (its description, CSV or images) is invalid."""


class ConfigError(ProblemsError):
    """A preset, search space or configuration file is invalid."""


class PlanError(ProblemsError):
    """No valid plan can be made from this fingerprint and preset."""


class ArtifactError(ProblemsError):
    """An artifact on disk (fingerprint.json, plan.json, ...) is missing, stale or of an unknown version."""
