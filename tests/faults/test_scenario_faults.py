"""Scenario 1: many tasks through a proxy that fails a fifth of all requests.

Every task must complete exactly once on the server (counted by submission
tag: none duplicated, none lost), and every future must resolve.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tesengine import Executor, Task, TesBackend
from tesengine.tes import SUBMISSION_TAG, State, TesClient, View
from tests.faults.conftest import full_only, make_config
from tests.fixtures.proxy import (
    MALFORMED,
    REGRESS,
    RESET_AFTER,
    RESET_BEFORE,
    THROTTLED,
    TRUNCATED,
    UNAVAILABLE,
    Fault,
    FaultProxy,
)
from tests.fixtures.tes_server import ServedTes

Proxy = Callable[[str], Awaitable[FaultProxy]]
MIXED = (
    UNAVAILABLE, THROTTLED, RESET_BEFORE, RESET_AFTER, TRUNCATED, MALFORMED, REGRESS,
    Fault("slow", seconds=0.8),
)  # fmt: skip


@pytest.mark.parametrize("count", [120, pytest.param(500, marks=full_only)])
async def test_tasks_through_a_failing_proxy_complete_exactly_once(
    count: int,
    serve_tes: Callable[..., ServedTes],
    fault_proxy: Proxy,
    fast_retries: None,
    tmp_path: Path,
) -> None:
    served = serve_tes(args=["--max-tasks", "64"])
    proxy = await fault_proxy(served.url, seed=1)
    for fault in MIXED:  # each kind at least once, however few requests the run needs
        proxy.add(fault, probability=0.1, times=1)
    proxy.add(*MIXED, probability=0.2)
    config = make_config(
        proxy.url + "/ga4gh/tes/v1",
        served.storage_dir,
        tmp_path / "cache",
        interval=0.5,
        read_timeout=0.5,
        max_concurrency=64,
    )
    async with TesBackend(config) as backend:
        runs = await asyncio.gather(
            *(backend.submit(Task(f"t{i}", [Executor("alpine", ["true"])])) for i in range(count))
        )
        results = await asyncio.wait_for(asyncio.gather(*runs), timeout=240)
    assert [r.state for r in results] == [State.COMPLETE] * count
    async with TesClient(served.api) as direct:  # count on the server, not through the proxy
        tasks = [t async for t in direct.iter_tasks(view=View.BASIC, page_size=1000)]
    names = Counter(t.name for t in tasks)
    tags = Counter((t.tags or {}).get(SUBMISSION_TAG) for t in tasks)
    assert len(tasks) == count, f"{len(tasks) - count:+d} tasks on the server"
    assert set(names.values()) == {1}
    assert len(tags) == count
    assert None not in tags
    assert {t.id for t in tasks} == {r.id for r in results}
    assert all(t.current_state is State.COMPLETE for t in tasks)
    # every kind of fault was actually injected, including on task creation
    assert set(proxy.injected) == {f.kind for f in MIXED}
    print(f"\n{count} tasks, {proxy.requests} requests, injected: {dict(proxy.injected)}")


async def test_late_delivered_post_is_not_duplicated(
    serve_tes: Callable[..., ServedTes], fault_proxy: Proxy, fast_retries: None, tmp_path: Path
) -> None:
    served = serve_tes()
    proxy = await fault_proxy(served.url)
    proxy.add(Fault("delay", seconds=1.0), method="POST", times=1)
    config = make_config(proxy.url + "/ga4gh/tes/v1", served.storage_dir, tmp_path / "c",
                         read_timeout=0.3)  # fmt: skip
    async with TesBackend(config) as backend:
        await (await backend.submit(Task("late", [Executor("alpine", ["true"])])))
        # Wait until the held POST has reached the server too (two POSTs answered).
        deadline = asyncio.get_running_loop().time() + 30
        while proxy.forwarded["POST"] < 2:
            assert asyncio.get_running_loop().time() < deadline, "held POST never landed"
            await asyncio.sleep(0.02)
    async with TesClient(served.api) as direct:
        tasks = [t async for t in direct.iter_tasks(view=View.BASIC)]
    assert len(tasks) == 1
