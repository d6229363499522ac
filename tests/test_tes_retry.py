"""The retry policy: waits, Retry-After and test mode, on an injected clock."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tesengine.tes import Executor, TesClient, TesTask
from tesengine.tes.retry import RetryableStatus, RetryPolicy, parse_retry_after, set_testing
from tesengine.testing import FakeTes, Fault, MockTransport

BASE = "http://tes.test/ga4gh/tes/v1"


def clocked(fake: FakeTes, waits: list[float], **policy: Any) -> TesClient:
    """A client whose retry waits are noted in ``waits`` instead of spent."""

    async def sleep(delay: float) -> None:
        waits.append(delay)

    retry_policy = RetryPolicy(sleep=sleep, **policy)
    return TesClient(BASE, transport=MockTransport(fake), retry_policy=retry_policy)


async def test_429_waits_retry_after_seconds() -> None:
    fake = FakeTes(base=BASE)  # test mode off: real backoff decisions, on a fake clock
    waits: list[float] = []
    async with clocked(fake, waits) as client:
        task_id = await client.create_task(
            TesTask(executors=[Executor(image="alpine", command=["true"])])
        )
        fake.faults.append(Fault("GET", "get", 429, {"error": "slow down"}, {"Retry-After": "2"}))
        assert (await client.get_task(task_id)).id == task_id
    assert waits == [2.0]


async def test_backoff_waits_grow_on_the_injected_clock() -> None:
    fake = FakeTes(base=BASE)
    waits: list[float] = []
    fake.faults += [Fault("GET", "info", 503, "busy") for _ in range(3)]
    async with clocked(fake, waits, rng=lambda _low, high: high, wait_initial=0.5) as client:
        await client.service_info()
    assert waits == [0.5, 1.0, 2.0]
    set_testing(True)  # test mode: the same retries, no waiting
    try:
        waits.clear()
        fake.faults += [Fault("GET", "info", 503, "busy") for _ in range(3)]
        async with clocked(fake, waits) as client:
            await client.service_info()
    finally:
        set_testing(False)
    assert waits == [0.0, 0.0, 0.0]


def test_retry_after_http_date_and_garbage() -> None:
    now = dt.datetime(2024, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after("Mon, 01 Jan 2024 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Mon, 01 Jan 2024 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_backoff_is_full_jitter_and_capped() -> None:
    seen: list[tuple[float, float]] = []

    def rng(low: float, high: float) -> float:
        seen.append((low, high))
        return high

    policy = RetryPolicy(wait_initial=0.5, wait_max=4.0, retry_after_max=60, rng=rng)
    delays = [policy.delay(n, TimeoutError()) for n in range(1, 6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert all(low == 0.0 for low, _ in seen)
    assert policy.delay(1, RetryableStatus(429, "", 3600)) == 60
