"""Which employee ids a listing has already delivered, in about 8 bytes an id.

A Python ``set`` of id strings costs about 150 bytes an id once the allocator's
fragmentation is counted (measured: +30 MB per 200,000 employees), which alone
would break the memory budget at 1,000,000 employees. Here each id is reduced
to its 64-bit ``hash`` and kept in a few sorted NumPy arrays that merge like a
binary counter (a log-structured set): a page of 200 ids is checked with one
``searchsorted`` per level, inserted as a new small level, and equal-sized
levels are merged, so inserts cost O(log n) amortised and lookups
O(log^2 n).

Two different ids may share a hash (about 3e-8 for a million ids). The second
one is then taken for a repeat and not fetched in the first pass; the pipeline's
catch-up pass compares the exact ids of a fresh listing with the exact ids it
fetched, finds it, and fetches it. Nothing is lost; one employee is fetched late.
``hash`` is salted per process, which is fine: the set lives for one run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["SeenIds"]

_Hashes = npt.NDArray[np.int64]


class SeenIds:
    """A set of ids that answers "which of these are new?" a page at a time."""

    def __init__(self) -> None:
        self._levels: list[_Hashes] = []  # sorted, unique, sizes decreasing
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add_new(self, ids: Sequence[str]) -> list[str]:
        """Add ``ids``; return those not seen before, in their order, each once."""
        if not ids:
            return []
        hashes = np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids))
        unique, first = np.unique(hashes, return_index=True)
        fresh = ~self._contains(unique)
        if not fresh.any():
            return []
        self._insert(unique[fresh])
        self._count += int(fresh.sum())
        return [ids[i] for i in np.sort(first[fresh])]

    def _contains(self, sorted_hashes: _Hashes) -> npt.NDArray[np.bool_]:
        found = np.zeros(len(sorted_hashes), dtype=np.bool_)
        for level in self._levels:
            at = np.searchsorted(level, sorted_hashes)
            np.minimum(at, len(level) - 1, out=at)
            found |= level[at] == sorted_hashes
        return found

    def _insert(self, sorted_hashes: _Hashes) -> None:
        level = sorted_hashes
        while self._levels and len(self._levels[-1]) <= len(level):
            level = np.union1d(self._levels.pop(), level)
        self._levels.append(level)
