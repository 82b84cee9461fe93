"""Plug-in registries for modalities and protocols.

The registries sit at the bottom of the import layers, so that every layer can look a modality or a
protocol up by name without importing the layers that implement them. The built-in entries
register themselves when their package (`weldfusion.modalities`, `weldfusion.protocols`) is
imported, which a registry does on its first lookup; another module adds an entry with
`MODALITIES.register(spec.name, spec)` / `PROTOCOLS.register(cls.name, cls)`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from weldfusion.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> entry, in registration order."""

    def __init__(self, kind: str, builtins: str):
        self.kind = kind
        self.builtins = builtins
        self._entries: dict[str, T] = {}
        self._loaded = False

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            importlib.import_module(self.builtins)

    def register(self, name: str, entry: T) -> T:
        self._load()
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        self._load()
        if name not in self._entries:
            raise InputError(f"unknown {self.kind} {name!r} (known: {', '.join(self._entries)})")
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        self._load()
        return tuple(self._entries)

    def __iter__(self) -> Iterator[T]:
        return iter(self._entries[name] for name in self.names())

    def __contains__(self, name: Any) -> bool:
        self._load()
        return name in self._entries


MODALITIES: Registry[Any] = Registry("modality", "weldfusion.modalities")
PROTOCOLS: Registry[Any] = Registry("protocol", "weldfusion.protocols")
