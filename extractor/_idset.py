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

:func:`repeated_values` answers "which keys occur more than once?" the same way (sorted
hashes) for the commit's uniqueness check, but exactly: a hash collision is never reported.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["SeenIds", "missing_from", "repeated_values"]

_Hashes = npt.NDArray[np.int64]
#: Strings turned into Python objects at a time (a slice's str objects are the only
#: per-value Python allocations, so memory stays flat however long the arrays are).
_SLICE = 65_536


def _strings(arrays: Iterable[pa.Array]) -> Iterator[list[str]]:
    for array in arrays:
        for offset in range(0, len(array), _SLICE):
            yield array.slice(offset, _SLICE).to_pylist()


def repeated_values(arrays: Sequence[pa.Array]) -> list[str]:
    """The strings that occur more than once across ``arrays`` (nulls ignored), sorted.

    Costs 8 bytes a value: their 64-bit hashes, sorted. A hash table over the strings
    themselves (``pc.count_distinct``) took about 50 MB per million keys. Only values whose
    hash repeats are then counted exactly, so two keys that merely share a hash are not
    reported.
    """
    total = sum(len(a) - a.null_count for a in arrays)
    if total < 2:
        return []
    hashes = np.empty(total, dtype=np.int64)
    filled = 0
    for values in _strings(arrays):
        present = [v for v in values if v is not None] if None in values else values
        hashes[filled : filled + len(present)] = np.fromiter(
            map(hash, present), dtype=np.int64, count=len(present)
        )
        filled += len(present)
    hashes.sort()
    same = hashes[1:] == hashes[:-1]
    if not same.any():
        return []
    suspects = set(hashes[1:][same].tolist())
    del hashes, same
    counts: Counter[str] = Counter()
    for values in _strings(arrays):
        counts.update(v for v in values if v is not None and hash(v) in suspects)
    return sorted(v for v, n in counts.items() if n > 1)


def _hash_all(array: pa.Array) -> _Hashes:
    hashes = np.empty(len(array), dtype=np.int64)
    filled = 0
    for values in _strings([array]):
        hashes[filled : filled + len(values)] = np.fromiter(
            map(hash, values), dtype=np.int64, count=len(values)
        )
        filled += len(values)
    return hashes


def missing_from(values: pa.Array, reference: pa.Array) -> pa.Array:
    """The strings of ``values`` that are not in ``reference`` (exact; no nulls expected).

    Costs 16 bytes a reference value (sorted hashes and their positions) instead of a hash
    table over the strings (``pc.is_in``: tens of MB per million ids). A hash match is
    confirmed by comparing the two strings, and a hash that several reference values share
    is checked against those strings themselves, so a collision never hides a value.
    """
    if len(values) == 0 or len(reference) == 0:
        return values
    ref = _hash_all(reference)
    order = np.argsort(ref, kind="stable")
    ref = ref[order]
    shared = np.unique(ref[1:][ref[1:] == ref[:-1]])
    shared_strings: set[str] = set()
    if len(shared):
        for offset in range(0, len(reference), _SLICE):
            chunk = reference.slice(offset, _SLICE).to_pylist()
            shared_strings.update(v for v in chunk if np.isin(hash(v), shared))
    keep = np.ones(len(values), dtype=np.bool_)
    last = len(ref) - 1
    for offset in range(0, len(values), _SLICE):
        chunk = values.slice(offset, _SLICE)
        hashes = _hash_all(chunk)
        at = np.minimum(np.searchsorted(ref, hashes), last)
        hit = np.flatnonzero(ref[at] == hashes)
        if len(hit):
            mine = chunk.take(pa.array(hit))
            theirs = reference.take(pa.array(order[at[hit]]))
            same = np.asarray(pc.equal(mine, theirs).fill_null(False), dtype=np.bool_)
            if len(shared):
                ambiguous = np.flatnonzero(~same & np.isin(hashes[hit], shared))
                for i in ambiguous:
                    same[i] = mine[int(i)].as_py() in shared_strings
            keep[offset + hit[same]] = False
    return values.filter(pa.array(keep))


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
