import random
from collections import Counter

import pyarrow as pa
import pytest

from extractor import _idset
from extractor._idset import SeenIds, missing_from, repeated_values


def test_new_ids_in_order_once() -> None:
    seen = SeenIds()
    assert seen.add_new(["b", "a", "b", "c"]) == ["b", "a", "c"]
    assert seen.add_new(["c", "d", "a"]) == ["d"]
    assert seen.add_new([]) == []
    assert len(seen) == 4


def test_matches_a_plain_set_over_many_pages() -> None:
    rng = random.Random(3)
    universe = [f"ID{n:010d}" for n in range(20_000)]
    seen, reference = SeenIds(), set()
    for _ in range(300):
        page = rng.sample(universe, 200)
        expected = []
        for employee_id in page:
            if employee_id not in reference:
                reference.add(employee_id)
                expected.append(employee_id)
        assert seen.add_new(page) == expected
    assert len(seen) == len(reference)


def test_repeated_values_across_arrays_and_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_idset, "_SLICE", 7)  # every array is read in several slices
    first = pa.array([f"E{n}" for n in range(40)] + [None, "E3"])
    second = pa.array(["E39", None, "X", "E3", "Y"])
    assert repeated_values([first, second]) == ["E3", "E39"]
    assert repeated_values([pa.array([f"E{n}" for n in range(100)]), pa.array(["X", None])]) == []
    assert repeated_values([pa.array([], pa.string()), pa.array([None, None], pa.string())]) == []


def test_repeated_values_matches_counting() -> None:
    rng = random.Random(5)
    values = [f"ID{rng.randrange(30_000):06d}" for _ in range(20_000)]
    chunks = [pa.array(values[i : i + 3_000]) for i in range(0, len(values), 3_000)]
    expected = sorted(v for v, n in Counter(values).items() if n > 1)
    assert expected
    assert repeated_values(chunks) == expected


def test_missing_from_is_exact() -> None:
    values = pa.array([f"id{i}" for i in range(5000)])
    reference = pa.array([f"id{i}" for i in range(100, 7000, 2)])
    expected = sorted(set(values.to_pylist()) - set(reference.to_pylist()))
    assert sorted(missing_from(values, reference).to_pylist()) == expected
    assert missing_from(values, pa.array([], pa.string())).to_pylist() == values.to_pylist()
    assert missing_from(pa.array([], pa.string()), reference).to_pylist() == []


def test_missing_from_never_mistakes_a_shared_hash_for_a_match(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # every string hashes to one of three values: nearly every lookup is a collision
    monkeypatch.setattr(_idset, "hash", lambda value: len(value) % 3, raising=False)
    values = pa.array([f"v{i}" for i in range(300)])
    reference = pa.array([f"v{i}" for i in range(0, 300, 3)] + ["w1", "w22", "w333"])
    expected = sorted(set(values.to_pylist()) - set(reference.to_pylist()))
    assert sorted(missing_from(values, reference).to_pylist()) == expected
