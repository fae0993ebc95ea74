"""Deterministic data: the seed decides everything, ids are an invertible mix."""

from __future__ import annotations

from extractor.simulator import Simulator, SimulatorConfig
from extractor.simulator._ids import IdCodec
from extractor.simulator._store import EmployeeStore


def _truth(**knobs: int) -> dict[str, dict[str, object]]:
    return Simulator(SimulatorConfig(**knobs), env={}).truth()


def test_the_same_seed_gives_identical_data() -> None:
    first, second = _truth(employees=400, seed=7), _truth(employees=400, seed=7)
    assert first == second
    assert list(first) == list(second)  # same listing order too


def test_another_seed_gives_other_data() -> None:
    first, second = _truth(employees=400, seed=7), _truth(employees=400, seed=8)
    assert not set(first) & set(second)
    names = lambda truth: [(p["firstName"], p["lastName"]) for p in truth.values()]  # noqa: E731
    assert sorted(names(first)) != sorted(names(second))


def test_a_bigger_tenant_extends_a_smaller_one() -> None:
    small, big = _truth(employees=100, seed=3), _truth(employees=300, seed=3)
    assert all(big[employee_id] == profile for employee_id, profile in small.items())


def test_ids_round_trip_through_the_keyed_mix() -> None:
    codec = IdCodec(seed=42)
    for index in (*range(1000), 2**40, 2**62 - 1):
        employee_id = codec.id_of(index)
        assert len(employee_id) == 12
        assert codec.index_of(employee_id) == index
    assert IdCodec(seed=43).id_of(5) != codec.id_of(5)
    assert codec.index_of("not-an-id!!!") is None
    assert codec.index_of("zzzzzzzzzzzz") is None
    assert codec.index_of("ZZZZZZZZZZZZ") is None  # beyond the 62-bit space


def test_ids_sort_like_their_mixed_integers() -> None:
    codec = IdCodec(seed=1)
    mixed = sorted(codec.mix(index) for index in range(2000))
    ids = [IdCodec.encode(value) for value in mixed]
    assert ids == sorted(ids)


def test_the_store_keeps_only_changes_in_memory() -> None:
    store = EmployeeStore(seed=0, employees=50_000, companies=5)
    assert store.count == 50_000
    assert len(store._overrides) == 0
    first = store.codec.unmix(store._listing[0])
    store.update(first, {"jobTitle": "Changed"})
    assert store.record(first)["jobTitle"] == "Changed"
    assert len(store._overrides) == 1
