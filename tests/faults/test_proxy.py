"""The fault proxy itself: each fault reaches a real client as the kind of failure it names."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from tesengine.errors import TesUnavailable
from tesengine.server import LocalTesServer
from tesengine.tes import Executor, State, TesClient, TesTask, View
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

Proxy = Callable[[str], Awaitable[FaultProxy]]
HELLO = TesTask(name="hello", executors=[Executor(image="alpine", command=["true"])])


async def _get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    timeouts = aiohttp.ClientTimeout(sock_read=timeout)
    async with aiohttp.ClientSession(timeout=timeouts) as s, s.get(url) as resp:
        return resp.status, await resp.read()


async def test_forwards_untouched(inproc_tes: LocalTesServer, fault_proxy: Proxy) -> None:
    proxy = await fault_proxy(inproc_tes.url)
    status, body = await _get(f"{proxy.url}/ga4gh/tes/v1/service-info")
    assert status == 200
    assert b'"type"' in body
    assert proxy.requests == 1
    assert not proxy.injected


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (RESET_BEFORE, aiohttp.ClientConnectionError),
        (RESET_AFTER, aiohttp.ClientConnectionError),
        (TRUNCATED, aiohttp.ClientPayloadError),
        (Fault("delay", seconds=1.0), asyncio.TimeoutError),
    ],
)
async def test_connection_faults(
    inproc_tes: LocalTesServer, fault_proxy: Proxy, fault: Fault, error: type[Exception]
) -> None:
    proxy = await fault_proxy(inproc_tes.url)
    # aiohttp repeats a GET once on a reset connection: keep the rule up until cleared
    proxy.add(fault)
    with pytest.raises(error):
        await _get(f"{proxy.url}/ga4gh/tes/v1/service-info", timeout=0.3)
    proxy.clear()
    status, _ = await _get(f"{proxy.url}/ga4gh/tes/v1/service-info")
    assert status == 200
    assert proxy.injected[fault.kind] >= 1


async def test_status_and_malformed_and_time_bound(
    inproc_tes: LocalTesServer, fault_proxy: Proxy
) -> None:
    proxy = await fault_proxy(inproc_tes.url)
    proxy.add(THROTTLED, times=1)
    proxy.add(MALFORMED, times=1)
    url = f"{proxy.url}/ga4gh/tes/v1/service-info"
    async with aiohttp.ClientSession() as s, s.get(url) as resp:
        assert (resp.status, resp.headers["Retry-After"]) == (429, "1")
    status, body = await _get(url)
    assert status == 200
    with pytest.raises(ValueError):
        __import__("json").loads(body)
    assert (await _get(url))[0] == 200  # both rules were bounded to one request
    proxy.add(UNAVAILABLE, until=0.0)  # already expired
    assert (await _get(url))[0] == 200
    assert dict(proxy.injected) == {"status": 1, "malformed": 1}


async def test_client_retries_through_faults(
    inproc_tes: LocalTesServer, fault_proxy: Proxy, fast_retries: None
) -> None:
    proxy = await fault_proxy(inproc_tes.url)
    async with TesClient(f"{proxy.url}/ga4gh/tes/v1", read_timeout=0.3) as client:
        proxy.add(RESET_AFTER, method="POST", times=1)
        task_id = await client.create_task(HELLO)
        tasks = [t async for t in client.iter_tasks(view=View.BASIC)]
        assert [t.id for t in tasks] == [task_id]  # adopted, not posted twice
        proxy.add(UNAVAILABLE, RESET_BEFORE, TRUNCATED, Fault("delay", seconds=0.6), times=8)
        for _ in range(8):
            assert (await client.get_task(task_id)).id == task_id
        assert proxy.rules[-1].hits == 8


async def test_regress_rewrites_running(tmp_path, fault_proxy: Proxy) -> None:
    async with LocalTesServer(tmp_path, runtime="noop", noop_delay=30) as server:
        proxy = await fault_proxy(server.url)
        proxy.add(REGRESS, method="GET")
        async with TesClient(server.url) as direct, TesClient(proxy.url) as via:
            task_id = await direct.create_task(HELLO)
            for _ in range(200):
                if (await direct.get_task(task_id)).current_state is State.RUNNING:
                    break
                await asyncio.sleep(0.02)
            assert (await via.get_task(task_id)).current_state is State.QUEUED


async def test_upstream_down_is_502(fault_proxy: Proxy, fast_retries: None) -> None:
    from tests.support import free_port

    proxy = await fault_proxy(f"http://127.0.0.1:{free_port()}")
    assert (await _get(f"{proxy.url}/x"))[0] == 502
    async with TesClient(f"{proxy.url}/ga4gh/tes/v1", retries=2) as client:
        with pytest.raises(TesUnavailable, match="502"):
            await client.service_info()
