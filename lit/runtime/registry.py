"""A tiny name -> factory registry shared by models, data sets and methods.

An entry has a revision (1 unless given): raise it when a change to the code behind a name
changes what a run computes with the same config (a model family's layers, a data set's
encoding). Run ids (`lit.engine.runconfig.config_hash`) include every revision above 1,
so such a change gives new run ids, and the pipeline does not reuse runs made before it."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories; a decorator registers, `get` names what exists on a miss."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._revisions: dict[str, int] = {}

    def register(self, name: str, revision: int = 1) -> Callable[[T], T]:
        def decorate(factory: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = factory
            self._revisions[name] = revision
            return factory

        return decorate

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise KeyError(f"unknown {self.kind} {name!r} (known: {known})") from None

    def revision(self, name: str) -> int:
        self.get(name)  # an unknown name says what exists
        return self._revisions[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
