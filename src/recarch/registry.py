"""Name -> object registries (models, datasets, protocols, ...), in the style of timm's.

A registry is a plain mapping built by decorators at import time; lookups of unknown names raise a
``KeyError`` that lists the registered names and suggests the nearest one.
"""
from __future__ import annotations

import difflib
from typing import Callable, Dict, Generic, Iterator, TypeVar

T = TypeVar("T")


def suggest(name: str, choices) -> str:
    """' (did you mean 'x'?)' for the nearest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}{suggest(name, self._items)}; "
                f"registered: {', '.join(sorted(self._items))}"
            ) from None

    def names(self) -> list:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
