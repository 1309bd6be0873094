"""A lazy sequence of strips: known length, each strip read when it is used."""

from __future__ import annotations

from typing import Callable, Iterator, Sequence, overload

from .strips import Strip


class StripSet(Sequence[Strip]):
    """Strips read on demand: `len()` is known up front, each strip is loaded when indexed."""

    def __init__(self, ids: Sequence[str], load: Callable[[int], Strip], source: str) -> None:
        self._ids = list(ids)
        self._load = load
        self.source = source

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, index: int) -> Strip: ...

    @overload
    def __getitem__(self, index: slice) -> "StripSet": ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            rows = list(range(len(self._ids)))[index]
            return StripSet([self._ids[r] for r in rows], lambda i, rows=rows: self._load(rows[i]), self.source)
        if index < 0:
            index += len(self._ids)
        if not 0 <= index < len(self._ids):
            raise IndexError(index)
        strip = self._load(index)
        strip.meta.setdefault("spec", self.source)
        return strip

    def __iter__(self) -> Iterator[Strip]:
        return (self[i] for i in range(len(self._ids)))
