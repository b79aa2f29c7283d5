"""Named components of one kind (dataset loaders, encoders, selection strategies): one way to
add one and one way to look one up, with the same error everywhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from sparselabel.errors import SparseLabelError

T = TypeVar("T")


class UnknownName(SparseLabelError, ValueError):
    """A component name that is not registered (a ValueError too, as lookups in code expect)."""


class Registry(dict[str, T], Generic[T]):
    """``name -> component``. ``@REGISTRY.register("name")`` adds a function or class;
    ``REGISTRY.lookup(name)`` returns it or raises ``UnknownName`` listing the known names."""

    def __init__(self, kind: str, entries: dict[str, T] | None = None):
        super().__init__(entries or {})
        self.kind = kind

    def register(self, name: str) -> Callable[[T], T]:
        def add(component: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self[name] = component
            return component

        return add

    def lookup(self, name: str) -> T:
        if name not in self:
            raise UnknownName(f"unknown {self.kind} {name!r}; choose one of {', '.join(sorted(self))}")
        return self[name]
