"""Name -> implementation registries for models, data sets and methods, over `lit.catalog`.

The catalogue lists what exists (and each name's revision) without importing anything; an
implementation registers itself under a catalogued name from the module the catalogue
names, and `get` imports that module on first use. So a process imports only the code it
runs, and planning imports none of it."""

from __future__ import annotations

import importlib
from typing import Callable, Generic, TypeVar

from lit.catalog import Catalog, Entry

T = TypeVar("T")


class Registry(Generic[T]):
    """Catalogued names -> factories; a decorator registers, `get` names what exists on a miss."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.kind = catalog.kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(factory: T) -> T:
            if name not in self.catalog:
                raise ValueError(f"{self.kind} {name!r} is not in lit/catalog.py: add its entry there")
            module = self.catalog.get(name).module
            if factory.__module__ != module:
                raise ValueError(f"{self.kind} {name!r} is registered from {factory.__module__}, but lit/catalog.py says {module}")
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = factory
            return factory

        return decorate

    def entry(self, name: str) -> Entry:
        return self.catalog.get(name)  # an unknown name says what exists

    def get(self, name: str) -> T:
        if name not in self._entries:
            module = self.entry(name).module
            importlib.import_module(module)
            if name not in self._entries:
                raise ValueError(f"{self.kind} {name!r}: module {module} does not register it")
        return self._entries[name]

    def names(self) -> list[str]:
        return self.catalog.names()

    def __contains__(self, name: str) -> bool:
        return name in self.catalog
