"""Opaque employee ids that need no lookup table.

A real UKG ``employeeId`` is a 12-character uppercase alphanumeric string that says
nothing about the employee (``DN4GZR00003K``). The simulator derives it from the
employee's index with a keyed, invertible 62-bit mix (two multiply/xor-shift
rounds, each one invertible), written in base 36. Going back from an id to the
index is the inverse mix, so a million employees need no id -> index dict.

Base-36 digits ``0-9A-Z`` sort in ASCII order, so sorting the mixed integers
sorts the ids: the listing keeps the integers in an ``array('Q')``.
"""

from __future__ import annotations

import re

__all__ = ["ID_BITS", "ID_LENGTH", "IdCodec"]

ID_LENGTH = 12
ID_BITS = 62  # 2**62 < 36**12: every mixed value fits in 12 base-36 digits
_BITS = ID_BITS
_MASK = (1 << _BITS) - 1
_SHIFT = 31  # >= half the width, so ``x ^= x >> 31`` is its own inverse
_MUL1 = 0x9E3779B97F4A7C15 & _MASK | 1
_MUL2 = 0xBF58476D1CE4E5B9 & _MASK | 1
_INV1 = pow(_MUL1, -1, 1 << _BITS)
_INV2 = pow(_MUL2, -1, 1 << _BITS)
_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_PAIRS = [a + b for a in _DIGITS for b in _DIGITS]  # 1296 two-digit chunks
_PAIR_BASE = 36 * 36
_ID_PATTERN = re.compile(r"[0-9A-Z]{12}")


def _splitmix(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return value ^ (value >> 31)


class IdCodec:
    """Index <-> mixed integer <-> 12-character id, keyed by the tenant's seed."""

    __slots__ = ("_key1", "_key2")

    def __init__(self, seed: int) -> None:
        self._key1 = _splitmix(seed * 2 + 1) & _MASK
        self._key2 = _splitmix(seed * 2 + 2) & _MASK

    def mix(self, index: int) -> int:
        """The mixed integer of an employee index (a bijection on 62-bit values)."""
        x = ((index ^ self._key1) * _MUL1) & _MASK
        x ^= x >> _SHIFT
        x = ((x + self._key2) * _MUL2) & _MASK
        return x ^ (x >> _SHIFT)

    def unmix(self, mixed: int) -> int:
        """The inverse of :meth:`mix`."""
        x = mixed ^ (mixed >> _SHIFT)
        x = ((x * _INV2) - self._key2) & _MASK
        x ^= x >> _SHIFT
        return ((x * _INV1) & _MASK) ^ self._key1

    @staticmethod
    def encode(mixed: int) -> str:
        """The 12-character id of a mixed integer."""
        pairs = _PAIRS
        x, f = divmod(mixed, _PAIR_BASE)
        x, e = divmod(x, _PAIR_BASE)
        x, d = divmod(x, _PAIR_BASE)
        x, c = divmod(x, _PAIR_BASE)
        a, b = divmod(x, _PAIR_BASE)
        return pairs[a] + pairs[b] + pairs[c] + pairs[d] + pairs[e] + pairs[f]

    @staticmethod
    def decode(employee_id: str) -> int | None:
        """The mixed integer of a well-formed id, or None (so a bad id is simply unknown)."""
        if len(employee_id) != ID_LENGTH or _ID_PATTERN.fullmatch(employee_id) is None:
            return None
        mixed = int(employee_id, 36)
        return mixed if mixed <= _MASK else None

    def id_of(self, index: int) -> str:
        return self.encode(self.mix(index))

    def index_of(self, employee_id: str) -> int | None:
        """The index an id was made from, or None; the caller checks it is a current employee."""
        mixed = self.decode(employee_id)
        return None if mixed is None else self.unmix(mixed)
