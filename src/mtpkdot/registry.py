"""One small registry class and one registry per concern.

A registry maps a plain name (used in configs and on the command line) to a class or factory. This
module imports nothing of the package: the modules that register entries import it, and
:func:`mtpkdot.plugins.load` imports those modules (and third-party plugins) to fill the registries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any


class Registry:
    """Name -> object map with a decorator to register and a clear error for unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Any] = {}

    def register(self, name: str | None = None) -> Callable[[Any], Any]:
        def deco(obj: Any) -> Any:
            key = name or getattr(obj, "name", None) or obj.__name__
            if key in self._items and self._items[key] is not obj:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._items[key] = obj
            return obj

        return deco

    def get(self, name: str) -> Any:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, Any]]:
        return sorted(self._items.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


BACKBONES = Registry("backbone")
FUSIONS = Registry("fusion")
METHODS = Registry("method")
DATASETS = Registry("dataset")
LOSSES = Registry("loss")
