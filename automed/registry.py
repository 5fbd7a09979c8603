"""Explicit name -> object registries with did-you-mean errors."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from automed.errors import ConfigError

T = TypeVar("T")


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest option, or an empty string."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def check_choice(value: str, options: Iterable[str], *, what: str, where: str) -> str:
    """Return ``value`` if it is one of ``options``; raise a :class:`ConfigError` naming the closest one."""
    opts = sorted(options)
    if value in opts:
        return value
    raise ConfigError.single(
        where,
        f"{what} must be one of {opts}",
        repr(value),
        f"use one of the listed values.{did_you_mean(value, opts)}",
    )


class Registry(Generic[T]):
    """A named collection of components (networks, planners, readers...).

    Example:
        >>> r: Registry[int] = Registry("answer")
        >>> r.add("forty-two", 42)
        >>> r.get("forty-two")
        42
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._items[name] = item

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def deco(item: T) -> T:
            self.add(name, item)
            return item

        return deco

    def get(self, name: str) -> T:
        if name not in self._items:
            check_choice(name, self._items, what=f"the {self.kind} name", where=f"{self.kind} registry")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
