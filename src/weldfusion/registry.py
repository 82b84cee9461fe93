"""Plug-in registries for modalities and protocols.

The registries sit at the bottom of the import layers, so that every layer can look a modality or a
protocol up by name without importing the layers that implement them (these runtime lookups are the
one way a lower layer reaches a higher one). On its first lookup a registry imports its built-in
package (`weldfusion.modalities`, `weldfusion.protocols`), whose modules register themselves, and then
every installed plug-in: a module named by an entry point in the group of the same name, e.g.

    [project.entry-points."weldfusion.modalities"]
    thermal = "weldfusion_thermal"

A module may also register directly: `MODALITIES.register(spec.name, spec)`.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
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
            for plugin in entry_points(group=self.builtins):
                plugin.load()

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
