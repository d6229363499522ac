"""A run's handle: its states as they change, waiting for one, and cancelling.

Cancelling is prompt for the caller and finished (or logged) by the
backend. The tasks cancelled here stay RUNNING (a noop server with a 30 s
delay), so a cancel that did not reach the server can never pass for one
that did.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tesengine import Executor, Task, TaskRun, TesBackend
from tesengine.server import LocalTesServer
from tesengine.tes import State, TesClient
from tests.fixtures.proxy import UNAVAILABLE, Fault, FaultProxy
from tests.support import file_config

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
    await run.wait_for(State.RUNNING)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await run
    return run.id, time.monotonic() - started


@pytest.fixture
async def brief(tmp_path: Path) -> AsyncIterator[LocalTesServer]:
    """A noop server whose tasks run for half a second."""
    async with LocalTesServer(tmp_path / "brief", runtime="noop", noop_delay=0.5) as server:
        yield server


async def test_states_follow_the_run_to_its_end(brief: LocalTesServer, tmp_path: Path) -> None:
    async with _backend(brief.url, tmp_path) as backend:
        run = await backend.submit(TASK)
        first, second = await asyncio.gather(_collect(run), _collect(run))
        result = await run
    assert first == second
    assert first[0] is State.QUEUED
    assert State.RUNNING in first
    assert first[-1] is State.COMPLETE is result.state
    assert all(a is not b for a, b in itertools.pairwise(first))  # changes only
    assert await _collect(run) == first  # a late reader replays the same history


async def test_wait_for_a_state_the_run_never_reaches(
    brief: LocalTesServer, tmp_path: Path
) -> None:
    async with _backend(brief.url, tmp_path) as backend:
        run = await backend.submit(TASK)
        assert await run.wait_for(State.RUNNING) is State.RUNNING
        assert await run.wait_for(State.PAUSED) is State.COMPLETE  # ended first
        assert await run.wait_for(State.COMPLETE) is State.COMPLETE  # already there
        with pytest.raises(AttributeError):
            setattr(run, "state", State.QUEUED)  # noqa: B010 - the point: it is read-only


async def _collect(run: TaskRun) -> list[State]:
    return [state async for state in run.states()]


async def test_cancelling_the_awaiter_cancels_the_remote_task(
    slow: LocalTesServer, tmp_path: Path
) -> None:
    async with _backend(slow.url, tmp_path) as backend:
        run = await backend.submit(TASK)
        await run.wait_for(State.RUNNING)

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
        await run.wait_for(State.RUNNING)
        proxy.add(UNAVAILABLE)  # the server is down from here on
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await run
        assert time.monotonic() - started < 1.5
        caplog.set_level(logging.WARNING, logger="tesengine.engine")
    assert f"could not cancel task {run.id}" in caplog.text
    assert (await _state(slow, run.id)).is_active  # the request never got through


class CountingClient(TesClient):
    """A real client that counts how often it was closed."""

    closes = 0

    async def aclose(self) -> None:
        self.closes += 1
        await super().aclose()


async def test_the_backend_closes_what_it_made_not_what_it_was_given(
    brief: LocalTesServer, tmp_path: Path
) -> None:
    config = file_config(brief.url, tmp_path / "storage", tmp_path / "cache")
    async with CountingClient(brief.url) as client:
        async with TesBackend(config, client=client) as backend:
            run = await backend.submit(TASK)
            await run
        assert client.closes == 0  # the caller's to close
        assert (await client.get_task(run.id)).current_state is State.COMPLETE
    assert client.closes == 1


async def test_a_submit_cancelled_mid_create_cancels_what_the_server_made(
    slow: LocalTesServer, tmp_path: Path, fault_proxy: Proxy
) -> None:
    proxy = await fault_proxy(slow.url)
    # The server creates the task at once; its answer comes a second later.
    proxy.add(Fault("slow", seconds=1.0), method="POST", path=r"/tasks$")
    async with _backend(proxy.url, tmp_path) as backend:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await backend.submit(TASK)
    async with TesClient(slow.url) as client:
        states = [t.current_state async for t in client.iter_tasks()]
    assert states in ([State.CANCELED], [State.CANCELING])  # not left RUNNING for 30 s
