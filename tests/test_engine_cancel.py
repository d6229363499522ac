"""Cancelling a run: prompt for the caller, finished (or logged) by the backend.

The tasks here stay RUNNING (a noop server with a 30 s delay), so a cancel
that did not reach the server can never pass for one that did.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tesengine import Executor, Task, TesBackend
from tesengine.server import LocalTesServer
from tesengine.tes import State, TesClient
from tests.fixtures.proxy import UNAVAILABLE, Fault, FaultProxy
from tests.support import await_until, file_config

Proxy = Callable[[str], Awaitable[FaultProxy]]
TASK = Task(name="long", executors=[Executor("alpine", ["sleep", "30"])])
#: A cancel request that hangs past the client's read timeout.
HANG = Fault("delay", seconds=1.5)


@pytest.fixture
async def slow(tmp_path: Path) -> AsyncIterator[LocalTesServer]:
    """A noop server whose tasks stay RUNNING for 30 s."""
    async with LocalTesServer(tmp_path / "slow", runtime="noop", noop_delay=30) as server:
        yield server


def _backend(url: str, tmp_path: Path, **kw: object) -> TesBackend:
    return TesBackend(file_config(url, tmp_path / "storage", tmp_path / "cache", **kw))


async def _state(server: LocalTesServer, task_id: str) -> State:
    async with TesClient(server.url) as client:
        return (await client.get_task(task_id)).current_state


async def _timed_out_await(backend: TesBackend) -> tuple[str, float]:
    """Submit, wait for RUNNING, then await under a 0.2 s deadline; the seconds it took."""
    run = await backend.submit(TASK)
    await await_until(lambda: run.state is State.RUNNING, what="RUNNING")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await run
    return run.id, time.monotonic() - started


async def test_cancelling_the_awaiter_cancels_the_remote_task(
    slow: LocalTesServer, tmp_path: Path
) -> None:
    async with _backend(slow.url, tmp_path) as backend:
        run = await backend.submit(TASK)
        await await_until(lambda: run.state is State.RUNNING, what="RUNNING")

        async def wait() -> object:
            return await run

        waiter = asyncio.ensure_future(wait())
        await asyncio.sleep(0)  # let the waiter start awaiting
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    # aclose waited for the cancel request sent in the background
    assert await _state(slow, run.id) in (State.CANCELED, State.CANCELING)


async def test_a_cancel_that_hangs_does_not_hold_the_caller(
    slow: LocalTesServer, tmp_path: Path, fault_proxy: Proxy
) -> None:
    proxy = await fault_proxy(slow.url)
    # Four hung attempts at 0.5 s each: awaiting them would take 2 s and more.
    proxy.add(HANG, method="POST", path=r":cancel", times=4)
    async with _backend(proxy.url, tmp_path, read_timeout=0.5) as backend:
        task_id, took = await _timed_out_await(backend)
        assert took < 1.5, f"cancelling the awaiter took {took:.1f} s"
    assert proxy.injected["delay"] == 4
    assert await _state(slow, task_id) in (State.CANCELED, State.CANCELING)


async def test_a_cancel_the_server_refuses_is_logged_on_close(
    slow: LocalTesServer, tmp_path: Path, fault_proxy: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await fault_proxy(slow.url)
    async with _backend(proxy.url, tmp_path, retries=1) as backend:
        run = await backend.submit(TASK)
        await await_until(lambda: run.state is State.RUNNING, what="RUNNING")
        proxy.add(UNAVAILABLE)  # the server is down from here on
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await run
        assert time.monotonic() - started < 1.5
        caplog.set_level(logging.WARNING, logger="tesengine.engine")
    assert f"could not cancel task {run.id}" in caplog.text
    assert (await _state(slow, run.id)).is_active  # the request never got through
