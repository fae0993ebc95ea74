import pytest

from extractor._backoff import backoff_delay, parse_retry_after, retrying
from extractor._config import RetryPolicy
from extractor._errors import RequestError, ServerError, ThrottledError

POLICY = RetryPolicy(max_attempts=4, base=1.0, cap=5.0)


def test_full_jitter_bounds_grow_then_cap() -> None:
    assert backoff_delay(POLICY, 1, rand=lambda: 1.0) == 1.0
    assert backoff_delay(POLICY, 2, rand=lambda: 1.0) == 2.0
    assert backoff_delay(POLICY, 3, rand=lambda: 1.0) == 4.0
    assert backoff_delay(POLICY, 4, rand=lambda: 1.0) == 5.0
    assert backoff_delay(POLICY, 3, rand=lambda: 0.25) == 1.0


def test_retry_after_wins_and_is_capped() -> None:
    assert backoff_delay(POLICY, 1, retry_after=3.0, rand=lambda: 0.0) == 3.0
    assert backoff_delay(POLICY, 1, retry_after=999.0) == 5.0


def test_parse_retry_after() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


async def test_retrying_retries_transient_then_succeeds() -> None:
    calls: list[int] = []
    slept: list[float] = []

    async def call() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ThrottledError("slow down", retry_after=0.5)
        return "ok"

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    assert await retrying(call, POLICY, sleep=sleep) == "ok"
    assert slept == [0.5, 0.5]


async def test_retrying_gives_up_after_max_attempts() -> None:
    calls: list[int] = []

    async def call() -> None:
        calls.append(1)
        raise ServerError("boom", status=500)

    async def sleep(seconds: float) -> None:
        pass

    with pytest.raises(ServerError):
        await retrying(call, POLICY, sleep=sleep, rand=lambda: 0.0)
    assert len(calls) == POLICY.max_attempts


async def test_permanent_errors_are_not_retried() -> None:
    calls: list[int] = []

    async def call() -> None:
        calls.append(1)
        raise RequestError("bad", status=400)

    with pytest.raises(RequestError):
        await retrying(call, POLICY)
    assert len(calls) == 1
