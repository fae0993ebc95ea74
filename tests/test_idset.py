import random

from extractor._idset import SeenIds


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
