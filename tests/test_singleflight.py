"""The single-flight rule: shared work, and the last waiter to leave cancels it."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tesengine.singleflight import SingleFlight
from tests.support import await_until


class Work:
    """Work that runs until released, counting starts and noting a cancellation."""

    def __init__(self) -> None:
        self.starts = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.error: BaseException | None = None

    async def __call__(self) -> str:
        self.starts += 1
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        if self.error is not None:
            raise self.error
        return f"result {self.starts}"


async def _joined(flight: SingleFlight[str, str], key: str, count: int) -> None:
    await await_until(lambda: flight.waiters(key) == count, what=f"{count} waiters")


async def test_concurrent_calls_share_one_run_and_one_claims_it() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    work = Work()
    calls = [asyncio.create_task(flight.run_claiming("k", work)) for _ in range(5)]
    await _joined(flight, "k", 5)
    work.release.set()
    results = await asyncio.gather(*calls)
    assert work.starts == 1
    assert [r for r, _ in results] == ["result 1"] * 5
    assert sorted(first for _, first in results) == [False] * 4 + [True]
    assert len(flight) == 0  # nothing is remembered


async def test_one_waiter_leaving_does_not_cancel_the_work() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    work = Work()
    leaver = asyncio.create_task(flight.run("k", work))
    stayer = asyncio.create_task(flight.run("k", work))
    await _joined(flight, "k", 2)
    leaver.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaver
    assert flight.waiters("k") == 1
    work.release.set()
    assert await stayer == "result 1"
    assert not work.cancelled.is_set()


async def test_the_last_waiter_to_leave_cancels_the_work_and_a_new_call_starts_afresh() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    work = Work()
    calls = [asyncio.create_task(flight.run("k", work)) for _ in range(2)]
    await _joined(flight, "k", 2)
    for call in calls:
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
    assert len(flight) == 0  # no longer joinable at once...
    assert not flight.idle  # ...but still ending
    await asyncio.wait_for(work.cancelled.wait(), 30)
    await await_until(lambda: flight.idle, what="the cancelled work to end")
    work.release.set()
    assert await flight.run("k", work) == "result 2"  # did not join the cancelled one


async def test_a_failure_reaches_every_waiter_and_is_not_remembered() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    work = Work()
    work.error = ValueError("boom")
    calls = [asyncio.create_task(flight.run("k", work)) for _ in range(3)]
    await _joined(flight, "k", 3)
    work.release.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert [type(o) for o in outcomes] == [ValueError] * 3
    work.error = None
    assert await flight.run("k", work) == "result 2"


async def test_keys_are_separate_and_cancel_all_stops_everything() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    a, b = Work(), Work()
    calls = [asyncio.create_task(flight.run("a", a)), asyncio.create_task(flight.run("b", b))]
    await asyncio.wait_for(asyncio.gather(a.started.wait(), b.started.wait()), 30)
    assert len(flight) == 2
    await flight.cancel_all()
    assert a.cancelled.is_set() and b.cancelled.is_set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes)
    assert len(flight) == 0
